"""Frame-level view of a model's spectral front-end, for incremental streaming.

The training front-ends (torchaudio ``MelSpectrogram``/``MFCC`` with ``center=True``)
compute each 1 s window at once. A stream re-uses almost all of those frames from one
hop to the next, so :class:`FrameFeatures` computes single frames from raw samples
with the *same* window, mel filters (and DCT) read from the model, and
:func:`window_features` rebuilds a window's frame matrix from cached interior frames
plus its few reflect-padded edge frames. The result equals ``frontend.mel(wav)``
(log-compressed, before utterance normalisation) up to float rounding.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from kws_okd.audio.features import LogMel, MFCC

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

    @torch.no_grad()
    def __call__(self, samples: np.ndarray) -> np.ndarray:  # (B, L) -> (B, F, n)
        s = self.spec
        x = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
        frames = x.unfold(-1, s.n_fft, s.hop) * s.window          # (B, n, n_fft)
        power = torch.fft.rfft(frames).abs().pow(2.0)             # (B, n, n_freqs)
        feats = torch.log(power @ s.fb + LOG_OFFSET)              # (B, n, n_mels)
        if s.dct is not None:
            feats = feats @ s.dct
        return feats.transpose(-1, -2).contiguous().numpy()


def edge_ranges(n_fft: int, hop: int, num_samples: int) -> tuple[int, int]:
    """Window frames ``[lo, hi]`` whose span lies wholly inside the window (no padding)."""
    pad = n_fft // 2
    return -(-pad // hop), (num_samples - pad) // hop


def edge_pieces(n_fft: int, hop: int, window: np.ndarray):
    """Reflect-padded samples for the frames at both ends of a ``center=True`` window
    (the frames that see its padding): ``(left, n_left, right, n_right)``."""
    n, pad = len(window), n_fft // 2
    lo, hi = edge_ranges(n_fft, hop, n)
    left = np.pad(window[:(lo - 1) * hop + n_fft - pad], (pad, 0), mode="reflect")
    right = np.pad(window[(hi + 1) * hop - pad:], (0, pad), mode="reflect")
    return left, lo, right, n // hop - hi
