import csv
import os

import soundfile as sf

from kws_okd.data import gsc
from kws_okd.data.corpus import CorpusSpec, build_corpus
from kws_okd.data.manifest import read_manifest
from kws_okd.data.words import EXTRA_UNKNOWN_WORDS, GSC_V2_WORDS
from tests.conftest import corpus_digest


def test_default_spec_has_all_35_words_extra_unknown_words_and_six_families():
    spec = CorpusSpec.sized("default")
    assert len(spec.words) == 35 and set(spec.words) == set(GSC_V2_WORDS)
    assert set(spec.all_words) == set(GSC_V2_WORDS) | set(EXTRA_UNKNOWN_WORDS)
    assert set(spec.families) == {"espeak", "espeak_accent", "festival", "piper", "espeak_klatt", "flite"}
    assert spec.takes_of("yes") == 3 and spec.takes_of("bed") == 1 and spec.takes_of("hello") == 1


def test_layout_is_gsc_v2(tiny_corpus, tiny_spec):
    root = tiny_corpus
    words = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != "_background_noise_")
    assert words == sorted(GSC_V2_WORDS + tiny_spec.extra_words)
    wavs = list(root.glob("*/*_nohash_*.wav"))
    # Training families: 39 words x 1 take + 10 keywords x 1 more take, per speaker; the
    # held-out families (espeak_klatt, flite) speak no extra word.
    assert len(wavs) == ((35 + 4 + 10) * 2 + (35 + 10) * 2) * 5
    hello = {c.domain for c in gsc.scan(root) if c.word == "hello"}
    assert hello == {"espeak", "espeak_accent"}
    assert len(list(root.glob("yes/*_nohash_1.wav"))) == 5 * len(tiny_spec.families)
    for w in list(root.glob("yes/*.wav"))[:5]:
        info = sf.info(str(w))
        assert (info.samplerate, info.channels, info.frames) == (16000, 1, 16000)
    noises = {p.stem for p in (root / "_background_noise_").glob("*.wav")}
    assert {"white_noise", "pink_noise", "babble", "music", "near_silence"} <= noises
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
    assert {r["domain"] for r in ood} == {"flite"} and len(ood) == (35 + 10) * 5  # keywords: 2 takes
    assert info["eval_sets"] == {"test_id": "id", "test_ood_flite": "ood", "test_ood_espeak_klatt": "ood"}
    with open(tmp_path / "train.csv") as f:
        assert csv.DictReader(f).fieldnames[:7] == ["ID", "wav", "duration", "spk_id", "domain", "word", "label"]


def test_deterministic_and_cached(tmp_path):
    spec = CorpusSpec(families=("espeak", "flite"), words=("yes", "no"), speakers_per_family=3,
                      noise_seconds=1, seed=3, extra_words=("hello",), keyword_takes=2)
    a = build_corpus(tmp_path / "a", spec, progress=False)
    b = build_corpus(tmp_path / "b", spec, progress=False)
    assert corpus_digest(a) == corpus_digest(b)
    stamp = os.stat(a / "yes").st_mtime_ns
    build_corpus(tmp_path / "a", spec, progress=False)  # same settings: nothing rebuilt
    assert os.stat(a / "yes").st_mtime_ns == stamp
    spec2 = CorpusSpec(**{**spec.__dict__, "seed": 4})
    build_corpus(tmp_path / "a", spec2, progress=False)  # new settings: rebuilt
    assert corpus_digest(a) != corpus_digest(b)
    assert not (tmp_path / "a.partial").exists()


def test_clips_sit_on_a_noise_floor_not_digital_silence(tiny_corpus):
    import numpy as np
    for wav in sorted(tiny_corpus.glob("bed/*.wav"))[:6]:
        x, _ = sf.read(str(wav), dtype="float32")
        assert np.count_nonzero(x[:800]) > 700 or np.count_nonzero(x[-800:]) > 700
        # The quietest 50 ms stretch is the floor: within the drawn -72..-48 dBFS band
        # (16-bit quantisation and the word's own tail can only add to it).
        frames = x[: len(x) // 800 * 800].reshape(-1, 800)
        floor_db = 20 * np.log10(np.sqrt((frames ** 2).mean(axis=1)).min())
        assert -80 < floor_db < -40


def test_12_class_task_maps_extra_words_to_unknown_and_35_drops_them(tiny_corpus, tmp_path):
    from kws_okd.data.words import SILENCE, UNKNOWN
    gsc.prepare(tiny_corpus, tmp_path / "t35", task="35")
    rows35 = read_manifest(tmp_path / "t35" / "train.csv")
    assert not {r["word"] for r in rows35} & {"hello", "music", "john", "yet"}
    gsc.prepare(tiny_corpus, tmp_path / "t12", task="12", unknown_ratio=2.0)
    train = read_manifest(tmp_path / "t12" / "train.csv")
    valid = read_manifest(tmp_path / "t12" / "valid.csv")
    per_class = sum(r["word"] == "yes" for r in train)
    assert per_class == 3 * 4 * 2  # 3 training speakers x 4 families x 2 takes
    assert sum(r["word"] == UNKNOWN for r in train) == 2 * per_class
    assert sum(r["word"] == SILENCE for r in train) == per_class
    val_per_class = len([r for r in valid if not r["word"].startswith("_")]) // 10
    assert sum(r["word"] == UNKNOWN for r in valid) == val_per_class
    ids = {r["ID"].split("/")[0] for r in train if r["word"] == UNKNOWN}
    assert ids <= set(GSC_V2_WORDS + EXTRA_UNKNOWN_WORDS) - {"yes", "no", "up", "down", "left", "right",
                                                              "on", "off", "stop", "go"}


def test_the_training_families_of_a_data_config_speak_the_extra_words():
    from omegaconf import OmegaConf

    from kws_okd.data.sources import synth_spec
    cfg = OmegaConf.load(os.path.join(os.path.dirname(__file__), "..", "recipes/kws/data/synth.yaml"))
    # The recipe's default is the corpus the spec's own defaults describe (same build, same cache).
    assert synth_spec(cfg).digest() == CorpusSpec.sized("default").digest()
    cfg.families = ["espeak", "piper", "flite"]
    cfg.train_domains = ["espeak", "piper"]
    spec = synth_spec(cfg)
    assert spec.words_of("piper") == spec.all_words and spec.words_of("flite") == tuple(GSC_V2_WORDS)
    assert spec.digest() != CorpusSpec.sized("default").digest()
