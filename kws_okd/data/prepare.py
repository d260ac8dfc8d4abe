"""Data preparation, run once per setting: corpus (if synthetic) -> manifests."""
from __future__ import annotations

import json
from pathlib import Path

from kws_okd.data import gsc
from kws_okd.data.corpus import CorpusSpec, build_corpus
from kws_okd.errors import ConfigError


def prepare_data(cfg, progress: bool = True) -> Path:
    """Return the folder holding ``train.csv``, ``valid.csv``, ``test_*.csv``, ``classes.txt``."""
    kind = cfg.get("kind")
    if kind == "synth":
        spec = CorpusSpec.sized(cfg.size, seed=int(cfg.corpus_seed),
                                families=tuple(cfg.families))
        root = build_corpus(cfg.corpus_dir, spec, progress=progress)
    elif kind == "gsc":
        if not cfg.get("root"):
            raise ConfigError("data.root: path to a Google Speech Commands folder is required "
                              "(e.g. data.root=/data/speech_commands_v0.02)")
        root = Path(cfg.root)
    else:
        raise ConfigError(f"data.kind: unknown data kind {kind!r}; use 'synth' or 'gsc'")
    out = Path(cfg.manifest_dir)
    want = dict(root=str(Path(root).resolve()), task=str(cfg.task),
                ood_domains=list(cfg.get("ood_domains") or []),
                train_domains=list(cfg.train_domains) if cfg.get("train_domains") else None)
    marker = out / "protocol.json"
    corpus_meta = Path(root) / "corpus.json"
    stamp = corpus_meta.read_text() if corpus_meta.exists() else ""
    if marker.exists():
        have = json.loads(marker.read_text())
        if all(have.get(k) == v for k, v in want.items()) and have.get("corpus_stamp") == stamp:
            return out
    info = gsc.prepare(root, out, task=want["task"], ood_domains=want["ood_domains"],
                       train_domains=want["train_domains"], seed=int(cfg.get("split_seed", 0)))
    info["corpus_stamp"] = stamp
    from kws_okd.utils.atomic import write_json
    write_json(marker, info)
    return out
