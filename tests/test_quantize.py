"""The int8 export's pieces: fake quantisation, the per-frame-scaled int8 DFT front-end,
int8 weights in the ONNX file, ORT's integer kernels, the optional int8 backbone and the
float-vs-int8 comparison."""
import numpy as np
import pytest
import torch

from kws_okd.export.compare import interleaved_ms, latency_by_batch, speed_summary
from kws_okd.export.frontend import DFTFrontend
from kws_okd.export.onnx_io import export_onnx, session
from kws_okd.export.quantize import (ACT_SCALE, Int8Frames, Int8Frontend, Int8Net, column_scales, emphasised_basis,
                                     export_int8_frontend, fake_quant, fake_quant_columns, join_planes, quantize_backbone,
                                     split_planes)
from kws_okd.models import build_model
from kws_okd.stream.features import frame_spec

SR = 16000


def speechy(n=4, seed=0, gain=1.0):
    """Noise plus a gated tone whose level changes over the clip (loud and quiet frames)."""
    rng = np.random.default_rng(seed)
    t = np.arange(SR) / SR
    env = np.where((t > 0.3) & (t < 0.6), 1.0, 0.02)
    x = [0.01 * rng.standard_normal(SR) + 0.5 * env * np.sin(2 * np.pi * rng.uniform(300, 3000) * t)
         for _ in range(n)]
    return torch.tensor(np.stack(x) * gain, dtype=torch.float32)


def test_fake_quant_round_trip_error_is_at_most_half_a_step():
    scale = 0.05
    x = torch.linspace(-127 * scale, 127 * scale, 10001)
    q = fake_quant(x, scale)
    # Every output is on the grid k * scale, |k| <= 127, and the nearest grid point.
    k = q / scale
    assert torch.allclose(k, k.round(), atol=1e-4) and k.abs().max() <= 127 + 1e-4
    assert (q - x).abs().max() <= scale / 2 + 1e-6
    # Outside the int8 range it clamps (to 127 * scale above, -128 * scale below).
    big = fake_quant(torch.tensor([1e3, -1e3]), scale)
    assert torch.allclose(big, torch.tensor([127 * scale, -128 * scale]))


def test_per_column_weight_quantisation():
    w = torch.randn(64, 5)
    w[:, 3] = 0.0                                     # a DFT basis has all-zero columns (sin at DC)
    s = column_scales(w)
    assert torch.allclose(s[[0, 1, 2, 4]], w.abs().amax(0)[[0, 1, 2, 4]] / 127)
    q = fake_quant_columns(w, s)
    assert torch.isfinite(q).all() and (q[:, 3] == 0).all()
    assert ((q - w).abs() <= s / 2 + 1e-7).all()      # half a step of each column's own scale
    assert torch.allclose((q / s).abs().amax(0)[[0, 1, 2, 4]], torch.tensor(127.0))
    s7 = column_scales(w, bits=7)
    assert (fake_quant_columns(w, s7) / s7).abs().max() <= 63 + 1e-4


@pytest.mark.parametrize("frontend", [{"name": "logmel"}, {"name": "mfcc"},
                                      {"name": "logmel", "win_ms": 40, "hop_ms": 20}])
def test_int8_frames_unquantised_equal_the_float_dft_frontend(frontend):
    m = build_model("bcresnet1", 4, frontend=frontend).eval()
    spec = frame_spec(m.frontend)
    x = speechy()
    with torch.no_grad():
        ref = DFTFrontend(spec)(x)
        got = Int8Frontend(spec, quantize=False)(x)
    assert got.shape == ref.shape
    assert (got - ref).abs().max() <= 1e-3             # framing, scaling, mel, DCT: the same maths


def test_int8_frontend_error_does_not_grow_on_quiet_clips():
    """Per-frame scaling: a clip 40 dB quieter has the same relative quantisation error
    (a fixed input scale would leave it a few int8 steps)."""
    spec = frame_spec(build_model("bcresnet1", 4).frontend)
    ref, q8 = Int8Frames(spec, quantize=False), Int8Frames(spec)
    errs = []
    for gain in (1.0, 0.01):
        x = speechy(gain=gain)
        with torch.no_grad():
            errs.append(float((q8(x) - ref(x)).abs().mean()))   # log-mel error (nats)
    # 0.09 and 0.07; a fixed input scale of 1/127 gives 0.14 and 2.9.
    assert errs[0] < 0.12 and errs[1] < 0.12
    assert 0.5 < errs[1] / errs[0] < 1.5


