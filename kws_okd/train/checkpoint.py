"""Self-describing model files: architecture config, class list and weights.

``model.pt`` is what evaluation, distillation (as the teacher), streaming and
export read. Loaded with ``weights_only=True``: no pickled code runs.
"""
from __future__ import annotations

from pathlib import Path

import torch

from kws_okd.errors import ConfigError
from kws_okd.models import build_model
from kws_okd.utils.atomic import atomic_path


def save_model(path, model, model_cfg: dict, classes: list[str], extra: dict | None = None):
    blob = {"format": "kws-okd/1", "model": dict(model_cfg), "classes": list(classes),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "info": dict(extra or {})}
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)


def model_window_s(blob) -> float:
    """The window a model was trained on, in seconds (1 s unless a keyword phrase needed
    longer: kws_okd/keywords)."""
    return float((blob.get("info") or {}).get("window_s", 1.0))


def load_model(path, map_location="cpu"):
    """Return ``(model, blob)``; the model is in eval mode."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: model file does not exist (train it first)")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise ConfigError(f"{path}: not a readable kws-okd model file ({e})") from None
    if not isinstance(blob, dict) or blob.get("format") != "kws-okd/1":
        raise ConfigError(f"{path}: not a kws-okd model file (missing format tag)")
    cfg = dict(blob["model"])
    if "pretrained" in cfg:  # the file holds every weight; nothing to fetch or convert
        cfg["pretrained"] = False
    model = build_model(cfg.pop("name"), num_classes=len(blob["classes"]), **cfg)
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as e:
        first = str(e).split("\n")[0]
        raise ConfigError(f"{path}: weights do not fit the {blob['model'].get('name')!r} architecture "
                          f"of this kws-okd version ({first}); retrain or use the version that wrote it") from None
    model.eval()
    model.window_s = model_window_s(blob)   # what streaming and export windows must be
    return model, blob


def named_model_paths(specs) -> dict[str, str]:
    """``["name=path/model.pt", "other.pt"]`` -> ``{"name": "path/model.pt", "other.pt": "other.pt"}``
    (the form ``--model`` takes on the command line)."""
    models = {}
    for spec in specs:
        name, _, path = spec.rpartition("=")
        models[name or path] = path
    return models


def set_stream_thresholds(path, thresholds: dict, **info) -> None:
    """Store per-keyword detection thresholds (and how they were chosen) in a model file;
    ``kws-okd stream`` uses them unless thresholds are given on the command line."""
    path = Path(path)
    blob = torch.load(path, map_location="cpu", weights_only=True)
    blob["stream"] = dict(thresholds={k: float(v) for k, v in thresholds.items()}, **info)
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
