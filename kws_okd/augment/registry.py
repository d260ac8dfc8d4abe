"""Augmentation registry. A policy is built from a YAML-like dict:

    {name: one_of, transforms: [{name: mixup}, {name: span_mask}, {name: gaussian_noise}]}

Augmentations that need the networks being trained (e.g. an adversarial step on the
teacher) declare it: a class attribute ``needs_networks = True`` and a method
``bind(student=..., teacher=...)``. The trainer calls :func:`bind_networks` on the
whole policy, which walks its modules (nested ``one_of``/``policy`` included); it
needs to know nothing about which modality or transform asked.
"""
from __future__ import annotations

from torch import nn

from kws_okd.errors import ConfigError
from kws_okd.utils.registry import Registry

AUGMENTATIONS = Registry("augmentation")
register_augmentation = AUGMENTATIONS.register


def bind_networks(augment, student=None, teacher=None):
    """Give ``student`` and ``teacher`` to every part of ``augment`` that declares
    ``needs_networks``. Returns ``augment``; a no-op for ``None`` and for policies that
    need no network."""
    if augment is None:
        return None
    parts = augment.modules() if isinstance(augment, nn.Module) else [augment]
    for part in parts:
        if getattr(part, "needs_networks", False):
            if not callable(getattr(part, "bind", None)):
                raise ConfigError(f"augmentation {type(part).__name__} declares needs_networks "
                                  f"but has no bind(student=..., teacher=...) method")
            part.bind(student=student, teacher=teacher)
    return augment


def build_augmentation(cfg):
    if cfg is None:
        return None
    cfg = dict(cfg)
    if "name" not in cfg:
        raise ConfigError(f"augmentation config {cfg} has no 'name'")
    name = cfg.pop("name")
    if name not in AUGMENTATIONS:
        raise ConfigError(f"unknown augmentation {name!r}; known: {sorted(AUGMENTATIONS)}")
    if "transforms" in cfg:
        cfg["transforms"] = [build_augmentation(t) for t in cfg["transforms"]]
    try:
        return AUGMENTATIONS[name](**cfg)
    except TypeError as e:
        raise ConfigError(f"augmentation {name!r}: bad arguments ({e})") from None
