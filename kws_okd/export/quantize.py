"""int8 exports that pay in ONNX Runtime: an int8 DFT front-end, and optionally int8 backbone convolutions.

Where the time goes (BC-ResNet-1, ORT 1.32, one x86 thread, ORT's profiler): the
whole-window DFT front-end is one 23 M-MAC product (a 480-tap, 482-output strided
convolution), about 60 % of a float inference and 96 % of the weights; the backbone
is 2.5 M MACs spread over 44 tiny convolutions whose time is mostly per-operator
overhead. ORT's int8 ``QLinearConv`` (fused from QDQ, or written directly in
QOperator format: the same speed) is slower than ORT's float NCHWc convolutions on
every one of them: 2-7x at batch 1 (stem 159 against 25 us, frequency-depthwise
(3, 1) 65 against 10 us, 1x1 17 against 7 us), from about equal (1x1) to 20x
(depthwise) at batch 32; the QuantizeLinear/DequantizeLinear nodes around every op
it cannot fuse (sub-spectral norm, SiLU, residual adds, frequency mean) add more.
Quantising every op type ORT can (QLinearAdd/Mul/Sigmoid/AveragePool too) did not help
(1.8-2.6 ms per clip at batch 1 against 1.4-1.9 ms for convolutions only, 1.0 float).
So an int8 backbone makes this model slower, while the DFT product runs about 3x
faster as an int8 ``MatMulIntegerToFloat`` than as a float convolution.

**int8 front-end** (:class:`Int8Frontend`). A power spectrum does not fit in 8 bits,
but the DFT *input* does once each frame is scaled by its own peak: frames are cut
from the reflect-padded window, divided by their peak absolute sample, quantised to
int8 with the fixed scale 1/127, multiplied by the int8 DFT basis (one scale per
basis column, i.e. per frequency and real/imaginary part), and the float power
spectrum is multiplied back by the squared peak before the mel filters and the log, which stay float. No
calibration data is needed: every scale is known in advance. One peak per clip
instead of per frame leaves quiet frames a few quantisation steps, which the per-bin
utterance normalisation then amplifies (-2.1 points on BC-ResNet-1 kd+lr01, against
+0.4 per frame).

Both int8 roundings (frame and basis) add error that is white across frequency, at a
fixed level below the frame's strongest component. Speech falls by 40-60 dB from its
low-frequency peak to 4-8 kHz, so those high mel bins drowned in it, and the per-bin
normalisation then amplified the difference: -2.9 points on a held-out synthesiser.
So the frames are **pre-emphasised** first (``y[n] = x[n] - 0.97 x[n-1]``, float, one
multiply-add a sample), which tilts the spectrum flat before it is rounded, and the
basis undoes the tilt exactly (:func:`emphasised_basis`; the sample before each frame
enters through one float rank-1 term). The rounding error then follows the speech's
own tilt instead of sitting flat under it. The integer product is the same; the float
rank-1 term costs 3-9 % of an inference (docs/export.md).

**Two planes** (``planes=2``, ``kws-okd export --int8-frame-planes 2``). Of the error
left, most is the frames' rounding (on the default students' validation clips: KL to
float 0.0063 from it alone, 0.0008 from the basis's alone, 0.0079 together). Each frame
then also gets a second int8 plane, what the first one's rounding left, 127 times finer
(:func:`split_planes`), multiplied in the same integer product stacked under the first
(twice the rows) and added back at 1/127 (:func:`join_planes`): KL 0.0008, but int8 is
then no faster than float at batch 32, only at batch 1 (docs/export.md, rule 23), so
one plane stays the default.

**int8 backbone** (:func:`quantize_backbone`): ORT static quantisation of the backbone
convolutions (QDQ, int8 per-channel weights, uint8 activations, 99.99th-percentile
ranges), for targets where memory rather than ORT's x86 kernels sets the pace. It is
also the only int8 path of models whose front-end has no DFT form (raw waveform,
speech-embedding mel).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from kws_okd.export.frontend import dft_basis
from kws_okd.stream.features import LOG_OFFSET, FrameSpec
from kws_okd.utils.atomic import atomic_path

ACT_SCALE = 1.0 / 127   # int8 scale of peak-normalised frames in [-1, 1]
EMPHASIS = 0.97         # pre-emphasis of the frames before int8 (see the module docstring)
QMIN, QMAX = -128, 127  # ONNX int8; symmetric scales keep every value within +-127


def fake_quant(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Round to the int8 grid ``scale * k`` (zero point 0), clamp to [-128, 127] and
    return floats; the gradient passes straight through inside the range. Exported to
    ONNX as a QuantizeLinear/DequantizeLinear pair."""
    return torch.fake_quantize_per_tensor_affine(x, scale, 0, QMIN, QMAX)


