"""Data registries: how a ``data.kind`` is prepared into manifests, and which dataset
class reads the manifests of a modality (``protocol.json``'s ``modality``, default audio).
Adding a data source is one decorated function; adding a modality one decorated class."""
from __future__ import annotations

import json
from pathlib import Path

from kws_okd.errors import ConfigError, DataError
from kws_okd.utils.registry import Registry

DATA_KINDS = Registry("data kind")
DATASETS = Registry("dataset")
register_data_kind = DATA_KINDS.register
register_dataset = DATASETS.register


def prepare_data(cfg, progress: bool = True) -> Path:
    """Run the preparation of ``cfg.kind``; return the folder of manifests it wrote."""
    import kws_okd.data.sources  # noqa: F401  (registers the built-in kinds)
    kind = cfg.get("kind")
    if kind not in DATA_KINDS:
        raise ConfigError(f"data.kind: unknown data kind {kind!r}; known: {sorted(DATA_KINDS)}")
    return Path(DATA_KINDS[kind](cfg, progress))


def modality_of(manifest) -> str:
    proto = Path(manifest).parent / "protocol.json"
    if proto.exists():
        return json.loads(proto.read_text()).get("modality", "audio")
    return "audio"


def load_dataset(manifest, progress: bool = False):
    import kws_okd.data.sources  # noqa: F401
    modality = modality_of(manifest)
    if modality not in DATASETS:
        raise DataError(f"{manifest}: no dataset class for modality {modality!r}")
    return DATASETS[modality](manifest, progress=progress)
