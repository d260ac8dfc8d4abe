"""Disruptive policies: a composition of augmentations with one ``strength`` knob.

A policy config is

    name: policy
    strength: 1.0          # 0 = clean, 1 = the ranges as written, >1 = harsher
    policy: {name: one_of, transforms: [...]}

``strength`` rescales every severity parameter of the nested transforms *before*
they are built: a parameter moves away from its clean value by ``strength`` times
its written distance, ``v' = clean + strength * (v - clean)``, then is clamped to
what the transform accepts. Parameters with no severity meaning (mixup's alpha, a
codec name, a RIR bank path) are left alone.
"""
from __future__ import annotations

import copy

from torch import nn

from kws_okd.augment.registry import build_augmentation, register_augmentation
from kws_okd.errors import ConfigError

# augmentation name -> {parameter: (clean value, lowest allowed, highest allowed)}
SEVERITY = {
    "span_mask": {"min_frac": (0.0, 0.0, 1.0), "max_frac": (0.0, 0.0, 1.0)},
    "gaussian_noise": {"min_snr": (40.0, -20.0, 60.0), "max_snr": (40.0, -20.0, 60.0)},
    "add_noise": {"min_snr": (40.0, -20.0, 60.0), "max_snr": (40.0, -20.0, 60.0)},
    "room_reverb": {"rt60": (0.1, 0.1, 2.0), "wet": (0.0, 0.0, 1.0)},
    "clipping": {"level": (1.0, 0.01, 1.0)},
    "bit_depth": {"bits": (16.0, 1.0, 16.0)},
    "gain": {"db": (0.0, -60.0, 40.0)},
    "mic_eq": {"gain_db": (0.0, -40.0, 40.0)},
}


def _scale(value, clean, lo, hi, s):
    if isinstance(value, (list, tuple)):
        return [_scale(v, clean, lo, hi, s) for v in value]
    return round(float(min(hi, max(lo, clean + s * (float(value) - clean)))), 6)


def scale_config(cfg, strength: float):
    """A copy of an augmentation config with every severity parameter scaled by ``strength``."""
    if strength < 0:
        raise ConfigError(f"policy.strength must be >= 0, got {strength}")
    if isinstance(cfg, list):
        return [scale_config(c, strength) for c in cfg]
    if not isinstance(cfg, dict):
        return cfg
    out = copy.deepcopy(cfg)
    for key, (clean, lo, hi) in SEVERITY.get(out.get("name"), {}).items():
        if key in out:
            out[key] = _scale(out[key], clean, lo, hi, strength)
    for key in ("transforms", "policy"):
        if key in out:
            out[key] = scale_config(out[key], strength)
    if out.get("name") == "bit_depth" and "bits" in out:
        out["bits"] = [round(b) for b in out["bits"]]
    return out


@register_augmentation("policy")
class Policy(nn.Module):
    """Build ``policy`` (a nested augmentation config) with its severities scaled by ``strength``."""

    def __init__(self, policy=None, strength: float = 1.0):
        super().__init__()
        if not isinstance(policy, dict):
            raise ConfigError("policy: needs a 'policy' key holding an augmentation config "
                              "(a dict with a 'name')")
        self.strength = float(strength)
        self.config = scale_config(policy, self.strength)
        self.inner = build_augmentation(self.config)

    def forward(self, x):
        return self.inner(x)