def test_emphasised_basis_gives_the_raw_frames_spectrum():
    """x @ basis == y @ basis_a + x[-1] * c for y[n] = x[n] - a x[n-1], in exact arithmetic."""
    g = torch.Generator().manual_seed(0)
    n, k, a = 12, 5, 0.97
    basis = torch.randn(n, k, generator=g, dtype=torch.float64)
    x = torch.randn(3, n + 1, generator=g, dtype=torch.float64)      # x[:, 0] is the sample before the frame
    y = x[:, 1:] - a * x[:, :-1]
    basis_a, carry = emphasised_basis(basis, a)
    assert torch.allclose(y @ basis_a + x[:, :1] * carry, x[:, 1:] @ basis, atol=1e-12)
    # By hand for the last two rows: basis_a[n-1] = basis[n-1], basis_a[n-2] = basis[n-2] + a basis[n-1].
    assert torch.equal(basis_a[-1], basis[-1])
    assert torch.allclose(basis_a[-2], basis[-2] + a * basis[-1])
    same, zero = emphasised_basis(basis, 0.0)
    assert torch.equal(same, basis) and not zero.any()


def test_pre_emphasis_keeps_a_weak_high_component_above_the_rounding_error():
    """A strong low tone and a 5 kHz one 44 dB below it: without pre-emphasis the frame's int8
    rounding error buries the 5 kHz mel bin; with it the bin keeps ten times less error."""
    spec = frame_spec(build_model("bcresnet1", 4).frontend)
    t = np.arange(SR) / SR
    rng = np.random.default_rng(0)
    x = torch.tensor(np.stack([0.5 * np.sin(2 * np.pi * f0 * t) + 0.003 * np.sin(2 * np.pi * 5000 * t)
                               + 1e-4 * rng.standard_normal(SR) for f0 in (200, 350, 500)]), dtype=torch.float32)
    err = {}
    for a in (0.0, 0.97):
        ref, q8 = Int8Frames(spec, quantize=False, emphasis=a), Int8Frames(spec, emphasis=a)
        with torch.no_grad():
            feats = ref(x)
            high = spec.fb.shape[1] // 2
            b5k = high + int(feats.mean((0, 2))[high:].argmax())    # the mel bin holding 5 kHz
            err[a] = float((q8(x) - feats).abs()[:, b5k - 1:b5k + 2].mean())   # it and its neighbours
    assert err[0.0] > 0.5 and err[0.97] < err[0.0] / 10


def test_two_int8_planes_keep_a_frame_within_half_a_fine_step():
    f = torch.tensor([[[0.5, -0.3, 1.0, 0.0123, -1.0, 0.00394]]])     # (B=1, T=1, n=6)
    planes = fake_quant(split_planes(f), ACT_SCALE)
    assert planes.shape == (1, 2, 6)
    # By hand for 0.0123: 127 * 0.0123 = 1.5621 -> first plane 2/127; the remainder
    # -0.4379 * 127 = -55.6 -> second plane -56/127; joined 2/127 - 56/127**2 = 0.012276.
    assert planes[0, 0, 3] * 127 == pytest.approx(2) and planes[0, 1, 3] * 127 == pytest.approx(-56)
    joined = join_planes(planes, 1)
    assert joined[0, 0, 3] == pytest.approx(2 / 127 - 56 / 127 ** 2)
    assert ((joined - f).abs() <= 0.5 / 127 ** 2 + 1e-7).all()
    assert ((fake_quant(f, ACT_SCALE) - f).abs().max() > 10 * (joined - f).abs().max())
    with pytest.raises(ValueError, match="1 or 2 int8 planes"):
        Int8Frames(frame_spec(build_model("bcresnet1", 4).frontend), planes=3)


def test_two_planes_bring_the_int8_features_closer_to_float():
    spec = frame_spec(build_model("bcresnet1", 4).frontend)
    x = speechy()
    with torch.no_grad():
        ref = Int8Frames(spec, quantize=False)(x)
        err = {p: float((Int8Frames(spec, planes=p)(x) - ref).abs().mean()) for p in (1, 2)}
    # 0.090 and 0.060 nats: what is left is the basis's own rounding.
    assert err[2] < 0.8 * err[1]


def test_two_plane_export_is_one_integer_product_equal_to_its_simulation(tmp_path):
    import onnx
    import onnxruntime as ort
    torch.manual_seed(0)
    model = build_model("bcresnet1", 4).eval()
    spec = frame_spec(model.frontend)
    info = export_int8_frontend(model, spec, tmp_path / "x2.onnx", planes=2)
    assert info["frame_planes"] == 2 and info["weight_tensors_int8"] == 1
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(str(tmp_path / "x2.onnx"), opts, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node]
    assert ops.count("MatMulIntegerToFloat") == 1
    x = speechy(3, seed=4)
    with torch.no_grad():
        sim = Int8Net(model, spec, planes=2).eval()(x).numpy()
    got = session(tmp_path / "x2.onnx").run(None, {"wav": x.numpy()})[0]
    assert np.abs(got - sim).max() <= 1e-3


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("bcresnet1", 4).eval()
    spec = frame_spec(model.frontend)
    root = tmp_path_factory.mktemp("q")
    export_onnx(Int8Net(model, spec, quantize=False), torch.randn(1, SR) * 0.1, root / "fp32.onnx", "wav")
    info = export_int8_frontend(model, spec, root / "int8.onnx")
    return dict(model=model, spec=spec, root=root, info=info)


