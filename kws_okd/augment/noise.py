"""Additive noise at a target signal-to-noise ratio, batch-wise.

Sources: noise generated in torch (white/pink/brown, mains hum, machinery), babble
(several speech clips summed), and noise read from folders (a corpus's
``_background_noise_`` or any MUSAN-style tree, searched recursively for WAVs).
File-based noise is held as one long tensor so random crops for a whole batch
are a single gather, not a Python loop over clips.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from kws_okd.audio.io import read_audio
from kws_okd.augment.registry import register_augmentation
from kws_okd.errors import AudioError, DataError

SNR_LIMITS = (-20.0, 60.0)
GENERATED = ("white", "pink", "brown", "hum", "machine")
COLOUR_EXPONENT = {"white": 0.0, "pink": 1.0, "brown": 2.0}


def check_snr(name: str, lo: float, hi: float) -> tuple[float, float]:
    lo, hi = float(lo), float(hi)
    if not (SNR_LIMITS[0] <= lo <= hi <= SNR_LIMITS[1]):
        raise ValueError(f"{name}: SNR range [{lo}, {hi}] dB is invalid; need "
                         f"{SNR_LIMITS[0]} <= min <= max <= {SNR_LIMITS[1]}")
    return lo, hi


def mix_at_snr(x: torch.Tensor, noise: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
    """``x + g*noise`` with ``g`` set per clip so that 10*log10(P_x / P_{g*noise}) = snr_db."""
    px = x.pow(2).mean(-1, keepdim=True).clamp_min(1e-10)
    pn = noise.pow(2).mean(-1, keepdim=True).clamp_min(1e-20)
    g = (px / (pn * 10 ** (snr_db.view(-1, 1).to(x) / 10))).sqrt()
    return x + g * noise


def measured_snr(clean: torch.Tensor, mixed: torch.Tensor) -> torch.Tensor:
    n = mixed - clean
    return 10 * torch.log10(clean.pow(2).mean(-1) / n.pow(2).mean(-1))


# ---------------------------------------------------------------- generated noise

def coloured_noise(b: int, n: int, exponent: float, device=None) -> torch.Tensor:
    """Gaussian noise with power spectrum ~ 1/f^exponent (0 white, 1 pink, 2 brown)."""
    spec = torch.fft.rfft(torch.randn(b, n, device=device))
    f = torch.arange(spec.shape[-1], device=device, dtype=torch.float32)
    f[0] = 1.0  # keep DC finite; it is removed below
    spec = spec / f.pow(exponent / 2)
    spec[:, 0] = 0
    return torch.fft.irfft(spec, n)


def _tones(freqs: torch.Tensor, amps: torch.Tensor, n: int, sr: int) -> torch.Tensor:
    """Sum of sinusoids with random phases, built in the spectrum: ``freqs``/``amps`` (B, K).

    Each tone lands on its nearest FFT bin (sr/n Hz apart, 1 Hz for one-second clips),
    which costs one inverse FFT instead of B*K*N sine evaluations.
    """
    b = freqs.shape[0]
    nbin = n // 2 + 1
    bins = (freqs * n / sr).round().long().clamp(1, nbin - 1)
    phase = torch.rand(freqs.shape, device=freqs.device) * 2 * math.pi
    spec = torch.zeros(b, nbin, dtype=torch.complex64, device=freqs.device)
    spec.scatter_add_(1, bins, torch.polar(amps * n / 2, phase))
    return torch.fft.irfft(spec, n)


def hum(b: int, n: int, sr: int = 16000, device=None) -> torch.Tensor:
    """Mains hum: 50 or 60 Hz with 8 harmonics of random level, plus a little hiss."""
    base = torch.where(torch.rand(b, 1, device=device) < 0.5, 50.0, 60.0)
    k = torch.arange(1, 9, device=device).float()
    x = _tones(base * k, torch.rand(b, 8, device=device) / k, n, sr)
    return x + 0.02 * x.std(-1, keepdim=True) * torch.randn(b, n, device=device)


def machine(b: int, n: int, sr: int = 16000, device=None) -> torch.Tensor:
    """Machinery: brownish rumble amplitude-modulated at a rotation rate, plus tonal
    harmonics of the blade-pass frequency (4 blades)."""
    t = torch.arange(n, device=device) / sr
    rot = torch.empty(b, 1, device=device).uniform_(8.0, 40.0)  # rotations per second
    rumble = coloured_noise(b, n, 1.5, device)
    rumble = rumble / rumble.std(-1, keepdim=True).clamp_min(1e-8)
    am = 1 + 0.6 * torch.sin(2 * math.pi * rot * t)
    k = torch.arange(1, 6, device=device).float()
    tones = _tones(4 * rot * k, 0.7 / k.expand(b, 5), n, sr)
    return rumble * am + tones


def generate(kind: str, b: int, n: int, sr: int = 16000, device=None) -> torch.Tensor:
    if kind in COLOUR_EXPONENT:
        return coloured_noise(b, n, COLOUR_EXPONENT[kind], device)
    if kind == "hum":
        return hum(b, n, sr, device)
    if kind == "machine":
        return machine(b, n, sr, device)
    raise ValueError(f"unknown generated noise {kind!r}; known: {list(GENERATED)}")


# ---------------------------------------------------------------- file-based noise

def list_wavs(source) -> list[Path]:
    """WAVs of a folder (recursive, MUSAN-style) or the single WAV given."""
    source = Path(source)
    if not source.exists():
        raise DataError(f"{source}: noise folder does not exist")
    files = [source] if source.is_file() else sorted(source.rglob("*.wav"))
    if not files:
        raise DataError(f"{source}: no .wav files under this noise folder")
    return files


class NoiseBank:
    """Noise clips concatenated into one tensor; ``crop`` draws B random N-sample windows.

    Clips shorter than N are tiled so every window lies inside one clip.
    """

    def __init__(self, files, sample_rate: int = 16000, min_samples: int = 16000):
        files = [Path(f) for f in files]
        if not files:
            raise DataError("noise bank: no noise files given")
        parts, starts, lengths = [], [], []
        pos = 0
        for f in files:
            x = torch.from_numpy(read_audio(f, sample_rate))
            if x.pow(2).sum() <= 1e-12:
                raise AudioError(f, "noise clip has zero energy (silent); remove it from the noise folder")
            if len(x) < min_samples:
                x = x.repeat(math.ceil(min_samples / len(x)))
            parts.append(x)
            starts.append(pos)
            lengths.append(len(x))
            pos += len(x)
        self.files = files
        self.data = torch.cat(parts)
        self.starts = torch.tensor(starts)
        self.lengths = torch.tensor(lengths)

    @classmethod
    def from_folders(cls, folders, sample_rate: int = 16000, min_samples: int = 16000):
        files = [f for d in folders for f in list_wavs(d)]
        return cls(files, sample_rate, min_samples)

    def __len__(self):
        return len(self.files)

    def crop(self, b: int, n: int, k: int = 1, device=None) -> torch.Tensor:
        """(b, k, n) random windows (k independent windows per row), or (b, n) for k=1."""
        which = torch.randint(0, len(self.files), (b, k))
        room = (self.lengths[which] - n).clamp_min(0)
        off = self.starts[which] + (torch.rand(b, k) * (room + 1)).long().clamp_max(room)
        idx = off[..., None] + torch.arange(n)
        out = self.data[idx].to(device)
        return out[:, 0] if k == 1 else out


def babble(bank: NoiseBank, b: int, n: int, talkers=(3, 7), device=None) -> torch.Tensor:
    """Sum of ``talkers`` speech windows per clip, each at unit RMS (a crowd of equal voices)."""
    kmax = int(talkers[1])
    x = bank.crop(b, n, kmax, device)
    x = x / x.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-6)
    k = torch.randint(int(talkers[0]), kmax + 1, (b, 1, 1), device=device)
    on = torch.arange(kmax, device=device)[None, :, None] < k
    return (x * on).sum(1)


# ---------------------------------------------------------------- the augmentation

@register_augmentation("add_noise")
class AddNoise(nn.Module):
    """Add noise at an SNR drawn per clip from [min_snr, max_snr] dB.

    ``types`` lists the generated sources (white, pink, brown, hum, machine) and/or
    ``files`` (the WAVs under ``noise_dirs``) and/or ``babble`` (summed speech clips
    from ``babble_dirs``). Each clip draws one source uniformly; only a handful of
    groups, so a loop over them stays cheap.
    """

    def __init__(self, min_snr: float = 0.0, max_snr: float = 20.0, types=("white", "pink", "hum", "machine"),
                 noise_dirs=(), babble_dirs=(), talkers=(3, 7), sample_rate: int = 16000):
        super().__init__()
        self.min_snr, self.max_snr = check_snr("add_noise.min_snr/max_snr", min_snr, max_snr)
        noise_dirs = [d for d in ([noise_dirs] if isinstance(noise_dirs, str) else noise_dirs or []) if d]
        babble_dirs = [d for d in ([babble_dirs] if isinstance(babble_dirs, str) else babble_dirs or []) if d]
        types = list(types or [])
        if noise_dirs and "files" not in types:
            types.append("files")
        for t in types:
            if t not in (*GENERATED, "files", "babble"):
                raise ValueError(f"add_noise.types: unknown noise type {t!r}; known: "
                                 f"{[*GENERATED, 'files', 'babble']}")
        if not types:
            raise ValueError("add_noise.types: empty (give generated types and/or noise_dirs)")
        if "files" in types and not noise_dirs:
            raise ValueError("add_noise: type 'files' needs noise_dirs")
        if "babble" in types and not babble_dirs:
            raise ValueError("add_noise: type 'babble' needs babble_dirs (folders of speech WAVs)")
        self.types, self.sample_rate, self.talkers = types, sample_rate, tuple(talkers)
        self.files = NoiseBank.from_folders(noise_dirs, sample_rate) if noise_dirs else None
        self.speech = NoiseBank.from_folders(babble_dirs, sample_rate) if babble_dirs else None

    def make_noise(self, kind: str, b: int, n: int, device=None) -> torch.Tensor:
        if kind == "files":
            return self.files.crop(b, n, device=device)
        if kind == "babble":
            return babble(self.speech, b, n, self.talkers, device)
        return generate(kind, b, n, self.sample_rate, device)

    def draw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One noise source per row of ``x`` (noise shaped like ``x``) and its SNR in dB."""
        b, n = x.shape[0], x.shape[-1]
        choice = torch.randint(0, len(self.types), (b,), device=x.device)
        noise = torch.empty_like(x)
        for i, kind in enumerate(self.types):
            sel = choice == i
            m = int(sel.sum())
            if m:
                noise[sel] = self.make_noise(kind, m, n, x.device).to(x)
        snr = torch.empty(b, device=x.device).uniform_(self.min_snr, self.max_snr)
        return noise, snr

    def forward(self, x):
        return mix_at_snr(x, *self.draw(x))
