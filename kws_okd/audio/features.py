"""Front-ends: waveform -> features, computed on the fly inside the model.

Keeping the front-end inside the network means augmentation happens on the
waveform, checkpoints and exports carry their features, and teacher and
student may use different front-ends.
"""
from __future__ import annotations

import torch
import torchaudio
from torch import nn


class UtteranceNorm(nn.Module):
    """Per-utterance mean/variance normalisation of each feature bin (cepstral mean
    normalisation): removes a fixed channel gain/EQ, a cheap robustness win."""

    def forward(self, x):  # (B, F, T)
        mu = x.mean(dim=-1, keepdim=True)
        sd = x.std(dim=-1, keepdim=True)
        return (x - mu) / (sd + 1e-5)


class LogMel(nn.Module):
    def __init__(self, sample_rate=16000, n_mels=40, win_ms=30, hop_ms=10, normalize="utterance"):
        super().__init__()
        n_fft = int(sample_rate * win_ms / 1000)
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=n_fft, win_length=n_fft,
            hop_length=int(sample_rate * hop_ms / 1000), n_mels=n_mels, f_min=20.0,
            f_max=sample_rate / 2, power=2.0, center=True)
        self.norm = UtteranceNorm() if normalize == "utterance" else nn.Identity()
        self.n_features = n_mels

    def forward(self, wav):  # (B, N) -> (B, n_mels, T)
        return self.norm(torch.log(self.mel(wav) + 1e-6))


class MFCC(nn.Module):
    def __init__(self, sample_rate=16000, n_mfcc=40, n_mels=40, win_ms=30, hop_ms=10,
                 normalize="utterance"):
        super().__init__()
        n_fft = int(sample_rate * win_ms / 1000)
        self.mfcc = torchaudio.transforms.MFCC(
            sample_rate=sample_rate, n_mfcc=n_mfcc, log_mels=True,
            melkwargs=dict(n_fft=n_fft, win_length=n_fft, n_mels=n_mels, f_min=20.0,
                           hop_length=int(sample_rate * hop_ms / 1000)))
        self.norm = UtteranceNorm() if normalize == "utterance" else nn.Identity()
        self.n_features = n_mfcc

    def forward(self, wav):
        return self.norm(self.mfcc(wav))


class RawWaveform(nn.Module):
    """For raw-waveform models (M11/M3): (B, N) -> (B, 1, N), peak-normalised."""
    n_features = 1

    def forward(self, wav):
        peak = wav.abs().amax(dim=-1, keepdim=True).clamp_min(1e-4)
        return (wav / peak).unsqueeze(1)


class NoFrontend(nn.Identity):
    """For inputs that are already features (e.g. images)."""
    n_features = 0


FRONTENDS = {"logmel": LogMel, "mfcc": MFCC, "raw": RawWaveform, "none": NoFrontend}


def build_frontend(name: str, **kwargs) -> nn.Module:
    if name not in FRONTENDS:
        raise KeyError(f"unknown front-end {name!r}; known: {sorted(FRONTENDS)}")
    return FRONTENDS[name](**kwargs)
