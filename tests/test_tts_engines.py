import shutil
from pathlib import Path

import numpy as np
import pytest

from kws_okd.data import tts
from kws_okd.data.corpus import CorpusSpec, build_corpus
from kws_okd.data.tts import Festival, Voice, festival_voices, get_engine
from tests.conftest import corpus_digest

SR = 16000
needs_festival = pytest.mark.skipif(not Festival.available(),
                                    reason="Festival or its voices not installed (make setup)")


def f0_hz(x, fmin=60, fmax=400):
    """Pitch of the loudest 150 ms of a clip, by autocorrelation."""
    n = int(0.15 * SR)
    energy = np.convolve(x ** 2, np.ones(n), mode="valid")
    seg = x[int(np.argmax(energy)):][:n]
    seg = seg - seg.mean()
    ac = np.fft.irfft(np.abs(np.fft.rfft(seg, 2 * n)) ** 2)[:n]
    lo, hi = int(SR / fmax), int(SR / fmin)
    return SR / (lo + np.argmax(ac[lo:hi]))


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")


def test_festival_voices_are_discovered_from_the_voice_folders(tmp_path, monkeypatch):
    _touch(tmp_path / "english/kal_diphone/festvox/kal_diphone.scm")
    _touch(tmp_path / "us/cmu_us_slt_arctic_hts/festvox/cmu_us_slt_arctic_hts.scm")
    _touch(tmp_path / "english/rab_clunits/festvox/rab_clunits.scm")  # no rate/pitch control
    _touch(tmp_path / "italian/lp_diphone/festvox/lp_diphone.scm")  # not English
    (tmp_path / "english/ked_diphone").mkdir()  # an empty folder: not a voice
    assert festival_voices(tmp_path) == ("cmu_us_slt_arctic_hts", "kal_diphone")
    monkeypatch.setattr(tts, "FESTIVAL_VOICE_ROOT", tmp_path / "nowhere")
    assert festival_voices() == ()
    assert not Festival.available()
    with pytest.raises(RuntimeError, match="festvox"):
        get_engine("festival")


def test_festival_voice_sampling_is_deterministic_and_distinct(monkeypatch):
    monkeypatch.setattr(Festival, "voices", lambda self: ("cmu_us_slt_arctic_hts", "kal_diphone",
                                                         "ked_diphone"))
    eng = Festival()
    a = eng.sample_voices(60, np.random.default_rng(5))
    assert a == eng.sample_voices(60, np.random.default_rng(5))
    assert a != eng.sample_voices(60, np.random.default_rng(6))
    assert len(set(a)) == 60
    assert {v.get("voice") for v in a} == {"cmu_us_slt_arctic_hts", "kal_diphone", "ked_diphone"}
    for v in a:
        assert v.family == "festival" and [k for k, _ in v.params] == ["f0", "stretch", "voice"]
        kind = "hts" if v.get("voice").endswith("_hts") else "diphone"
        lo, hi = Festival.F0_RANGE[kind]
        assert lo <= v.get("f0") <= hi and 0.85 <= v.get("stretch") <= 1.3


def test_festival_command_selects_voice_rate_and_pitch():
    eng = Festival()
    cmd = eng.command(Voice("festival", (("f0", 150), ("stretch", 1.2), ("voice", "ked_diphone"))),
                      "yes", "/tmp/o.wav", 0.0)
    assert cmd[:3] == ["text2wave", "-o", "/tmp/o.wav"] and "(voice_ked_diphone)" in cmd
    assert "(Parameter.set 'Duration_Stretch 1.2000)" in cmd
    assert any("target_f0_mean 150" in c for c in cmd)
    slt = Voice("festival", (("f0", 165), ("stretch", 1.25), ("voice", "cmu_us_slt_arctic_hts")))
    hts = eng.command(slt, "yes", "/tmp/o.wav", 0.0)
    assert any('"-r" 0.8000' in c for c in hts)  # 1 / (stretch 1.25 * replay 1.0)
    with pytest.raises(ValueError):
        eng.command(Voice("festival", (("f0", 150), ("stretch", 1.0), ("voice", "x) (quit"))),
                    "yes", "/tmp/o.wav", 0.0)


@needs_festival
def test_festival_says_yes_at_16k_and_voices_differ():
    eng = get_engine("festival")
    names = festival_voices()
    clips = {}
    for name in names:
        v = Voice("festival", (("f0", 160 if name.endswith("_hts") else 110), ("stretch", 1.0),
                               ("voice", name)))
        x = eng.synthesize(v, "yes", SR)
        assert x.dtype == np.float32 and np.isfinite(x).all()
        assert 0.2 * SR < len(x) < 2 * SR
        assert np.sqrt(np.mean(x ** 2)) > 0.01
        assert np.array_equal(x, eng.synthesize(v, "yes", SR))  # deterministic
        clips[name] = x
    # Same speaker settings, another voice: different audio.
    for a in names:
        for b in names:
            if a < b:
                xa, xb = clips[a], clips[b]
                assert len(xa) != len(xb) or not np.allclose(xa, xb, atol=1e-3)


