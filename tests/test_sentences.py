"""The keywords-inside-sentences recording (kws_okd/evaluate/sentences.py)."""
import re

import numpy as np
import pytest
import soundfile as sf

from kws_okd.errors import DataError
from kws_okd.evaluate.sentences import (CARRIERS, NEGATIVE_SENTENCES, VALID_CARRIERS, VALID_NEGATIVE_SENTENCES,
                                        build_sentences, compose_sentences)
from kws_okd.stream.longaudio import read_labels

KEYWORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]


def words(text):
    return set(re.findall(r"[a-z']+", text))


def test_carriers_and_negative_sentences_hold_no_keyword():
    for before, after in CARRIERS:
        assert not words(f"{before} {after}") & set(KEYWORDS), (before, after)
    for s in NEGATIVE_SENTENCES:
        assert not words(s) & set(KEYWORDS), s
    assert len(set(NEGATIVE_SENTENCES)) == len(NEGATIVE_SENTENCES)


def test_validation_texts_hold_no_keyword_and_no_test_text():
    for before, after in VALID_CARRIERS:
        assert not words(f"{before} {after}") & set(KEYWORDS), (before, after)
    for s in VALID_NEGATIVE_SENTENCES:
        assert not words(s) & set(KEYWORDS), s
    assert len(set(VALID_NEGATIVE_SENTENCES)) == len(VALID_NEGATIVE_SENTENCES) == len(NEGATIVE_SENTENCES)
    # Thresholds are chosen on these: no test sentence or carrier is heard before the test.
    assert not set(VALID_NEGATIVE_SENTENCES) & set(NEGATIVE_SENTENCES)
    assert not set(VALID_CARRIERS) & set(CARRIERS)


def test_validation_sentences_use_the_given_voices_and_texts(tmp_path):
    from kws_okd.data.tts import get_engine
    voices = get_engine("espeak").sample_voices(2, np.random.default_rng(4))
    info = compose_sentences([], KEYWORDS, tmp_path / "v.wav", minutes=0.4, seed=2, voices=voices,
                             texts="valid")
    assert info["voices"] == 2 and info["families"] == ["espeak"] and info["texts"] == "valid"
    labels = read_labels(tmp_path / "v.csv")
    assert {lb["source"].split("/")[1] for lb in labels} <= {v.name for v in voices}
    assert {lb["domain"] for lb in labels} == {"espeak"}
    fillers = {lb["source"].rsplit("/", 1)[1] for lb in labels if lb["kind"] == "filler"}
    valid_texts = {t for pair in VALID_CARRIERS for t in pair if t} | set(VALID_NEGATIVE_SENTENCES)
    assert fillers and fillers <= valid_texts
    with pytest.raises(DataError, match="unknown sentence texts 'train'"):
        compose_sentences([], KEYWORDS, tmp_path / "x.wav", voices=voices, texts="train")


def test_sentence_recording_labels_match_the_audio(tmp_path):
    info = compose_sentences(["espeak_klatt"], KEYWORDS, tmp_path / "s.wav", minutes=0.5, seed=3,
                             voices_per_family=2)
    audio, sr = sf.read(str(tmp_path / "s.wav"), dtype="float32")
    assert sr == 16000 and len(audio) == 30 * sr
    labels = read_labels(tmp_path / "s.csv")
    kw = [lb for lb in labels if lb["kind"] == "keyword"]
    assert len(kw) == info["keyword_sentences"] >= 1 and info["sentences_without_keyword"] >= 1
    assert all(lb["word"] in KEYWORDS and lb["domain"] == "espeak_klatt" for lb in kw)
    assert all(lb["word"] == "_unknown_" for lb in labels if lb["kind"] == "filler")
    for a, b in zip(labels, labels[1:]):
        assert a["end_s"] <= b["start_s"]                 # pieces never overlap
    # Each labelled piece is speech, loud above the -60 dB dither; the pauses inside a
    # sentence (30-120 ms) and the gaps between sentences are near silent.
    rms = np.sqrt(np.mean(audio ** 2))
    for lb in labels:
        seg = audio[int(lb["start_s"] * sr):int(lb["end_s"] * sr)]
        assert np.sqrt(np.mean(seg ** 2)) > 0.1 * rms, lb
    for a, b in zip(labels, labels[1:]):
        gap = audio[int(a["end_s"] * sr) + 80:int(b["start_s"] * sr) - 80]
        if len(gap):
            assert np.abs(gap).max() < 0.01, (a, b)
        if a["source"].rsplit("/", 1)[0] == b["source"].rsplit("/", 1)[0] and \
                "keyword" in (a["kind"], b["kind"]):
            assert b["start_s"] - a["end_s"] <= 0.121     # a keyword sits inside its sentence


def test_sentence_recording_is_built_once_and_deterministic(tmp_path):
    w1 = build_sentences(["espeak_klatt"], KEYWORDS, tmp_path / "a", minutes=0.2, seed=1)
    stamp = w1.stat().st_mtime_ns
    assert build_sentences(["espeak_klatt"], KEYWORDS, tmp_path / "a", minutes=0.2, seed=1).stat().st_mtime_ns == stamp
    w2 = build_sentences(["espeak_klatt"], KEYWORDS, tmp_path / "b", minutes=0.2, seed=1)
    assert np.array_equal(sf.read(str(w1))[0], sf.read(str(w2))[0])
    with pytest.raises(DataError, match="at least one synthesiser family"):
        compose_sentences([], KEYWORDS, tmp_path / "x.wav")


def test_eval_detection_tool_names_bad_model_arguments(tmp_path, capsys):
    from tests.conftest import tool_exit
    for args, msg in ((["erm"], "models must be name=path"),
                      ([f"erm={tmp_path / 'none.pt'}"], "no such model file")):
        assert tool_exit("eval_detection.py", ["--out", str(tmp_path), *args]) == 2
        assert msg in capsys.readouterr().err