def test_int8_file_stores_the_dft_basis_as_int8(int8_export):
    import onnx
    q = onnx.load(str(int8_export["root"] / "int8.onnx"))
    spec = int8_export["spec"]
    n_basis = spec.n_fft * 2 * (spec.n_fft // 2 + 1)
    int8 = [t for t in q.graph.initializer if t.data_type == onnx.TensorProto.INT8 and np.prod(t.dims) == n_basis]
    assert len(int8) == 1 and int8_export["info"]["weight_tensors_int8"] == 1
    assert not [t for t in q.graph.initializer if t.data_type == onnx.TensorProto.FLOAT and np.prod(t.dims) == n_basis]
    assert (int8_export["root"] / "int8.onnx").stat().st_size < 0.5 * (int8_export["root"] / "fp32.onnx").stat().st_size


def test_ort_runs_the_dft_as_an_integer_matmul(int8_export, tmp_path):
    import onnx
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(str(int8_export["root"] / "int8.onnx"), opts, providers=["CPUExecutionProvider"])
    ops = {n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node}
    assert "MatMulIntegerToFloat" in ops


def test_int8_export_matches_its_pytorch_simulation_and_the_float_model(int8_export):
    model, spec = int8_export["model"], int8_export["spec"]
    x = speechy(6, seed=3)
    with torch.no_grad():
        sim = Int8Net(model, spec).eval()(x).numpy()
        ref = model(x).numpy()
    got = session(int8_export["root"] / "int8.onnx").run(None, {"wav": x.numpy()})[0]
    assert np.abs(got - sim).max() <= 1e-3
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 5 / 6
    assert np.abs(got - ref).max() < 0.1 * np.abs(ref).max()


def test_int8_backbone_uses_integer_convolutions(int8_export, tmp_path):
    import onnx
    import onnxruntime as ort
    calib = speechy(16, seed=5).numpy()
    info = quantize_backbone(int8_export["root"] / "int8.onnx", tmp_path / "all.onnx", calib)
    assert info["quantized_nodes"] >= 40 and info["calibration_clips"] == 16
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(str(tmp_path / "all.onnx"), opts, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node]
    assert ops.count("QLinearConv") >= 40 and "MatMulIntegerToFloat" in ops
    x = speechy(4, seed=9).numpy()
    a = session(int8_export["root"] / "int8.onnx").run(None, {"wav": x})[0]
    b = session(tmp_path / "all.onnx").run(None, {"wav": x})[0]
    assert np.isfinite(b).all() and np.abs(a - b).max() < 0.5 * np.abs(a).max()


def test_interleaved_latency_and_speed_summary(int8_export):
    sessions = {"onnx_fp32": session(int8_export["root"] / "fp32.onnx"),
                "onnx_int8": session(int8_export["root"] / "int8.onnx")}
    ms = interleaved_ms(sessions, batch=2, runs=2, rounds=2, warmup=1)
    assert set(ms) == set(sessions) and all(v > 0 for v in ms.values())
    lat = latency_by_batch(sessions, (1, 4), runs=3, rounds=1)
    assert set(lat) == {"batch_1", "batch_4"}
    assert speed_summary({"batch_1": {"onnx_fp32": 2.0, "onnx_int8": 1.0},
                          "batch_32": {"onnx_fp32": 1.5, "onnx_int8": 1.0}})["faster"] == "int8"
    s = speed_summary({"batch_1": {"onnx_fp32": 1.0, "onnx_int8": 2.0},
                       "batch_32": {"onnx_fp32": 1.5, "onnx_int8": 1.0}})
    assert s["faster"] == "mixed" and s["int8_speedup"]["batch_1"] == 0.5


def test_activation_scale_covers_peak_normalised_frames():
    # Frames divided by their peak lie in [-1, 1]: 1/127 maps them onto +-127 with no clipping.
    assert ACT_SCALE * 127 == pytest.approx(1.0)
    f = torch.rand(3, 480) * 2 - 1
    f = f / f.abs().amax(-1, keepdim=True)
    assert (fake_quant(f, ACT_SCALE) - f).abs().max() <= ACT_SCALE / 2 + 1e-7
