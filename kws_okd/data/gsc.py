"""Read any folder in Google Speech Commands layout and write manifests.

Works for the real GSC v1/v2 download and for the embedded TTS corpus, which
adds a ``speakers.csv`` mapping each speaker to its domain (synthesiser
family) and may hold folders of the extra ``_unknown_`` words
(:data:`~kws_okd.data.words.EXTRA_UNKNOWN_WORDS`). Tasks: ``35`` (every GSC word is a
class; 30 for v1; extra words are left out) and ``12`` (ten keywords + ``_unknown_``,
every other word, + ``_silence_`` cut from background noise).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from kws_okd.data.manifest import write_manifest
from kws_okd.data.words import (BACKGROUND, EXTRA_UNKNOWN_WORDS, GSC_V1_WORDS, GSC_V2_EXTRA,
                                GSC_V2_WORDS, KEYWORDS_12, SILENCE, UNKNOWN, folder_name)
from kws_okd.errors import DataError
from kws_okd.utils.atomic import write_json, write_text

SPLITS = ("train", "valid", "test")


@dataclass
class Clip:
    wav: Path
    word: str
    spk_id: str
    split: str
    domain: str


def detect_version(root: Path) -> int:
    return 2 if any((root / w).is_dir() for w in GSC_V2_EXTRA) else 1


def _read_list(path: Path) -> set[str]:
    if not path.exists():
        raise DataError(f"{path}: split list missing (a GSC folder has validation_list.txt "
                        f"and testing_list.txt)")
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def _read_domains(root: Path) -> dict[str, str]:
    path = root / "speakers.csv"
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        return {r["spk_id"]: r["domain"] for r in csv.DictReader(f)}


def corpus_words(root: Path) -> tuple:
    """The words an embedded corpus says (its ``corpus.json``), or none for other folders."""
    import json
    meta = Path(root) / "corpus.json"
    if not meta.is_file():
        return ()
    spec = json.loads(meta.read_text()).get("spec", {})
    return tuple(spec.get("words", ())) + tuple(spec.get("extra_words", ()))


def scan(root, words: tuple | None = None) -> list[Clip]:
    """List every clip of a GSC-layout folder with its split and domain."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data folder does not exist")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"{root}: data folder is empty (expected one folder per word)")
    known = set(words or corpus_words(root) or GSC_V2_WORDS + EXTRA_UNKNOWN_WORDS)
    unknown = [p.name for p in folders if p.name not in known and p.name != BACKGROUND]
    if unknown:
        raise DataError(f"{root}: unknown word folder(s) {unknown}; known words: {sorted(known)}")
    valid = _read_list(root / "validation_list.txt")
    test = _read_list(root / "testing_list.txt")
    domains = _read_domains(root)
    clips = []
    for folder in folders:
        if folder.name == BACKGROUND:
            continue
        for wav in sorted(folder.glob("*.wav")):
            rel = f"{folder.name}/{wav.name}"
            spk = wav.name.split("_nohash_")[0]
            split = "valid" if rel in valid else "test" if rel in test else "train"
            clips.append(Clip(wav, folder.name, spk, split, domains.get(spk, "gsc")))
    if not clips:
        raise DataError(f"{root}: no .wav files under the word folders")
    return clips


def _row(clip: Clip, label: int, word: str) -> dict:
    return dict(ID=f"{clip.word}/{clip.wav.stem}", wav=str(clip.wav.resolve()), duration=1.0,
                spk_id=clip.spk_id, domain=clip.domain, word=word, label=label, offset=0)


def _silence_rows(root: Path, n: int, label: int, rng, split: str, sr: int = 16000) -> list[dict]:
    noises = sorted((root / BACKGROUND).glob("*.wav"))
    if not noises:
        raise DataError(f"{root / BACKGROUND}: the 12-class task needs background noise WAVs "
                        f"to cut _silence_ clips from")
    rows = []
    for i in range(n):
        path = noises[i % len(noises)]
        frames = sf.info(str(path)).frames
        offset = int(rng.integers(0, max(1, frames - sr)))
        rows.append(dict(ID=f"{SILENCE}/{split}{i}_{path.stem}", wav=str(path.resolve()),
                         duration=1.0, spk_id="none", domain="silence", word=SILENCE,
                         label=label, offset=offset))
    return rows


