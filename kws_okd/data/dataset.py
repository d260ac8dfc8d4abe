"""Torch dataset over a manifest: fixed-length waveforms and integer labels."""
from __future__ import annotations

import warnings

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from kws_okd.audio.io import fix_length, read_audio
from kws_okd.data.manifest import read_manifest


class ManifestDataset(Dataset):
    """Loads every clip once into memory (the default corpus is a few hundred MB at most).

    Items are ``(waveform[num_samples], label, index)`` (every modality's dataset
    exposes ``inputs``, ``labels``, ``domains`` and ``rows``); ``rows[index]`` carries
    the clip's domain, speaker and ID for per-domain evaluation.
    """

    def __init__(self, manifest, sample_rate: int = 16000, clip_seconds: float = 1.0,
                 progress: bool = False):
        self.path = str(manifest)
        self.rows = read_manifest(manifest)
        self.num_samples = int(sample_rate * clip_seconds)
        cache: dict[str, np.ndarray] = {}
        data = np.zeros((len(self.rows), self.num_samples), dtype=np.float32)
        for i, r in enumerate(tqdm(self.rows, desc=f"loading {manifest}", disable=not progress,
                                   unit="clip", leave=False)):
            if r["offset"]:  # a one-second cut of a long file (12-class _silence_)
                if r["wav"] not in cache:
                    cache[r["wav"]] = read_audio(r["wav"], sample_rate)
                x = cache[r["wav"]][r["offset"]:r["offset"] + self.num_samples]
            else:
                x = read_audio(r["wav"], sample_rate)
                if len(x) > 2 * self.num_samples:
                    warnings.warn(f"{r['wav']}: {len(x) / sample_rate:.1f} s long, cropped to its "
                                  f"centre {clip_seconds:g} s", stacklevel=2)
            data[i] = fix_length(x, self.num_samples)
        self.inputs = torch.from_numpy(data)
        self.labels = torch.tensor([r["label"] for r in self.rows], dtype=torch.long)
        self.domains = [r["domain"] for r in self.rows]

    def __len__(self):
        return len(self.rows)

    @property
    def waves(self):
        return self.inputs

    def __getitem__(self, i):
        return self.inputs[i], self.labels[i], i
