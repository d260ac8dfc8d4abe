"""The two data tables, on their own so every data module can register into them
without importing another (a leaf: nothing of ``kws_okd.data`` is imported here).

- ``DATA_KINDS``: ``data.kind`` -> ``prepare(cfg, progress) -> manifest folder``;
- ``DATASETS``: a manifest folder's modality (``protocol.json``) -> dataset class.

The built-in entries live in :mod:`kws_okd.data.sources` (audio: ``synth``, ``gsc``)
and :mod:`kws_okd.data.images` (``image_folder``, ``digits``); :mod:`kws_okd.data.registry`
imports them the first time it looks something up.
"""
from __future__ import annotations

from kws_okd.utils.registry import Registry

DATA_KINDS = Registry("data kind")
DATASETS = Registry("dataset")
register_data_kind = DATA_KINDS.register
register_dataset = DATASETS.register
