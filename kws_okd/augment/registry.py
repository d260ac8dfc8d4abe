"""Augmentation registry. A policy is built from a YAML-like dict:

    {name: one_of, transforms: [{name: mixup}, {name: span_mask}, {name: gaussian_noise}]}
"""
from __future__ import annotations

from kws_okd.errors import ConfigError
from kws_okd.utils.registry import Registry

AUGMENTATIONS = Registry("augmentation")
register_augmentation = AUGMENTATIONS.register


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
