"""Model registry: one decorated class per architecture."""
from __future__ import annotations

import torch
from torch import nn

from kws_okd.audio.features import build_frontend
from kws_okd.errors import ConfigError
from kws_okd.utils.registry import Registry

MODELS = Registry("model")
register_model = MODELS.register


class KWSNet(nn.Module):
    """Front-end + backbone: maps a batch of waveforms (B, N) to logits (B, C)."""

    def __init__(self, frontend: nn.Module, backbone: nn.Module):
        super().__init__()
        self.frontend = frontend
        self.backbone = backbone

    def forward(self, wav):
        return self.backbone(self.frontend(wav))


def build_model(name: str, num_classes: int, frontend: dict | None = None, **kwargs) -> KWSNet:
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; known models: {sorted(MODELS)}")
    cls = MODELS[name]
    fe_cfg = dict(frontend or {"name": getattr(cls, "default_frontend", "logmel")})
    fe = build_frontend(fe_cfg.pop("name"), **fe_cfg)
    try:
        backbone = cls(num_classes=num_classes, n_features=fe.n_features, **kwargs)
    except TypeError as e:
        raise ConfigError(f"model {name!r}: bad arguments {kwargs} ({e})") from None
    return KWSNet(fe, backbone)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: KWSNet, num_samples: int = 16000, example=None) -> int:
    """Multiply-accumulates of the backbone for one input (convolutions and linear layers;
    the front-end's FFT is not counted). ``example`` is one input batch of size 1; the
    default is one second of 16 kHz audio."""
    macs = 0

    def hook(mod, inp, out):
        nonlocal macs
        if isinstance(mod, (nn.Conv1d, nn.Conv2d)):
            k = 1
            for s in mod.kernel_size:
                k *= s
            macs += out.numel() // out.shape[0] * (mod.in_channels // mod.groups) * k
        elif isinstance(mod, nn.Linear):
            macs += mod.in_features * mod.out_features * (out.numel() // out.shape[0] // mod.out_features)

    handles = [m.register_forward_hook(hook) for m in model.backbone.modules()
               if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    cache = getattr(model.backbone, "cache", None)  # a cached input would skip the layers
    if cache is not None:
        model.backbone.cache = None
    with torch.no_grad():
        model(torch.zeros(1, num_samples) if example is None else example)
    if cache is not None:
        model.backbone.cache = cache
    model.train(was_training)
    for h in handles:
        h.remove()
    return macs
