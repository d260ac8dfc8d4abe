"""The fast streaming path: a model's window classifier in ONNX Runtime, its log-mel /
MFCC frames in NumPy, both on one thread, prepared once per model file and cached.

``kws-okd stream --model model.pt`` (and ``eval-stream``) run this by default. The
first run exports the model's classifier (normalisation + backbone) to ONNX and checks
the whole streaming path against the PyTorch model run on every window: the cache
entry is published (atomically, by renaming its finished folder) only if every
posterior is within 1e-4. Later runs load the entry without importing PyTorch, which
is most of the start-up time.

Entries live in ``.kws-okd-cache/`` next to the model (or ``$KWS_OKD_CACHE``, or
``~/.cache/kws-okd`` when the model's folder is read-only), named by a hash of the
model file and of this format's version: a retrained model gets a new entry.

A model file can also carry its checked entry (``embed=True``; ``make run`` does it for
every student): three extra records in the zip archive ``torch.save`` writes, which
``torch.load`` ignores. A copy of ``model.pt`` alone then starts without PyTorch and
without an export: the entry is unpacked into the cache. It is used only while the
model's own records are those it was checked against (their CRC-32s are in it).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from kws_okd.errors import ConfigError
from kws_okd.stream.backends import OnnxWindowClassifier, ort_session
from kws_okd.stream.features import NumpyFrames

FORMAT = "kws-okd-fast-stream/2"   # 2: carries the thresholds stored in model.pt
TOLERANCE = 1e-4          # max abs posterior difference to PyTorch (as the export requires)
META = "fast.json"
ENTRY_FILES = (META, "frontend.npz", "classifier.onnx")
EMBEDDED = "kws-okd-fast"   # the folder of the embedded entry inside model.pt's archive


class FastPathUnavailable(ConfigError):
    """The model has no frame-wise front-end (e.g. a raw-waveform network)."""


class FastWindowModel(OnnxWindowClassifier):
    """A cache entry: ``classifier.onnx`` (raw frames of one window -> logits, batched),
    ``frontend.npz`` (window, mel filters, DCT) and ``fast.json``."""
    max_batch = 25    # windows per ONNX Runtime call when a block completes several

    def __init__(self, folder, threads: int = 1):
        self.folder = folder = Path(folder)
        try:
            meta = json.loads((folder / META).read_text())
            arrays = np.load(folder / "frontend.npz")
        except (OSError, ValueError) as e:
            raise ConfigError(f"{folder}: broken fast-stream cache entry ({e}); delete it") from None
        if meta.get("format") != FORMAT:
            raise ConfigError(f"{folder}: cache entry of another format ({meta.get('format')})")
        self.meta = meta
        self.classes = list(meta["classes"])
        self.stored_stream = meta.get("stream")   # model.pt's per-keyword thresholds, if any
        self.sample_rate, self.num_samples = meta["sample_rate"], meta["num_samples"]
        self.n_fft, self.hop = meta["n_fft"], meta["hop"]
        self.frames = NumpyFrames(self.n_fft, self.hop, arrays["window"], arrays["fb"],
                                  arrays["dct"] if "dct" in arrays.files else None)
        try:
            self._clf = ort_session(folder / "classifier.onnx", threads)
        except Exception as e:  # noqa: BLE001 (onnxruntime raises its own types)
            raise ConfigError(f"{folder}: broken fast-stream cache entry ({e}); delete it") from None



# -- the cache -------------------------------------------------------------------------

def model_digest(path) -> str:
    h = hashlib.sha256(FORMAT.encode())
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_roots(model_path, cache_dir=None) -> list[Path]:
    """Where entries are looked for, in order; new ones go to the first writable."""
    if cache_dir or os.environ.get("KWS_OKD_CACHE"):
        return [Path(cache_dir or os.environ["KWS_OKD_CACHE"])]
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return [Path(model_path).resolve().parent / ".kws-okd-cache", Path(xdg) / "kws-okd"]


def _usable(root: Path) -> bool:
    try:
        root.mkdir(parents=True, exist_ok=True)
        return os.access(root, os.W_OK)
    except OSError:
        return False


def _model_records(z: zipfile.ZipFile) -> tuple[str, dict[str, int]]:
    """The archive's top folder and the CRC-32 of each of the model's own records."""
    infos = z.infolist()
    top = infos[0].filename.split("/")[0] if infos else ""
    return top, {i.filename: i.CRC for i in infos if not i.filename.startswith(f"{top}/{EMBEDDED}/")}


def embedded_entry(model_path) -> dict[str, bytes] | None:
    """The entry embedded in ``model_path`` (file name -> bytes), or None when it has none,
    is not a zip archive, or its records changed since the entry was checked."""
    try:
        with zipfile.ZipFile(model_path) as z:
            top, records = _model_records(z)
            files = {f: z.read(f"{top}/{EMBEDDED}/{f}") for f in ENTRY_FILES}
    except (OSError, KeyError, zipfile.BadZipFile):
        return None
    try:
        checked = json.loads(files[META]).get("model_records")
    except ValueError:
        return None
    return files if checked == records else None


def embed_fast_entry(model_path, entry) -> None:
    """Append the checked cache entry in the folder ``entry`` to the model file (atomically:
    a copy gets the records, then replaces the file)."""
    from kws_okd.utils.atomic import atomic_path
    path = Path(model_path)
    with atomic_path(path) as tmp:
        shutil.copyfile(path, tmp)
        with zipfile.ZipFile(tmp, "a") as z:
            top, records = _model_records(z)
            if len(records) < len(z.infolist()):
                raise ConfigError(f"{path}: already carries a fast-stream entry")
            meta = dict(json.loads((Path(entry) / META).read_text()), model_records=records)
            z.writestr(f"{top}/{EMBEDDED}/{META}", json.dumps(meta, indent=2) + "\n")
            for f in ENTRY_FILES[1:]:
                z.write(Path(entry) / f, f"{top}/{EMBEDDED}/{f}")


def _publish(tmp: Path, final: Path) -> None:
    try:
        os.rename(tmp, final)
    except OSError:   # another process published it first (or a broken leftover)
        if not (final / META).is_file():
            shutil.rmtree(final, ignore_errors=True)
            os.rename(tmp, final)


def load_fast_model(model_path, cache_dir=None, threads: int = 1, log=None, embed: bool = False) -> FastWindowModel:
    """The fast model of ``model_path``, from the cache, from the entry the file carries, or
    built (and checked) now; ``embed=True`` then stores the new entry in the model file too.
    ``log(message)`` hears about a build (it takes a few seconds, once)."""
    path = Path(model_path)
    if not path.is_file():
        raise ConfigError(f"{path}: model file does not exist (train it first)")
    name = f"stream-{model_digest(path)[:20]}"
    roots = cache_roots(path, cache_dir)
    for root in roots:
        if (root / name / META).is_file():
            try:
                found = FastWindowModel(root / name, threads)
            except ConfigError as e:   # a damaged entry: rebuilt below
                if log:
                    log(f"rebuilding: {e}")
                shutil.rmtree(root / name, ignore_errors=True)
                continue
            if embed and embedded_entry(path) is None:   # cached, but not yet inside the file
                embed_fast_entry(path, found.folder)
                return load_fast_model(path, cache_dir, threads, log)
            return found
    root = next((r for r in roots if _usable(r)), None)
    if root is None:
        raise ConfigError(f"no writable cache folder for the fast streaming model (tried "
                          f"{', '.join(map(str, roots))}); pass --cache-dir or use --runtime torch")
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=root))
    try:
        carried = embedded_entry(path)
        if carried is not None:   # no PyTorch, no export: the file's own checked entry
            for f, data in carried.items():
                (tmp / f).write_bytes(data)
        else:
            if log:
                log(f"preparing the fast streaming model for {path} (once; cached in {root / name})")
            from kws_okd.train.checkpoint import load_model, model_window_s
            model, blob = load_model(path)
            build_fast(model, blob["classes"], tmp, source=str(path), stream=blob.get("stream"),
                       window_s=model_window_s(blob))
            if embed:   # the file changes, and with it the entry's name
                embed_fast_entry(path, tmp)
                name = f"stream-{model_digest(path)[:20]}"
        _publish(tmp, root / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return FastWindowModel(root / name, threads)


def _probe_audio(seconds: int = 3, sample_rate: int = 16000) -> np.ndarray:
    """Noise whose level changes every second (-50, -30, -10 dBFS) plus a chirp: broadband,
    quiet and loud windows, and windows straddling the level changes."""
    rng = np.random.default_rng(0)
    level = np.repeat([0.003, 0.03, 0.3], sample_rate)[:seconds * sample_rate]
    x = rng.standard_normal(seconds * sample_rate) * np.resize(level, seconds * sample_rate)
    t = np.arange(seconds * sample_rate) / sample_rate
    x += 0.2 * np.sin(2 * np.pi * (300 * t + 400 * t ** 2)) * (t > 1.3) * (t < 1.9)
    return x.astype(np.float32)


def build_fast(model, classes, out, source: str = "", sample_rate: int = 16000, window_s: float = 1.0,
               stream: dict | None = None) -> dict:
    """Write a cache entry for ``model`` into the folder ``out`` and check it: the
    streaming engine on the entry against the PyTorch model run on each whole window
    (hop 20 ms, no smoothing); raises :class:`ConfigError` beyond :data:`TOLERANCE`."""
    import torch

    from kws_okd.export.frontend import WindowClassifier
    from kws_okd.export.onnx_io import export_onnx
    from kws_okd.stream.engine import StreamConfig, StreamEngine
    from kws_okd.stream.features import frame_arrays, frame_spec
    out = Path(out)
    spec = frame_spec(getattr(model, "frontend", None))
    if spec is None or not hasattr(model, "backbone"):
        raise FastPathUnavailable(f"{type(getattr(model, 'frontend', model)).__name__} front-end has no "
                                  "frame-wise form: no fast streaming path for this model")
    model = model.eval()
    num_samples = int(round(sample_rate * window_s))
    n_frames = spec.n_frames(num_samples)
    clf = inference_copy(WindowClassifier(model).eval(), torch.zeros(1, spec.n_features, n_frames))
    export_onnx(clf, torch.randn(1, spec.n_features, n_frames), out / "classifier.onnx", "frames")
    arrays = {k: v for k, v in frame_arrays(spec).items() if k in ("window", "fb", "dct") and v is not None}
    np.savez(out / "frontend.npz", **arrays)
    meta = dict(format=FORMAT, source=source, classes=list(classes), sample_rate=sample_rate,
                num_samples=num_samples, n_fft=spec.n_fft, hop=spec.hop, n_features=spec.n_features,
                n_frames=n_frames, stream=stream)
    (out / META).write_text(json.dumps(meta, indent=2) + "\n")
    # The check: every window's posteriors against PyTorch on the whole window.
    audio = _probe_audio(sample_rate=sample_rate)
    hop = int(sample_rate * 0.02)
    cfg = StreamConfig(hop_ms=20, smooth=1, keywords=list(classes), threshold=2.0, window_s=window_s)
    eng = StreamEngine(FastWindowModel(out), classes, cfg, sample_rate=sample_rate, record=True)
    eng.feed(audio)
    got = eng.trace()[1]
    starts = np.arange(len(got)) * hop
    windows = np.stack([audio[s:s + num_samples] for s in starts])
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            ref = torch.cat([torch.softmax(model(torch.from_numpy(windows[i:i + 32])), -1)
                             for i in range(0, len(windows), 32)]).numpy()
    finally:
        torch.set_num_threads(prev)
    diff = float(np.abs(got - ref).max())
    if not diff <= TOLERANCE:
        raise ConfigError(f"fast streaming path differs from PyTorch by {diff:.3g} > {TOLERANCE:g} "
                          "in a window's posteriors; use --runtime torch")
    meta.update(posterior_max_abs_diff=diff, windows_checked=len(got))
    (out / META).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def inference_copy(module, example):
    """``module`` with each BC-ResNet block rewritten for inference (exact up to float
    rounding; the classifier runs about a quarter faster in ONNX Runtime on one thread): see
    :func:`_fused_block`.
    Other modules are returned as they are."""
    import copy

    import torch

    from kws_okd.models.bcresnet import BroadcastedBlock
    if not any(isinstance(m, BroadcastedBlock) for m in module.modules()):
        return module
    module = copy.deepcopy(module).eval()
    shapes = {}
    hooks = [m.freq_dw.register_forward_hook(lambda m, i, o, n=n: shapes.__setitem__(n, tuple(i[0].shape)))
             for n, m in module.named_modules() if isinstance(m, BroadcastedBlock)]
    with torch.no_grad():
        module(example)
    for h in hooks:
        h.remove()
    for n, (_, _, f_in, t) in shapes.items():
        parent, _, leaf = n.rpartition(".")
        owner = module.get_submodule(parent) if parent else module
        setattr(owner, leaf, _fused_block(owner.get_submodule(leaf), f_in, t))
    return module


def _fused_block(blk, f_in: int, t: int):
    """A :class:`~kws_okd.models.bcresnet.BroadcastedBlock` in eval mode as

        x = pre(x)                                   (unchanged)
        y = temporal(v_c . x[c] + vb)                (temporal branch on the frequency mean)
        out = relu([W_c | 1] . [x[c]; y[c]] + b)     (one grouped 1x1 conv, ReLU fused)

    The frequency depthwise conv, sub-spectral norm (a per-channel, per-sub-band affine
    in eval mode) and, without a transition, the identity residual are linear in ``x``
    along frequency for each channel, so they fold into one ``F_out x F_in`` matrix per
    channel; their frequency mean folds into one row ``v_c``; the broadcast of the
    temporal branch over frequency is one more input row with unit weights. ONNX
    Runtime then makes two passes over the block's largest tensor instead of seven."""
    import torch
    from torch import nn

    with torch.no_grad():
        w = blk.freq_dw.weight[:, 0, :, 0].double()                  # (C, k)
        c, k = w.shape
        s, p = blk.freq_dw.stride[0], blk.freq_dw.padding[0]
        f_out = (f_in + 2 * p - k) // s + 1
        bn, g = blk.ssn.bn, blk.ssn.groups
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        shift = bn.bias.double() - bn.running_mean.double() * scale
        a = scale.reshape(c, g, 1).expand(c, g, f_out // g).reshape(c, f_out)
        b = shift.reshape(c, g, 1).expand(c, g, f_out // g).reshape(c, f_out)
        W = torch.zeros(c, f_out, f_in, dtype=torch.float64)
        for fo in range(f_out):
            for j in range(k):
                fi = fo * s + j - p
                if 0 <= fi < f_in:
                    W[:, fo, fi] = w[:, j]
        W = a[:, :, None] * W
        v, vb = W.mean(dim=1), b.mean(dim=1)                         # (C, F_in), (C,)
        if not blk.transition:                                        # out = x + x1 + y
            W = W + torch.eye(f_out, f_in, dtype=torch.float64)
        W = torch.cat([W, torch.ones(c, f_out, 1, dtype=torch.float64)], dim=2)   # y's row

    class FusedBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.pre, self.temporal = blk.pre, blk.temporal
            self.m = nn.Conv1d(c * f_in, c, 1, groups=c)
            self.h = nn.Conv1d(c * (f_in + 1), c * f_out, 1, groups=c)
            with torch.no_grad():
                self.m.weight.copy_(v.reshape(c, f_in, 1))
                self.m.bias.copy_(vb)
                self.h.weight.copy_(W.reshape(c * f_out, f_in + 1, 1))
                self.h.bias.copy_(b.reshape(-1))

        def forward(self, x):
            x = self.pre(x)
            y = self.temporal(self.m(x.reshape(-1, c * f_in, t)).reshape(-1, c, 1, t))
            z = torch.cat([x, y], dim=2).reshape(-1, c * (f_in + 1), t)
            return torch.relu(self.h(z)).reshape(-1, c, f_out, t)

    return FusedBlock().eval()


def default_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