@needs_festival
@pytest.mark.parametrize("name", ["ked_diphone", "cmu_us_slt_arctic_hts"])
def test_festival_voice_params_move_pitch_and_duration(name):
    if name not in festival_voices():
        pytest.skip(f"{name} not installed")
    eng = get_engine("festival")
    lo, hi = Festival.F0_RANGE["hts" if name.endswith("_hts") else "diphone"]

    def say(f0, stretch, jitter=0.0):
        return eng.synthesize(Voice("festival", (("f0", f0), ("stretch", stretch), ("voice", name))),
                              "seven", SR, jitter)

    low, high = f0_hz(say(lo, 1.0)), f0_hz(say(hi, 1.0))
    assert high / low > 0.7 * hi / lo  # pitch follows the f0 parameter
    slow, fast = say(lo, 1.3), say(lo, 0.85)
    assert len(slow) > 1.25 * len(fast)
    assert len(say(lo, 1.0, jitter=0.1)) < len(say(lo, 1.0))  # a take with jitter: faster


@needs_festival
def test_festival_persistent_process_matches_text2wave():
    eng = get_engine("festival")
    one_shot = Festival()
    one_shot.persistent = False
    for name in festival_voices():
        v = Voice("festival", (("f0", 150), ("stretch", 1.1), ("voice", name)))
        assert np.array_equal(eng.synthesize(v, "seven", SR, 0.05),
                              one_shot.synthesize(v, "seven", SR, 0.05))


@needs_festival
def test_festival_reports_errors_and_recovers(monkeypatch):
    eng = get_engine("festival")
    bad = Voice("festival", (("f0", 150), ("stretch", 1.0), ("voice", "no_such_diphone")))
    with pytest.raises(RuntimeError, match="festival failed"):
        eng.synthesize(bad, "yes", SR)
    good = Voice("festival", (("f0", 150), ("stretch", 1.0), ("voice", festival_voices()[-1])))
    assert np.abs(eng.synthesize(good, 'say "quoted" \\ text', SR)).max() > 0.05
    server = eng._local.servers[good.get("voice")]
    server.proc.kill()  # a dead process is replaced on the next call
    server.proc.wait()
    assert np.abs(eng.synthesize(good, "yes", SR)).max() > 0.05


@needs_festival
def test_festival_corpus_is_deterministic_across_threads(tmp_path):
    small = {k: v for k, v in dict(extra_words=(), keyword_takes=0).items()
             if k in CorpusSpec.__dataclass_fields__}
    spec = CorpusSpec(families=("festival",), words=("yes", "seven"), speakers_per_family=3,
                      takes=2, noise_seconds=1, seed=11, **small)
    a = build_corpus(tmp_path / "a", spec, workers=1, progress=False)
    b = build_corpus(tmp_path / "b", spec, workers=3, progress=False)
    assert corpus_digest(a) == corpus_digest(b)
    assert len(list((a / "yes").glob("*_nohash_*.wav"))) == 3 * 2


def test_setup_script_installs_festival_and_its_voices():
    text = (Path(__file__).resolve().parents[1] / "tools/setup_system.sh").read_text()
    for pkg in ("festival", "festvox-kallpc16k", "festvox-kdlpc16k", "festvox-us-slt-hts"):
        assert f"need+=({pkg})" in text


@needs_festival
def test_festival_is_listed_when_installed():
    assert "festival" in tts.available_families()
    assert shutil.which("text2wave")


@pytest.mark.parametrize("family", ["espeak", "espeak_accent", "espeak_klatt", "flite"])
def test_voice_names_read_back_as_the_same_voice(family):
    from kws_okd.data.tts import ENGINES, voice_from_name
    voices = ENGINES[family]().sample_voices(40, np.random.default_rng(3))
    for v in voices:
        assert voice_from_name(v.name) == v    # values keep their types: 120, not "120"


def test_festival_voice_names_read_back(monkeypatch):
    from kws_okd.data.tts import voice_from_name
    monkeypatch.setattr(Festival, "voices", lambda self: ("cmu_us_slt_arctic_hts", "kal_diphone"))
    for v in Festival().sample_voices(20, np.random.default_rng(1)):
        assert voice_from_name(v.name) == v


def test_unreadable_voice_names_say_why():
    from kws_okd.data.tts import voice_from_name
    with pytest.raises(ValueError, match="names no known synthesiser family"):
        voice_from_name("mbrola-us1")
    with pytest.raises(ValueError, match=r"does not have the flite parameters \['f0', 'stretch', 'voice'\]"):
        voice_from_name("flite-pitch40-rate100")
