import csv
import hashlib
import os

import soundfile as sf

from kws_okd.data import gsc
from kws_okd.data.corpus import CorpusSpec, build_corpus
from kws_okd.data.manifest import read_manifest
from kws_okd.data.words import GSC_V2_WORDS


def test_default_spec_has_all_35_words_and_four_families():
    spec = CorpusSpec.sized("default")
    assert len(spec.words) == 35 and set(spec.words) == set(GSC_V2_WORDS)
    assert set(spec.families) == {"espeak", "espeak_accent", "espeak_klatt", "flite"}


def test_layout_is_gsc_v2(tiny_corpus, tiny_spec):
    root = tiny_corpus
    words = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != "_background_noise_")
    assert words == sorted(GSC_V2_WORDS)
    wavs = list(root.glob("*/*_nohash_*.wav"))
    assert len(wavs) == 35 * 5 * len(tiny_spec.families)
    for w in list(root.glob("yes/*.wav"))[:5]:
        info = sf.info(str(w))
        assert (info.samplerate, info.channels, info.frames) == (16000, 1, 16000)
    noises = {p.stem for p in (root / "_background_noise_").glob("*.wav")}
    assert {"white_noise", "pink_noise", "babble"} <= noises
    assert (root / "validation_list.txt").exists() and (root / "testing_list.txt").exists()


def test_splits_are_speaker_disjoint_and_every_family_in_every_split(tiny_corpus):
    clips = gsc.scan(tiny_corpus)
    by_split = {s: {c.spk_id for c in clips if c.split == s} for s in ("train", "valid", "test")}
    assert not (by_split["train"] & by_split["valid"])
    assert not (by_split["train"] & by_split["test"])
    assert not (by_split["valid"] & by_split["test"])
    for split in by_split:
        assert {c.domain for c in clips if c.split == split} == {"espeak", "espeak_accent",
                                                                  "espeak_klatt", "flite"}


def test_ood_protocol_holds_whole_families_out(tiny_corpus, tmp_path):
    info = gsc.prepare(tiny_corpus, tmp_path, task="35", ood_domains=["flite", "espeak_klatt"])
    for name in ("train", "valid", "test_id"):
        rows = read_manifest(tmp_path / f"{name}.csv")
        assert {r["domain"] for r in rows} == {"espeak", "espeak_accent"}
    ood = read_manifest(tmp_path / "test_ood_flite.csv")
    assert {r["domain"] for r in ood} == {"flite"} and len(ood) == 35 * 5
    assert info["eval_sets"] == {"test_id": "id", "test_ood_flite": "ood", "test_ood_espeak_klatt": "ood"}
    with open(tmp_path / "train.csv") as f:
        assert csv.DictReader(f).fieldnames[:7] == ["ID", "wav", "duration", "spk_id", "domain", "word", "label"]


def _digest(root):
    h = hashlib.sha1()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "corpus.json":
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_deterministic_and_cached(tmp_path):
    spec = CorpusSpec(families=("espeak", "flite"), words=("yes", "no"), speakers_per_family=3,
                      noise_seconds=1, seed=3)
    a = build_corpus(tmp_path / "a", spec, progress=False)
    b = build_corpus(tmp_path / "b", spec, progress=False)
    assert _digest(a) == _digest(b)
    stamp = os.stat(a / "yes").st_mtime_ns
    build_corpus(tmp_path / "a", spec, progress=False)  # same settings: nothing rebuilt
    assert os.stat(a / "yes").st_mtime_ns == stamp
    spec2 = CorpusSpec(**{**spec.__dict__, "seed": 4})
    build_corpus(tmp_path / "a", spec2, progress=False)  # new settings: rebuilt
    assert _digest(a) != _digest(b)
    assert not (tmp_path / "a.partial").exists()
