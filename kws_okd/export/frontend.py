"""An export-friendly log-mel/MFCC front-end: the STFT as a strided conv1d with a
windowed DFT basis, so TorchScript and ONNX (opset 17, no complex tensors) carry it.

Built from a model's own front-end (window, mel filters, DCT, normalisation), it
reproduces torchaudio's output to float rounding; :func:`check_frontend` measures that.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from kws_okd.errors import ConfigError
from kws_okd.stream.features import LOG_OFFSET, FrameSpec, frame_spec


def dft_basis(spec) -> torch.Tensor:
    """The windowed real DFT as a (2 * n_freqs, n_fft) float64 matrix: cosine rows, then
    minus-sine rows."""
    n, n_freqs = spec.n_fft, spec.n_fft // 2 + 1
    k = torch.arange(n_freqs, dtype=torch.float64)[:, None]
    t = torch.arange(n, dtype=torch.float64)[None, :]
    ang = 2 * math.pi * k * t / n
    w = spec.window.double()[None, :]
    return torch.cat([torch.cos(ang) * w, -torch.sin(ang) * w])


class DFTFrames(nn.Module):
    """Raw samples (B, L) -> unnormalised feature frames (B, F, 1 + (L - n_fft) // hop),
    no padding: the streaming front-end, and the core of :class:`DFTFrontend`."""

    def __init__(self, spec: FrameSpec):
        super().__init__()
        self.register_buffer("basis", dft_basis(spec).float().unsqueeze(1))
        self.register_buffer("fb", spec.fb.T.contiguous())               # (n_mels, n_freqs)
        self.register_buffer("dct", spec.dct.T.contiguous() if spec.dct is not None else torch.zeros(0))
        self.has_dct = spec.dct is not None
        self.n_freqs, self.hop, self.n_fft = spec.n_fft // 2 + 1, spec.hop, spec.n_fft

    def forward(self, x):
        y = nn.functional.conv1d(x.unsqueeze(1), self.basis, stride=self.hop)  # (B, 2*nf, T)
        re, im = y[:, :self.n_freqs], y[:, self.n_freqs:]
        feats = torch.log(torch.matmul(self.fb, re * re + im * im) + LOG_OFFSET)
        if self.has_dct:
            feats = torch.matmul(self.dct, feats)
        return feats


class DFTFrontend(nn.Module):
    """Whole-window front-end: reflect padding (``center=True``), frames, normalisation."""

    def __init__(self, spec: FrameSpec):
        super().__init__()
        self.frames = DFTFrames(spec)
        self.pad = spec.n_fft // 2
        self.norm = spec.norm

    def forward(self, wav):
        x = nn.functional.pad(wav.unsqueeze(1), (self.pad, self.pad), mode="reflect").squeeze(1)
        return self.norm(self.frames(x))


class ExportNet(nn.Module):
    def __init__(self, model):
        super().__init__()
        spec = frame_spec(model.frontend)
        self.frontend = DFTFrontend(spec) if spec is not None else model.frontend
        self.backbone = model.backbone

    def forward(self, wav):
        return self.backbone(self.frontend(wav))


class WindowClassifier(nn.Module):
    """Raw frames of one window -> logits (normalisation + backbone): the streaming half
    that runs every hop."""

    def __init__(self, model):
        super().__init__()
        spec = require_spec(model)
        self.norm, self.backbone = spec.norm, model.backbone

    def forward(self, frames):
        return self.backbone(self.norm(frames))


def require_spec(model) -> FrameSpec:
    spec = frame_spec(model.frontend)
    if spec is None:
        raise ConfigError(f"front-end {type(model.frontend).__name__} has no frame-wise form: "
                          "no streaming export for this model")
    return spec


@torch.no_grad()
def check_frontend(model, num_samples: int = 16000, seed: int = 0) -> float:
    """Max abs difference between the DFT front-end and the model's own on broadband input
    (noise at two levels). Pure tones leave bins with almost no power, where float32
    DFT rounding shows in the log (up to ~1e-3 there); the logits still agree."""
    spec = frame_spec(model.frontend)
    if spec is None:
        return 0.0
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, num_samples, generator=g) * torch.tensor([[0.3], [0.01]])
    return float((DFTFrontend(spec)(x) - model.frontend(x)).abs().max())