def class_names(task: str, version: int, keywords=None) -> list[str]:
    if str(task) == "keywords":   # a user's own keywords (kws_okd/keywords), class names as folders
        if not keywords:
            raise DataError("task 'keywords' needs the list of keywords")
        return [folder_name(k) for k in keywords] + [UNKNOWN, SILENCE]
    if str(task) == "12":
        return list(KEYWORDS_12) + [UNKNOWN, SILENCE]
    if str(task) == "35":
        return sorted(GSC_V2_WORDS if version == 2 else GSC_V1_WORDS)
    raise DataError(f"unknown task {task!r}; choose '12', '35' or 'keywords'")


def prepare(root, out_dir, task: str = "35", ood_domains=(), train_domains=None,
            seed: int = 0, unknown_ratio: float = 1.0, keywords=None) -> dict:
    """Write train/valid/test_id (and one test_ood_<domain>) manifests into ``out_dir``.

    Clips of ``ood_domains`` never appear in train or valid: the whole family is
    held out, all of its clips form that domain's OOD test set. For the 12-class
    task (and task ``keywords``: ``keywords`` + ``_unknown_`` + ``_silence_``) each split keeps as many ``_unknown_`` and ``_silence_`` clips as an average
    keyword has, except train, which keeps ``unknown_ratio`` times as many
    ``_unknown_`` (more of ordinary speech to reject).
    """
    root, out_dir = Path(root), Path(out_dir)
    clips = scan(root)
    version = detect_version(root)
    classes = class_names(task, version, keywords)
    if str(task) == "35":
        clips = [c for c in clips if c.word in classes]
    index = {c: i for i, c in enumerate(classes)}
    ood_domains = tuple(ood_domains or ())
    domains = sorted({c.domain for c in clips})
    missing = [d for d in (*ood_domains, *(train_domains or ())) if d not in domains]
    if missing:
        raise DataError(f"{root}: domain(s) {missing} not in this corpus; it has {domains}")
    rng = np.random.default_rng(seed)

    def label_of(word):
        if word in index:
            return index[word], word
        return index[UNKNOWN], UNKNOWN  # only reachable for the 12-class task

    sets: dict[str, list[dict]] = {}
    for split in SPLITS:
        picked = [c for c in clips if c.split == split and c.domain not in ood_domains
                  and (train_domains is None or c.domain in train_domains)]
        rows = [_row(c, *label_of(c.word)) for c in picked]
        if str(task) != "35":
            known = [r for r in rows if r["word"] != UNKNOWN]
            unk = [r for r in rows if r["word"] == UNKNOWN]
            per_class = max(1, len(known) // (len(classes) - 2))
            n_unk = round(per_class * (unknown_ratio if split == "train" else 1.0))
            keep = rng.permutation(len(unk))[:max(1, n_unk)]
            rows = known + [unk[i] for i in sorted(keep)]
            rows += _silence_rows(root, per_class, index[SILENCE], rng, split)
        sets["test_id" if split == "test" else split] = rows
    for d in ood_domains:
        sets[f"test_ood_{d}"] = [_row(c, *label_of(c.word)) for c in clips if c.domain == d]
    for name, rows in sets.items():
        if not rows:
            raise DataError(f"{root}: split {name!r} would be empty")
        write_manifest(out_dir / f"{name}.csv", rows)
    write_text(out_dir / "classes.txt", "".join(c + "\n" for c in classes))
    info = dict(root=str(root.resolve()), task=str(task), version=version, classes=classes,
                **({"keywords": list(keywords)} if str(task) == "keywords" else {}),
                ood_domains=list(ood_domains), train_domains=train_domains,
                sets={k: len(v) for k, v in sets.items()},
                eval_sets={k: ("ood" if k.startswith("test_ood_") else "id")
                           for k in sets if k.startswith("test")})
    write_json(out_dir / "protocol.json", info)
    return info
