"""Data registries: how a ``data.kind`` is prepared into manifests, and which dataset
class reads the manifests of a modality (``protocol.json``'s ``modality``, default audio).
Adding a data source is one decorated function; adding a modality one decorated class.

The tables themselves live in the leaf module :mod:`kws_okd.data.kinds`, into which
:mod:`kws_okd.data.sources` and :mod:`kws_okd.data.images` register the built-in
entries; this module imports those two the first time it looks something up
(:func:`load_builtins`). No data module imports this one back, so the three import
in any order."""
from __future__ import annotations

import json
from pathlib import Path

from kws_okd.data.kinds import DATA_KINDS, DATASETS, register_data_kind, register_dataset  # noqa: F401
from kws_okd.errors import ConfigError, DataError


def load_builtins() -> None:
    """Register the built-in data kinds and dataset classes (idempotent)."""
    import kws_okd.data.images  # noqa: F401  (image_folder and digits kinds, the image dataset)
    import kws_okd.data.sources  # noqa: F401  (synth and gsc kinds, the audio dataset)


def prepare_data(cfg, progress: bool = True) -> Path:
    """Run the preparation of ``cfg.kind``; return the folder of manifests it wrote."""
    load_builtins()
    kind = cfg.get("kind")
    if kind not in DATA_KINDS:
        raise ConfigError(f"data.kind: unknown data kind {kind!r}; known: {sorted(DATA_KINDS)}")
    return Path(DATA_KINDS[kind](cfg, progress))


def corpus_noise_dir(data_cfg) -> Path:
    """The corpus's background-noise folder (music, noise and near silence)."""
    return Path(data_cfg.get("corpus_dir") or data_cfg.get("root") or ".") / "_background_noise_"


def modality_of(manifest) -> str:
    proto = Path(manifest).parent / "protocol.json"
    if proto.exists():
        return json.loads(proto.read_text()).get("modality", "audio")
    return "audio"


def load_dataset(manifest, progress: bool = False):
    load_builtins()
    modality = modality_of(manifest)
    if modality not in DATASETS:
        raise DataError(f"{manifest}: no dataset class for modality {modality!r}")
    extra = {}
    if modality == "audio" and (seconds := clip_seconds_of(manifest)) != 1.0:
        extra["clip_seconds"] = seconds
    return DATASETS[modality](manifest, progress=progress, **extra)


def clip_seconds_of(manifest) -> float:
    """The clip length of a manifest folder's corpus (``protocol.json``; 1 s unless a
    keyword phrase needed longer)."""
    for folder in (Path(manifest).parent, Path(manifest).parent.parent):
        proto = folder / "protocol.json"
        if proto.exists():
            return float(json.loads(proto.read_text()).get("clip_seconds", 1.0))
    return 1.0
