"""Real human speech as labelled ``_unknown_`` training clips (12-class task).

A detector that has only heard synthetic non-keywords fires on people talking. These
rows add one-second windows of real recordings that hold no keyword (by default the
klettres-data letters and syllables: the *training* files of the split that the
real-audio OKD recipe uses, so the held-out files stay unseen) to ``train.csv`` as
``_unknown_``. The windows are written once as WAVs next to the manifests, so
everything downstream still reads one manifest.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from kws_okd.audio.io import write_audio
from kws_okd.data.manifest import read_manifest, write_manifest
from kws_okd.data.words import UNKNOWN
from kws_okd.errors import DataError

DOMAIN = "real_speech"


def add_real_negatives(manifest_dir, ratio: float, folders=None, seed: int = 0,
                       holdout_frac: float = 0.2, windows=None, sample_rate: int = 16000) -> int:
    """Append ``ratio`` x (clips of an average keyword) real windows to ``train.csv``
    as ``_unknown_``; return how many. ``windows`` (tests): a tensor to draw from instead
    of loading ``folders`` (``None`` = klettres-data)."""
    manifest_dir = Path(manifest_dir)
    train_csv = manifest_dir / "train.csv"
    rows = read_manifest(train_csv)
    classes = (manifest_dir / "classes.txt").read_text().split()
    if UNKNOWN not in classes:
        raise DataError(f"{manifest_dir}: real negatives need an {UNKNOWN} class (the 12-class task)")
    unknown = classes.index(UNKNOWN)
    keywords = [r for r in rows if not r["word"].startswith("_")]
    n = round(ratio * len(keywords) / max(1, len(classes) - 2))
    if n <= 0:
        return 0
    if windows is None:
        from kws_okd.data.real_speech import default_real_audio_folders, load_real_windows
        from kws_okd.models.embedding_weights import cache_dir
        folders = default_real_audio_folders() if not folders else [Path(f) for f in folders]
        windows, _ = load_real_windows(folders, cache_dir() / "real_audio",
                                       holdout_frac=holdout_frac, seed=seed)
    if len(windows) == 0:
        raise DataError(f"{manifest_dir}: no real-audio windows to use as negatives")
    pick = np.random.default_rng(seed).choice(len(windows), size=min(n, len(windows)), replace=False)
    new = []
    for i in sorted(pick):
        rel = f"real_unknown/w{i:05d}.wav"
        write_audio(manifest_dir / rel, np.asarray(windows[i], dtype=np.float32), sample_rate)
        new.append(dict(ID=f"{DOMAIN}/w{i:05d}", wav=str((manifest_dir / rel).resolve()), duration=1.0,
                        spk_id=DOMAIN, domain=DOMAIN, word=UNKNOWN, label=unknown, offset=0))
    write_manifest(train_csv, rows + new)
    return len(new)
