"""Built-in data kinds: the embedded TTS corpus and a real GSC folder.

Preparation runs once per setting and is skipped when ``protocol.json`` already
records the same settings (and the same corpus build)."""
from __future__ import annotations

import json
from pathlib import Path

from kws_okd.data import gsc
from kws_okd.data.corpus import CorpusSpec, build_corpus
from kws_okd.data.dataset import ManifestDataset
from kws_okd.data.kinds import register_data_kind, register_dataset
from kws_okd.errors import ConfigError
from kws_okd.utils.atomic import write_json

register_dataset("audio")(ManifestDataset)


def _prepare_gsc_layout(root, cfg) -> Path:
    out = Path(cfg.manifest_dir)
    want = dict(root=str(Path(root).resolve()), task=str(cfg.task),
                ood_domains=list(cfg.get("ood_domains") or []),
                train_domains=list(cfg.train_domains) if cfg.get("train_domains") else None,
                unknown_ratio=float(cfg.get("unknown_ratio", 1.0)),
                real_negatives=float(cfg.get("real_negatives", 0.0)),
                people_weight=int(cfg.get("people_weight", 0) or 0),
                # A user's own keywords and a window other than 1 s (kws_okd/keywords);
                # absent otherwise, so that manifests written before them stay valid.
                **({"keywords": list(cfg.keywords)} if cfg.get("keywords") else {}),
                **({"clip_seconds": float(cfg.clip_seconds)} if float(cfg.get("clip_seconds", 1.0)) != 1.0 else {}),
                # Other folders give other negatives: a change rebuilds the manifests.
                real_negative_folders=[str(Path(f).resolve()) for f in cfg.get("real_negative_folders") or []]
                or None)
    marker = out / "protocol.json"
    corpus_meta = Path(root) / "corpus.json"
    stamp = corpus_meta.read_text() if corpus_meta.exists() else ""
    if marker.exists():
        have = json.loads(marker.read_text())
        if all(have.get(k) == v for k, v in want.items()) and have.get("corpus_stamp") == stamp:
            return out
    seed = int(cfg.get("split_seed", 0))
    info = gsc.prepare(root, out, task=want["task"], ood_domains=want["ood_domains"],
                       train_domains=want["train_domains"], seed=seed,
                       unknown_ratio=want["unknown_ratio"], keywords=want.get("keywords"))
    if want["real_negatives"] > 0 and want["task"] != "35":
        from kws_okd.data.negatives import add_real_negatives
        n = add_real_negatives(out, want["real_negatives"], want["real_negative_folders"], seed=seed)
        info["sets"]["train"] += n
        info["real_negatives_added"] = n
    if want["people_weight"] > 0:
        # Real people's clips (the development set's train speakers), each people_weight
        # times: the only labelled human keywords the default corpus has.
        from kws_okd.data.manifest import read_manifest, write_manifest
        from kws_okd.data.people import people_rows, repeated
        people = repeated(people_rows((out / "classes.txt").read_text().split(), "train"), want["people_weight"])
        write_manifest(out / "train.csv", read_manifest(out / "train.csv") + people)
        info["sets"]["train"] += len(people)
        info["people_added"] = len(people)
    info.update(people_weight=want["people_weight"], **{k: want[k] for k in ("clip_seconds",) if k in want})
    info.update(unknown_ratio=want["unknown_ratio"], real_negatives=want["real_negatives"],
                real_negative_folders=want["real_negative_folders"])
    info["corpus_stamp"] = stamp
    write_json(marker, info)
    return out


def synth_spec(cfg) -> CorpusSpec:
    """The corpus a ``data`` config asks for. The training families (``train_domains``)
    also speak the extra ``_unknown_`` words; the held-out ones only the GSC words."""
    extra = {}
    if cfg.get("train_domains"):
        extra["extra_word_families"] = tuple(cfg.train_domains)
    return CorpusSpec.sized(cfg.size, seed=int(cfg.corpus_seed), families=tuple(cfg.families), **extra)


@register_data_kind("synth")
def prepare_synth(cfg, progress=True) -> Path:
    return _prepare_gsc_layout(build_corpus(cfg.corpus_dir, synth_spec(cfg), progress=progress), cfg)


@register_data_kind("gsc")
def prepare_gsc(cfg, progress=True) -> Path:
    if not cfg.get("root"):
        raise ConfigError("data.root: path to a Google Speech Commands folder is required "
                          "(e.g. data.root=/data/speech_commands_v0.02)")
    return _prepare_gsc_layout(Path(cfg.root), cfg)


@register_data_kind("keywords")
def prepare_keywords(cfg, progress=True) -> Path:
    """A user's own keywords (``data.keywords``): synthesised with their near misses and
    the usual ``_unknown_`` words (kws_okd/keywords/corpus.py)."""
    from kws_okd.keywords.corpus import keyword_spec
    return _prepare_gsc_layout(build_corpus(cfg.corpus_dir, keyword_spec(cfg), progress=progress), cfg)
