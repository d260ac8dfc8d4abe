"""What the streaming engine runs: a window model split into frame features and a
window classifier, in PyTorch or ONNX Runtime, or a stateful model stepped per hop.

PyTorch is imported only by the PyTorch wrapper, so ONNX Runtime streaming starts
without it (see :mod:`kws_okd.stream.fast`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import numpy as np

from kws_okd.errors import ConfigError
from kws_okd.stream.features import FrameFeatures, frame_spec


class WindowModel(Protocol):
    """A classifier of fixed-length windows.

    ``incremental`` models expose ``frames(samples)`` (feature frames of raw samples,
    see :class:`~kws_okd.stream.features.FrameFeatures`) and ``classify(frames)``; the
    others only ``classify_wave(window)``. Models with ``max_batch > 1`` also have
    ``classify_batch(frames (B, F, n)) -> (B, classes)``, whose rows must not depend on
    the batch they were computed in. ``runtime`` is ``"torch"`` (the engine then runs
    PyTorch on its thread count) or another name.
    """
    sample_rate: int
    num_samples: int
    incremental: bool
    n_fft: int
    hop: int

    def classify_wave(self, window: np.ndarray) -> np.ndarray: ...


class StatefulModel(Protocol):
    """A model with internal state that consumes one hop of samples at a time (e.g. a
    causal network with cached activations). ``step`` returns logits or ``None`` while
    it is still warming up."""
    sample_rate: int

    def reset(self) -> None: ...

    def step(self, samples: np.ndarray) -> np.ndarray | None: ...


class TorchWindowModel:
    """A :class:`~kws_okd.models.registry.KWSNet` run window by window; incremental when
    its front-end is a log-mel/MFCC that :func:`frame_spec` understands."""
    runtime = "torch"
    max_batch = 1   # PyTorch convolutions may round differently with the batch size

    def __init__(self, model, sample_rate: int = 16000, window_s: float = 1.0):
        self.model = model.eval()
        self.sample_rate = sample_rate
        self.num_samples = int(round(sample_rate * window_s))
        spec = frame_spec(getattr(model, "frontend", None))
        self.incremental = spec is not None and hasattr(model, "backbone")
        if self.incremental:
            self.spec = spec
            self.n_fft, self.hop = spec.n_fft, spec.hop
            self.frames = FrameFeatures(spec)
        else:
            self.n_fft = self.hop = 0

    def classify(self, feats: np.ndarray) -> np.ndarray:
        import torch
        with torch.no_grad():
            x = self.spec.norm(torch.from_numpy(feats).unsqueeze(0))
            return self.model.backbone(x)[0].numpy()

    def classify_wave(self, window: np.ndarray) -> np.ndarray:
        import torch
        with torch.no_grad():
            return self.model(torch.from_numpy(window).unsqueeze(0))[0].numpy()


def ort_session(path, threads: int = 1):
    """A CPU ONNX Runtime session on ``threads`` intra-op threads (one by default: a
    window is too little work to share)."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class OnnxWindowClassifier:
    """An incremental window model whose classifier is an ONNX Runtime session ``_clf``
    taking one or more windows' raw frames (``frames``) to logits."""
    runtime = "onnxruntime"
    incremental = True

    def classify(self, feats: np.ndarray) -> np.ndarray:
        return self.classify_batch(feats[None])[0]

    def classify_batch(self, feats: np.ndarray) -> np.ndarray:
        return self._clf.run(None, {"frames": np.ascontiguousarray(feats, dtype=np.float32)})[0]

    def classify_wave(self, window: np.ndarray) -> np.ndarray:
        raise NotImplementedError  # always incremental


class OnnxStreamModel(OnnxWindowClassifier):
    """The streaming export (``kws-okd export``): ``frames.onnx`` (samples -> raw feature
    frames) and ``classifier.onnx`` (raw frames of one window -> logits), described by
    ``stream.json``."""
    max_batch = 16

    def __init__(self, folder, threads: int = 1):
        folder = Path(folder)
        meta_path = folder / "stream.json"
        if not meta_path.exists():
            raise ConfigError(f"{meta_path}: no streaming export here (run `kws-okd export` first)")
        meta = json.loads(meta_path.read_text())
        self._frames = ort_session(folder / meta["frames"], threads)
        self._clf = ort_session(folder / meta["classifier"], threads)
        self.classes = meta["classes"]
        self.sample_rate, self.num_samples = meta["sample_rate"], meta["num_samples"]
        self.n_fft, self.hop = meta["n_fft"], meta["hop"]
        self.pad = self.n_fft // 2

    def frames(self, samples: np.ndarray) -> np.ndarray:  # (B, L) -> (B, F, n)
        return self._frames.run(None, {"samples": np.ascontiguousarray(samples, dtype=np.float32)})[0]



def window_of(model, sample_rate: int = 16000) -> float:
    """The window a model hears, in seconds: its own samples per window (fast path,
    ONNX), what it was trained on (a model from ``load_model``), else 1 s."""
    if getattr(model, "num_samples", None):
        return model.num_samples / sample_rate
    return float(getattr(model, "window_s", 1.0))


def as_window_model(model, sample_rate: int = 16000, window_s: float = 1.0):
    """Wrap what the engine was given: a KWSNet, an already-wrapped model, or a stateful one."""
    if hasattr(model, "step") or hasattr(model, "classify_wave"):
        return model
    return TorchWindowModel(model, sample_rate, window_s)
