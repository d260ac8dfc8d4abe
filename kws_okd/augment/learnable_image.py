"""Learnable image augmenter for HARD on the image branch: a spatial transformer (a
bounded random affine warp) followed by a colour transform (per-channel gain,
brightness and contrast), on batches (B, 3, H, W). Same reparameterisation as the
speech augmenters (:class:`kws_okd.augment.learnable.BoundedRandom`)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kws_okd.augment.learnable import BoundedRandom
from kws_okd.augment.registry import register_augmentation


@register_augmentation("learnable_stn_color")
class LearnableSTNColor(nn.Module):
    """``max_affine`` bounds each entry of the 2x2 linear part's deviation from the
    identity, ``max_translate`` the shift (in half-widths), ``max_gain_db`` the
    per-channel gain, ``max_brightness`` the added offset and ``max_contrast`` the
    relative change of each image's contrast about its mean."""

    def __init__(self, max_affine: float = 0.2, max_translate: float = 0.2, max_gain_db: float = 3.0,
                 max_brightness: float = 0.2, max_contrast: float = 0.3, init_spread: float = 0.3):
        super().__init__()
        self.linear = BoundedRandom(4, max_affine, init_spread)
        self.shift = BoundedRandom(2, max_translate, init_spread)
        self.gain = BoundedRandom(3, max_gain_db, init_spread)
        self.brightness = BoundedRandom(1, max_brightness, init_spread)
        self.contrast = BoundedRandom(1, max_contrast, init_spread)

    def forward(self, x):
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"learnable_stn_color: expected (B, 3, H, W), got {tuple(x.shape)}")
        b = x.shape[0]
        eye = torch.eye(2, device=x.device).expand(b, 2, 2)
        theta = torch.cat([eye + self.linear.sample(b).view(b, 2, 2), self.shift.sample(b).view(b, 2, 1)], 2)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        y = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        y = y * (10 ** (self.gain.sample(b) / 20)).view(b, 3, 1, 1)
        mean = y.mean(dim=(1, 2, 3), keepdim=True)
        y = (y - mean) * (1 + self.contrast.sample(b)).view(b, 1, 1, 1) + mean
        return y + self.brightness.sample(b).view(b, 1, 1, 1)
