"""Front-ends: waveform -> features, computed on the fly inside the model.

Keeping the front-end inside the network means augmentation happens on the
waveform, checkpoints and exports carry their features, and teacher and
student may use different front-ends.
"""
from __future__ import annotations

import torch
import torchaudio
from torch import nn

from kws_okd.errors import ConfigError


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


class EmbeddingMel(nn.Module):
    """The log-mel front-end of Google's speech embedding (as shipped in openWakeWord's
    ``melspectrogram.tflite``): 512-point FFT of 25 ms periodic-Hann frames every 10 ms,
    no centring, power, 32 Slaney mel bands from 60 to 3800 Hz, 10*log10 with a floor
    of 1e-10 and an 80 dB range below the loudest value, then openWakeWord's
    ``x / 10 + 2``. Input is in [-1, 1]; the graph was built for int16-scaled samples.

    The range clamp is taken per utterance (the TFLite graph, built for batch 1, takes
    it over its whole input). ``normalize="utterance"`` adds per-bin normalisation for
    students that want this band without the embedding's absolute scale."""

    def __init__(self, sample_rate=16000, n_mels=32, f_min=60.0, f_max=3800.0, top_db=80.0,
                 normalize="none"):
        super().__init__()
        if sample_rate != 16000:
            raise ConfigError(f"oww_mel: the speech embedding was trained on 16 kHz audio, got "
                             f"sample_rate={sample_rate}")
        self.n_fft, self.win, self.hop, self.top_db = 512, 400, 160, top_db
        self.register_buffer("window", torch.hann_window(self.win, periodic=True), persistent=False)
        fb = torchaudio.functional.melscale_fbanks(self.n_fft // 2 + 1, f_min, f_max, n_mels,
                                                   sample_rate, norm="slaney", mel_scale="slaney")
        self.register_buffer("fbank", fb, persistent=False)
        self.norm = UtteranceNorm() if normalize == "utterance" else nn.Identity()
        self.n_features = n_mels

    def forward(self, wav):  # (B, N) -> (B, n_mels, T), T = 1 + (N - 512) // 160
        power = self.power(wav * 32768.0)                          # (B, 257, T)
        mel = torch.matmul(power.transpose(1, 2), self.fbank)    # (B, T, n_mels)
        db = 10.0 * torch.log10(mel.clamp_min(1e-10))
        floor = db.amax(dim=(1, 2), keepdim=True) - self.top_db
        db = torch.maximum(db, floor)
        return self.norm((db / 10.0 + 2.0).transpose(1, 2))

    def power(self, x):
        if not (torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()):
            spec = torch.stft(x, self.n_fft, self.hop, self.win, self.window, center=False,
                              return_complex=True)
            return spec.real.square() + spec.imag.square()
        # Exporters cannot take complex tensors: the same windowed DFT as one strided
        # convolution with cosine and sine kernels (as the TFLite graph computes it).
        n = torch.arange(self.n_fft, dtype=torch.float64)
        k = torch.arange(self.n_fft // 2 + 1, dtype=torch.float64)[:, None]
        win = torch.zeros(self.n_fft, dtype=torch.float64)
        start = (self.n_fft - self.win) // 2
        win[start:start + self.win] = self.window.double()
        angle = 2 * torch.pi * k * n / self.n_fft
        basis = torch.cat([win * torch.cos(angle), -win * torch.sin(angle)]).float().unsqueeze(1)
        re, im = torch.nn.functional.conv1d(x.unsqueeze(1), basis, stride=self.hop).chunk(2, dim=1)
        return re.square() + im.square()


class NoFrontend(nn.Identity):
    """For inputs that are already features (e.g. images)."""
    n_features = 0


FRONTENDS = {"logmel": LogMel, "mfcc": MFCC, "raw": RawWaveform, "oww_mel": EmbeddingMel,
             "none": NoFrontend}


def build_frontend(name: str, **kwargs) -> nn.Module:
    if name not in FRONTENDS:
        raise KeyError(f"unknown front-end {name!r}; known: {sorted(FRONTENDS)}")
    return FRONTENDS[name](**kwargs)
