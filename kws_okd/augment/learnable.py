"""Speech augmenters with learnable parameters, for HARD (kws_okd/distill/hard.py).

Each operates on a batch of waveforms (B, N), is differentiable in its parameters and
draws a fresh random strength per clip by reparameterisation::

    value = bound * tanh(mu + softplus(rho) * eps),   eps ~ N(0, 1)

so the augmenter learns *where* (``mu``) and *how widely* (``rho``) to push, and the
``bound`` keeps every transform in a physically sensible range however hard the
adversarial update pushes. At initialisation ``mu = 0``: for gain, time warp and EQ
the centre of the distribution is the clean clip, for reverb and noise the middle of
their range. Importing this module also tells HARD to build its augmenter
from config dicts through :func:`build_augmentation`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kws_okd.augment.registry import build_augmentation, register_augmentation
from kws_okd.distill.hard import register_augmenter_factory


class BoundedRandom(nn.Module):
    """``size`` learnable random amounts in ``(-bound, bound)``, sampled per clip."""

    def __init__(self, size: int, bound: float, init_spread: float = 0.3):
        super().__init__()
        self.bound = float(bound)
        self.mu = nn.Parameter(torch.zeros(size))
        # softplus(rho) = init_spread at start
        self.rho = nn.Parameter(torch.full((size,), math.log(math.expm1(init_spread))))

    def sample(self, batch: int) -> torch.Tensor:
        eps = torch.randn(batch, self.mu.numel(), device=self.mu.device) if self.training \
            else torch.zeros(batch, self.mu.numel(), device=self.mu.device)
        return self.bound * torch.tanh(self.mu + F.softplus(self.rho) * eps)


@register_augmentation("learnable_gain")
class LearnableGain(nn.Module):
    """Per-clip gain in (-max_db, max_db) dB."""

    def __init__(self, max_db: float = 12.0, init_spread: float = 0.3):
        super().__init__()
        self.db = BoundedRandom(1, max_db, init_spread)

    def forward(self, x):
        g = 10 ** (self.db.sample(x.shape[0]) / 20)
        return x * g.view(-1, *([1] * (x.dim() - 1)))


@register_augmentation("learnable_time")
class LearnableTimeWarp(nn.Module):
    """Time shift (up to ``max_shift`` of the clip) and a smooth warp of the time axis
    (``u -> u + shift + warp * sin(pi u)`` on u in [-1, 1]), read by linear
    interpolation so the output is differentiable in both amounts. Samples moved in
    from outside the clip are zero (silence)."""

    def __init__(self, max_shift: float = 0.1, max_warp: float = 0.1, init_spread: float = 0.3):
        super().__init__()
        self.amount = BoundedRandom(2, 1.0, init_spread)
        self.max_shift, self.max_warp = float(max_shift), float(max_warp)

    def forward(self, x):
        b, n = x.shape[0], x.shape[-1]
        a = self.amount.sample(b)
        shift, warp = 2 * self.max_shift * a[:, :1], self.max_warp * a[:, 1:]  # grid spans 2 units
        u = torch.linspace(-1, 1, n, device=x.device).unsqueeze(0)
        # sin(pi u) vanishes at both ends: the warp stretches one half and squeezes the other
        src = u + shift + warp * torch.sin(math.pi * u)
        grid = torch.stack([src, torch.zeros_like(src)], dim=-1).unsqueeze(1)  # (B, 1, N, 2)
        out = F.grid_sample(x.reshape(b, 1, 1, n), grid, mode="bilinear", padding_mode="zeros",
                            align_corners=True)
        return out.reshape(x.shape)


@register_augmentation("learnable_eq")
class LearnableEQ(nn.Module):
    """Equaliser: ``bands`` overlapping triangular bands on a log-frequency axis between
    ``f_min`` and the Nyquist frequency, each with a gain in (-max_db, max_db) dB, applied
    as a zero-phase filter in the frequency domain."""

    def __init__(self, bands: int = 8, max_db: float = 12.0, f_min: float = 60.0,
                 sample_rate: int = 16000, init_spread: float = 0.3):
        super().__init__()
        if bands < 2:
            raise ValueError("learnable_eq: need at least 2 bands")
        self.db = BoundedRandom(bands, max_db, init_spread)
        self.bands, self.f_min, self.sample_rate = bands, float(f_min), int(sample_rate)
        self._cache: dict[int, torch.Tensor] = {}

    def band_weights(self, n: int, device) -> torch.Tensor:
        """(bins, bands) interpolation weights; rows sum to 1, so 0 dB everywhere is identity."""
        key = n
        if key not in self._cache:
            f = torch.fft.rfftfreq(n, d=1 / self.sample_rate)
            lf = torch.log(f.clamp_min(self.f_min))
            centres = torch.linspace(math.log(self.f_min), math.log(self.sample_rate / 2), self.bands)
            width = centres[1] - centres[0]
            w = (1 - (lf[:, None] - centres[None]).abs() / width).clamp_min(0)
            self._cache[key] = w / w.sum(1, keepdim=True).clamp_min(1e-8)
        return self._cache[key].to(device)

    def forward(self, x):
        b, n = x.shape[0], x.shape[-1]
        db = self.db.sample(b)  # (B, bands)
        response = 10 ** ((db @ self.band_weights(n, x.device).T) / 20)  # (B, bins)
        spec = torch.fft.rfft(x.reshape(b, n), n=n)
        return torch.fft.irfft(spec * response, n=n).reshape(x.shape)


@register_augmentation("learnable_reverb")
class LearnableReverb(nn.Module):
    """Mix with a synthetic room tail: exponentially decaying noise with a learnable
    RT60 in [rt60_min, rt60_max] s and wet share in [0, max_mix]; the wet signal is
    scaled to the dry clip's energy so loudness does not change."""

    def __init__(self, rt60_min: float = 0.1, rt60_max: float = 0.8, max_mix: float = 0.8,
                 sample_rate: int = 16000, init_spread: float = 0.3):
        super().__init__()
        if not 0 < rt60_min < rt60_max:
            raise ValueError("learnable_reverb: need 0 < rt60_min < rt60_max")
        self.amount = BoundedRandom(2, 1.0, init_spread)
        self.rt60_min, self.rt60_max, self.max_mix = float(rt60_min), float(rt60_max), float(max_mix)
        self.sample_rate = int(sample_rate)

    def forward(self, x):
        b, n = x.shape[0], x.shape[-1]
        a = (self.amount.sample(b) + 1) / 2  # (0, 1)
        rt60 = self.rt60_min + (self.rt60_max - self.rt60_min) * a[:, :1]
        mix = self.max_mix * a[:, 1:]
        length = min(n, int(self.rt60_max * self.sample_rate))
        t = torch.arange(length, device=x.device) / self.sample_rate
        ir = torch.randn(b, length, device=x.device) * torch.exp(-6.908 * t / rt60)  # -60 dB at rt60
        ir = ir / ir.norm(dim=1, keepdim=True).clamp_min(1e-8)
        flat = x.reshape(b, n)
        m = n + length
        wet = torch.fft.irfft(torch.fft.rfft(flat, n=m) * torch.fft.rfft(ir, n=m), n=m)[:, :n]
        wet = wet * (flat.norm(dim=1, keepdim=True) / wet.norm(dim=1, keepdim=True).clamp_min(1e-8))
        return ((1 - mix) * flat + mix * wet).reshape(x.shape)


@register_augmentation("learnable_noise")
class LearnableNoise(nn.Module):
    """Additive white noise at a learnable SNR in [min_snr, max_snr] dB."""

    def __init__(self, min_snr: float = 0.0, max_snr: float = 30.0, init_spread: float = 0.3):
        super().__init__()
        if not min_snr < max_snr:
            raise ValueError("learnable_noise: need min_snr < max_snr")
        self.amount = BoundedRandom(1, 1.0, init_spread)
        self.min_snr, self.max_snr = float(min_snr), float(max_snr)

    def forward(self, x):
        b = x.shape[0]
        snr = self.min_snr + (self.max_snr - self.min_snr) * (self.amount.sample(b) + 1) / 2
        power = x.pow(2).flatten(1).mean(1, keepdim=True).clamp_min(1e-8)
        std = (power / 10 ** (snr / 10)).sqrt().view(b, *([1] * (x.dim() - 1)))
        return x + std * torch.randn_like(x)


register_augmenter_factory(build_augmentation)
