"""OKD's speech disruptive augmentations on batches of waveforms (B, N), plus the
combinators that compose them. All batch-wise tensor operations."""
from __future__ import annotations

import torch
from torch import nn

from kws_okd.augment.registry import register_augmentation


@register_augmentation("mixup")
class Mixup(nn.Module):
    """Mix each clip with another clip of the batch, lambda ~ Beta(alpha, alpha)."""

    def __init__(self, alpha: float = 1.0):
        super().__init__()
        self.alpha = alpha

    def forward(self, x):
        lam = torch.distributions.Beta(self.alpha, self.alpha).sample((x.shape[0],)).to(x)
        perm = torch.randperm(x.shape[0], device=x.device)
        lam = lam.view(-1, *([1] * (x.dim() - 1)))
        return lam * x + (1 - lam) * x[perm]


@register_augmentation("span_mask")
class SpanMask(nn.Module):
    """Zero one contiguous span covering ``min_frac``..``max_frac`` of each clip."""

    def __init__(self, min_frac: float = 0.1, max_frac: float = 0.9):
        super().__init__()
        if not 0 <= min_frac <= max_frac <= 1:
            raise ValueError(f"span_mask: need 0 <= min_frac <= max_frac <= 1, got {min_frac}, {max_frac}")
        self.min_frac, self.max_frac = min_frac, max_frac

    def forward(self, x):
        b, n = x.shape[0], x.shape[-1]
        length = (torch.empty(b, device=x.device).uniform_(self.min_frac, self.max_frac) * n).long()
        start = (torch.rand(b, device=x.device) * (n - length + 1)).long()
        pos = torch.arange(n, device=x.device)
        mask = (pos >= start[:, None]) & (pos < (start + length)[:, None])
        return x.masked_fill(mask.view(b, *([1] * (x.dim() - 2)), n), 0.0)


@register_augmentation("gaussian_noise")
class GaussianNoise(nn.Module):
    """Additive white Gaussian noise at an SNR drawn uniformly from [min_snr, max_snr] dB."""

    def __init__(self, min_snr: float = 0.0, max_snr: float = 20.0):
        super().__init__()
        self.min_snr, self.max_snr = min_snr, max_snr

    def forward(self, x):
        b = x.shape[0]
        snr = torch.empty(b, device=x.device).uniform_(self.min_snr, self.max_snr)
        power = x.pow(2).flatten(1).mean(1).clamp_min(1e-8)
        std = (power / 10 ** (snr / 10)).sqrt().view(b, *([1] * (x.dim() - 1)))
        return x + std * torch.randn_like(x)


@register_augmentation("one_of")
class OneOf(nn.Module):
    """Each sample of the batch gets one transform, chosen at random (with ``weights``)."""

    def __init__(self, transforms, weights=None):
        super().__init__()
        self.transforms = nn.ModuleList(transforms)
        w = torch.tensor(weights if weights is not None else [1.0] * len(transforms))
        self.register_buffer("weights", w / w.sum(), persistent=False)

    def forward(self, x):
        choice = torch.multinomial(self.weights, x.shape[0], replacement=True).to(x.device)
        out = x.clone()
        for i, t in enumerate(self.transforms):
            sel = choice == i
            if sel.any():
                out[sel] = t(x)[sel] if isinstance(t, Mixup) else t(x[sel])
        return out


@register_augmentation("compose")
class Compose(nn.Module):
    """Apply transforms in order, each with probability ``p`` per sample."""

    def __init__(self, transforms, p: float = 1.0):
        super().__init__()
        self.transforms = nn.ModuleList(transforms)
        self.p = p

    def forward(self, x):
        for t in self.transforms:
            y = t(x)
            if self.p < 1.0:
                keep = (torch.rand(x.shape[0], device=x.device) < self.p).view(-1, *([1] * (x.dim() - 1)))
                y = torch.where(keep, y, x)
            x = y
        return x
