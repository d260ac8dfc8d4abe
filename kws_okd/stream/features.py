"""Frame-level view of a model's spectral front-end, for incremental streaming.

The training front-ends (torchaudio ``MelSpectrogram``/``MFCC`` with ``center=True``)
compute each 1 s window at once. A stream re-uses almost all of those frames from one
hop to the next, so :class:`FrameFeatures` computes single frames from raw samples
with the *same* window, mel filters (and DCT) read from the model, and the engine
rebuilds a window's frame matrix from cached interior frames plus its few
reflect-padded edge frames. The result equals ``frontend.mel(wav)`` (log-compressed,
before utterance normalisation) up to float rounding.

:class:`NumpyFrames` is the same computation with NumPy's FFT and no PyTorch (the fast
path's front-end; this module imports PyTorch only when a PyTorch front-end is used).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import nn

LOG_OFFSET = 1e-6  # the offset both torchaudio paths add before the log


@dataclass(frozen=True)
class FrameSpec:
    n_fft: int
    hop: int
    window: torch.Tensor       # (n_fft,)
    fb: torch.Tensor           # (n_freqs, n_mels)
    dct: torch.Tensor | None   # (n_mels, n_mfcc) for MFCC front-ends
    norm: nn.Module            # applied to the whole window's frames

    @property
    def pad(self) -> int:
        return self.n_fft // 2

    @property
    def n_features(self) -> int:
        return int(self.dct.shape[1] if self.dct is not None else self.fb.shape[1])

    def n_frames(self, num_samples: int) -> int:
        """Frames of a ``center=True`` window of ``num_samples``."""
        return 1 + num_samples // self.hop


def frame_spec(frontend: nn.Module) -> FrameSpec | None:
    """The spectral parameters of a log-mel / MFCC front-end; ``None`` for others (raw)."""
    from kws_okd.audio.features import MFCC, LogMel
    if isinstance(frontend, LogMel):
        mel, dct = frontend.mel, None
    elif isinstance(frontend, MFCC):
        if not frontend.mfcc.log_mels:
            return None
        mel, dct = frontend.mfcc.MelSpectrogram, frontend.mfcc.dct_mat.detach().float()
    else:
        return None
    spec = mel.spectrogram
    if not spec.center or spec.pad_mode != "reflect" or spec.power != 2.0 or spec.normalized \
            or spec.pad or spec.win_length != spec.n_fft:
        return None  # a variant the frame-wise path does not reproduce: use the full model
    return FrameSpec(n_fft=spec.n_fft, hop=spec.hop_length, window=spec.window.detach().float(),
                     fb=mel.mel_scale.fb.detach().float(), dct=dct, norm=frontend.norm)


class FrameFeatures:
    """Raw samples -> feature frames (before normalisation), no padding: ``L`` samples give
    ``1 + (L - n_fft) // hop`` frames, frame ``i`` starting at sample ``i * hop``."""

    def __init__(self, spec: FrameSpec):
        self.spec = spec

    def __call__(self, samples: np.ndarray) -> np.ndarray:  # (B, L) -> (B, F, n)
        import torch
        s = self.spec
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
            frames = x.unfold(-1, s.n_fft, s.hop) * s.window          # (B, n, n_fft)
            power = torch.fft.rfft(frames).abs().pow(2.0)             # (B, n, n_freqs)
            feats = torch.log(power @ s.fb + LOG_OFFSET)              # (B, n, n_mels)
            if s.dct is not None:
                feats = feats @ s.dct
            return feats.transpose(-1, -2).contiguous().numpy()


class NumpyFrames:
    """:class:`FrameFeatures` without PyTorch: the same window, mel filters and DCT as
    arrays (see :func:`frame_arrays`), NumPy's FFT, float64 inside, float32 out."""

    def __init__(self, n_fft: int, hop: int, window, fb, dct=None):
        self.n_fft, self.hop = int(n_fft), int(hop)
        self.window = np.asarray(window, dtype=np.float64)
        self.fb = np.ascontiguousarray(fb, dtype=np.float64)
        self.dct = None if dct is None or np.size(dct) == 0 else np.ascontiguousarray(dct, dtype=np.float64)

    def __call__(self, samples: np.ndarray) -> np.ndarray:   # (B, L) -> (B, F, n)
        x = np.asarray(samples, dtype=np.float64, order="C")
        b, n = x.shape[0], 1 + (x.shape[-1] - self.n_fft) // self.hop
        frames = np.ndarray((b, n, self.n_fft), np.float64, x, 0, (x.strides[0], self.hop * 8, 8))
        spec = np.fft.rfft(frames * self.window)
        power = spec.real ** 2 + spec.imag ** 2
        feats = np.log(power.reshape(b * n, -1) @ self.fb + LOG_OFFSET)
        if self.dct is not None:
            feats = feats @ self.dct
        return feats.reshape(b, n, -1).transpose(0, 2, 1).astype(np.float32)


def frame_arrays(spec: FrameSpec) -> dict:
    """A :class:`FrameSpec`'s front-end as plain arrays (what :class:`NumpyFrames` takes)."""
    return dict(n_fft=spec.n_fft, hop=spec.hop, window=spec.window.numpy().astype(np.float32),
                fb=spec.fb.numpy().astype(np.float32),
                dct=None if spec.dct is None else spec.dct.numpy().astype(np.float32))


def edge_ranges(n_fft: int, hop: int, num_samples: int) -> tuple[int, int]:
    """Window frames ``[lo, hi]`` whose span lies wholly inside the window (no padding)."""
    pad = n_fft // 2
    return -(-pad // hop), (num_samples - pad) // hop