def fake_quant_columns(w: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Per-column (axis 1) :func:`fake_quant` of a (K, N) weight matrix."""
    return torch.fake_quantize_per_channel_affine(w, scales, torch.zeros(len(scales), dtype=torch.int32),
                                                  1, QMIN, QMAX)


def column_scales(w: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Symmetric per-column scales: each column's largest magnitude maps to
    ``2**(bits-1) - 1``. bits=7 (weights within +-63) is ORT's ``reduce_range`` remedy for x86
    CPUs without VNNI, whose 8-bit integer kernels can saturate; the default 8 was measured
    on VNNI machines only. All-zero columns (the DC and Nyquist sines) get a tiny scale."""
    return (w.abs().amax(0) / (2 ** (bits - 1) - 1)).clamp_min(1e-12)


def emphasised_basis(basis: torch.Tensor, a: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The DFT basis for pre-emphasised frames, exactly.

    A frame's samples ``x[n]`` and its pre-emphasised samples ``y[n] = x[n] - a x[n-1]``
    (``x[-1]``: the sample before the frame) satisfy ``x[n] = sum_{m<=n} a^(n-m) y[m] +
    a^(n+1) x[-1]``, so ``x @ basis == y @ basis_a + x[-1] * c`` with
    ``basis_a[m] = sum_{n>=m} a^(n-m) basis[n]`` and ``c = a * basis_a[0]``. Returns
    ``(basis_a, c)`` for a ``(n_fft, K)`` basis."""
    out = basis.double().clone()
    for m in range(out.shape[0] - 2, -1, -1):
        out[m] += a * out[m + 1]
    return out.to(basis.dtype), (a * out[0]).to(basis.dtype)


def split_planes(f: torch.Tensor) -> torch.Tensor:
    """Frames (B, T, n) in [-1, 1] -> (B, 2T, n): the frames, then what rounding them to
    int8 steps of 1/127 leaves, 127 times larger. Both quantised at 1/127 and joined by
    :func:`join_planes`, a frame keeps an error of at most half of 1/127**2."""
    return torch.cat([f, f * 127 - torch.round(f * 127)], 1)


def join_planes(y: torch.Tensor, n: int) -> torch.Tensor:
    """The product of :func:`split_planes`' rows (B, 2n, k) -> (B, n, k): first plane plus
    the second at 1/127 of its scale (the product is linear in the frames)."""
    return y[:, :n] + y[:, n:] / 127


class Int8Frames(nn.Module):
    """A ``center=True`` window (B, L) -> log features (B, F, T) (before normalisation),
    with the DFT as an int8 matrix product on per-frame peak-normalised, pre-emphasised
    frames (see the module docstring)."""

    def __init__(self, spec: FrameSpec, weight_bits: int = 8, quantize: bool = True,
                 emphasis: float = EMPHASIS, planes: int = 1):
        super().__init__()
        if planes not in (1, 2):
            raise ValueError(f"planes: the frames are cut into 1 or 2 int8 planes, not {planes}")
        self.planes = planes
        n, n_freqs = spec.n_fft, spec.n_fft // 2 + 1
        basis = dft_basis(spec).T.contiguous()  # (n_fft, 2*nf), float64
        basis, carry = emphasised_basis(basis, emphasis)
        self.register_buffer("basis", basis.float())
        self.register_buffer("carry", carry.float())                                       # (2*nf,)
        self.register_buffer("basis_scale", column_scales(self.basis, weight_bits))
        self.register_buffer("fb", spec.fb.contiguous())                                   # (nf, n_mels)
        self.register_buffer("dct", spec.dct.contiguous() if spec.dct is not None else torch.zeros(0))
        self.has_dct = spec.dct is not None
        self.n_fft, self.hop, self.n_freqs, self.quantize = n, spec.hop, n_freqs, quantize
        self.emphasis = float(emphasis)
        # Frames from strided slices of chunks of g = gcd(n_fft, hop) samples: no index table.
        self.g = math.gcd(n, spec.hop)

    def cut(self, x: torch.Tensor, n_frames: int) -> torch.Tensor:
        """(B, T, n_fft) frames of an already padded signal, frame t starting at t * hop."""
        g, h = self.g, self.hop // self.g
        need = ((n_frames - 1) * h + self.n_fft // g) * g
        if x.shape[-1] < need:
            x = nn.functional.pad(x, (0, need - x.shape[-1]))
        c = x[:, :need].reshape(x.shape[0], need // g, g)
        span = (n_frames - 1) * h + 1
        return torch.cat([c[:, j:j + span:h] for j in range(self.n_fft // g)], -1)

    def frames(self, x: torch.Tensor):
        """Reflect-pad by n_fft/2, pre-emphasise, and cut (B, T, n_fft) frames, T = 1 + L // hop;
        also each frame's preceding raw sample (B, T) (0 before the first), which the
        emphasised basis needs to give the raw frame's spectrum."""
        pad = self.n_fft // 2
        n_frames = 1 + x.shape[-1] // self.hop
        x = nn.functional.pad(x.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        if not self.emphasis:
            return self.cut(x, n_frames), None
        xz = nn.functional.pad(x, (1, 0))
        y = xz[:, 1:] - self.emphasis * xz[:, :-1]
        return self.cut(y, n_frames), xz[:, 0:(n_frames - 1) * self.hop + 1:self.hop]

    def forward(self, wav):
        f, before = self.frames(wav)
        peak = f.abs().amax(-1, keepdim=True).clamp_min(1e-10)
        f = f / peak
        if not self.quantize:
            y = torch.matmul(f, self.basis)
        elif self.planes == 1:
            y = torch.matmul(fake_quant(f, ACT_SCALE), fake_quant_columns(self.basis, self.basis_scale))
        else:   # one integer product of twice the rows does both planes
            y = join_planes(torch.matmul(fake_quant(split_planes(f), ACT_SCALE),
                                         fake_quant_columns(self.basis, self.basis_scale)), f.shape[1])
        if before is not None:   # at the frame's scale, like the product, so the peak is applied once below
            y = y + (before.unsqueeze(-1) / peak) * self.carry
        re, im = y[..., :self.n_freqs], y[..., self.n_freqs:]
        power = (re * re + im * im) * (peak * peak)
        feats = torch.log(torch.matmul(power, self.fb) + LOG_OFFSET)        # (B, T, n_mels)
        if self.has_dct:
            feats = torch.matmul(feats, self.dct)
        return feats.transpose(1, 2)


class Int8Frontend(nn.Module):
    def __init__(self, spec: FrameSpec, weight_bits: int = 8, quantize: bool = True, emphasis: float = EMPHASIS,
                 planes: int = 1):
        super().__init__()
        self.frames = Int8Frames(spec, weight_bits, quantize, emphasis, planes)
        self.norm = spec.norm

    def forward(self, wav):
        return self.norm(self.frames(wav))


class Int8Net(nn.Module):
    """Waveform -> logits with the int8 front-end and the model's float backbone: in
    PyTorch it simulates the int8 export exactly (up to float summation order)."""

    def __init__(self, model, spec: FrameSpec, weight_bits: int = 8, quantize: bool = True,
                 emphasis: float = EMPHASIS, planes: int = 1):
        super().__init__()
        self.frontend = Int8Frontend(spec, weight_bits, quantize, emphasis, planes)
        self.backbone = model.backbone

    def forward(self, wav):
        return self.backbone(self.frontend(wav))


def fold_weight_quantizers(model):
    """Replace each QuantizeLinear of a constant (the weights the exporter leaves as float
    + Q + DQ) by its int8 result, so the file stores int8 weights read by DequantizeLinear."""
    import onnx
    from onnx import numpy_helper
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    consts = {n.output[0]: n for n in g.node if n.op_type == "Constant"}

    def value(name):
        if name in inits:
            return numpy_helper.to_array(inits[name])
        if name in consts:
            return numpy_helper.to_array(consts[name].attribute[0].t)
        return None

    keep, folded = [], 0
    for node in g.node:
        x = value(node.input[0]) if node.op_type == "QuantizeLinear" else None
        if x is None:
            keep.append(node)
            continue
        scale, zp = value(node.input[1]), value(node.input[2])
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if scale.ndim == 1:
            shape = [1] * x.ndim
            shape[axis] = -1
            scale, zp = scale.reshape(shape), zp.reshape(shape)
        info = np.iinfo(zp.dtype)
        q = np.clip(np.rint(x / scale) + zp.astype(np.int32), info.min, info.max).astype(zp.dtype)
        g.initializer.append(numpy_helper.from_array(q, node.output[0]))
        folded += 1
    del g.node[:]
    g.node.extend(keep)
    # Drop initializers / Constants nothing reads any more (the float weights).
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    live = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(live)
    nodes = [n for n in g.node if n.op_type != "Constant" or n.output[0] in used]
    del g.node[:]
    g.node.extend(nodes)
    onnx.checker.check_model(model)
    return folded


def export_int8_frontend(model, spec: FrameSpec, path, num_samples: int = 16000, weight_bits: int = 8,
                         emphasis: float = EMPHASIS, planes: int = 1) -> dict:
    """Write the int8-front-end model (waveform (batch, num_samples) -> logits) to ``path``."""
    import onnx

    from kws_okd.export.onnx_io import export_onnx
    net = Int8Net(model, spec, weight_bits, emphasis=emphasis, planes=planes).eval()
    with atomic_path(path) as tmp:   # the file appears only once its weights are int8
        export_onnx(net, torch.randn(1, num_samples) * 0.1, tmp, "wav")
        m = onnx.load(str(tmp))
        folded = fold_weight_quantizers(m)
        onnx.save(m, str(tmp))
    return dict(weight_tensors_int8=folded, weight_bits=weight_bits, activation_scale=ACT_SCALE, emphasis=emphasis,
                frame_planes=planes)


class WaveReader:
    """CalibrationDataReader over in-memory waveforms, ``batch`` at a time."""

    def __init__(self, input_name: str, waves: np.ndarray, batch: int = 16):
        # Histogram calibrators stack every batch's activations, so all batches must
        # have one shape: a ragged last batch is dropped.
        batch = min(batch, len(waves))
        waves = waves[:len(waves) // batch * batch]
        self.input_name, self.waves, self.batch, self.i = input_name, waves, batch, 0

    def get_next(self):
        if self.i >= len(self.waves):
            return None
        x = self.waves[self.i:self.i + self.batch].astype(np.float32)
        self.i += self.batch
        return {self.input_name: x}

    def rewind(self):
        self.i = 0


def inline_identity_initializers(model) -> int:
    """The exporter shares equal constants (e.g. the folded biases of identically initialised
    batch norms) through Identity nodes; ORT's quantiser then finds a bias that is not an
    initializer and leaves that convolution float. Give each its own copy instead."""
    from onnx import numpy_helper
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    keep, n = [], 0
    for node in g.node:
        if node.op_type == "Identity" and node.input[0] in inits:
            g.initializer.append(numpy_helper.from_array(numpy_helper.to_array(inits[node.input[0]]),
                                                         node.output[0]))
            n += 1
        else:
            keep.append(node)
    del g.node[:]
    g.node.extend(keep)
    return n


def backbone_nodes(model, op_types=("Conv", "MatMul", "Gemm")) -> list[str]:
    """Names of the float ``op_types`` nodes outside the front-end (``/frontend...``)."""
    return [n.name for n in model.graph.node if n.op_type in op_types and not n.name.startswith("/frontend")]


def quantize_backbone(src_path, dst_path, calib_waves: np.ndarray, percentile: float = 99.99,
                      per_channel: bool = True) -> dict:
    """ORT static QDQ quantisation of the backbone's Conv/MatMul/Gemm (front-end nodes,
    float or already int8, are left alone).

    Calibration compared on BC-ResNet-1 kd+lr01 with a float front-end (test_id, 560
    clips, float 77.9 %; 256 training clips; per-channel / per-tensor weights): min/max
    72.0 / 71.6 %, ORT's entropy the same, 99.99th percentile 75.2 / 75.5 %, 99.999th
    74.3 / 70.7 %. Quantising one layer group at a time (stem, stages, head, or all
    frequency-depthwise, 1x1 transition or temporal convolutions) each costs 2-9 % top-1
    agreement: the error is spread over the network, not one sensitive layer.
    """
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    class Reader(WaveReader, CalibrationDataReader):
        pass

    model = onnx.load(str(src_path))
    inline_identity_initializers(model)
    name = model.graph.input[0].name
    nodes = backbone_nodes(model)
    reader = Reader(name, calib_waves)
    with atomic_path(dst_path) as tmp:
        quantize_static(model, str(tmp), reader,
                        quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["Conv", "MatMul", "Gemm"], nodes_to_quantize=nodes,
                        calibrate_method=CalibrationMethod.Percentile,
                        extra_options={"CalibPercentile": percentile})
    return dict(calibration_clips=int(len(reader.waves)), calibration=f"percentile {percentile:g}",
                quantized_nodes=len(nodes))
