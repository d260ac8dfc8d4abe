"""Streaming engine, sources and long-audio evaluation on a model that really detects:
a tiny network trained in the test on synthetic "keywords" (two chirps) against noise
and a distractor sound."""
import argparse
import io

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from kws_okd.audio.features import LogMel
from kws_okd.data.manifest import write_manifest
from kws_okd.errors import KWSError
from kws_okd.models.registry import KWSNet
from kws_okd.stream import sources
from kws_okd.stream.cli import add_stream_commands
from kws_okd.stream.engine import StreamConfig, StreamEngine
from kws_okd.stream.longaudio import (compose_long_audio, evaluate_stream, match, operating_point,
                                      read_labels, stream_scores, sweep)
from kws_okd.stream.resample import StreamResampler
from kws_okd.stream.ring import RingBuffer

SR = 16000
CLASSES = ["_noise_", "kwa", "kwb", "filler"]


def sound(kind, rng, seconds=0.4):
    t = np.arange(int(SR * seconds)) / SR
    if kind == "kwa":      # rising chirp 500 -> 900 Hz
        ph = 2 * np.pi * (500 * t + 0.5 * (400 / seconds) * t ** 2)
    elif kind == "kwb":    # rising chirp 2500 -> 3300 Hz
        ph = 2 * np.pi * (2500 * t + 0.5 * (800 / seconds) * t ** 2)
    else:                  # filler: a steady 1500 Hz tone, amplitude-modulated
        ph = 2 * np.pi * 1500 * t
    x = np.sin(ph) * np.hanning(len(t)) * (1 + 0.3 * np.sin(2 * np.pi * 4 * t) * (kind == "filler"))
    return (x * rng.uniform(0.3, 0.7)).astype(np.float32)


def batch(rng, n):
    x = np.zeros((n, SR), dtype=np.float32)
    y = rng.integers(0, 4, n)
    for i in range(n):
        x[i] = rng.standard_normal(SR) * rng.uniform(0.002, 0.05)
        if y[i]:  # events may be cut by the window edge; mostly-outside ones count as noise
            s = sound(CLASSES[y[i]], rng)
            p = int(rng.integers(-len(s) // 2, SR - len(s) // 2))
            a, b = max(0, p), min(SR, p + len(s))
            x[i, a:b] += s[a - p:b - p]
            if (b - a) < 0.75 * len(s):
                y[i] = 0
    return torch.from_numpy(x), torch.from_numpy(y)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Training the tiny model is faster on one thread on a shared 2-core machine."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


@pytest.fixture(scope="module")
def detector_model():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    backbone = nn.Sequential(nn.Unflatten(1, (1, 40)), nn.Conv2d(1, 12, 5, padding=2), nn.ReLU(),
                             nn.Conv2d(12, 12, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(1),
                             nn.Flatten(), nn.Linear(12, 4))
    model = KWSNet(LogMel(), backbone)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        x, y = batch(rng, 24)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x, y = batch(np.random.default_rng(1), 64)
    with torch.no_grad():
        assert (model(x).argmax(-1) == y).float().mean() > 0.9, "the test model did not learn"
    return model


@pytest.fixture(scope="module")
def long_recording(tmp_path_factory):
    root = tmp_path_factory.mktemp("long")
    rng = np.random.default_rng(2)
    rows = []
    for w in ("kwa", "kwb", "filler"):
        for i in range(4):
            clip = np.zeros(SR, dtype=np.float32)
            s = sound(w, rng)
            clip[3000:3000 + len(s)] = s
            sf.write(str(root / f"{w}_{i}.wav"), clip, SR)
            rows.append(dict(ID=f"{w}/{i}", wav=f"{w}_{i}.wav", word=w, label=CLASSES.index(w), domain="tone"))
    write_manifest(root / "test.csv", rows)
    (root / "noise").mkdir()
    sf.write(str(root / "noise" / "white.wav"), rng.standard_normal(SR * 4).astype(np.float32) * 0.1, SR)
    wav = root / "long.wav"
    info = compose_long_audio(root / "test.csv", wav, minutes=0.75, keywords=["kwa", "kwb"],
                              noise_dir=root / "noise", snr_db=15, seed=3)
    audio, sr = sf.read(str(wav), dtype="float32")
    return dict(wav=wav, root=root, info=info, audio=audio, labels=read_labels(root / "long.csv"))


CFG = StreamConfig(hop_ms=40, smooth=3, threshold=0.6, refractory_s=1.0, keywords=["kwa", "kwb"])


def run_blocks(model, audio, size, cfg=CFG):
    eng = StreamEngine(model, CLASSES, cfg, record=True)
    dets = []
    for i in range(0, len(audio), size):
        dets += eng.feed(audio[i:i + size])
    return dets, eng.trace()


def test_detects_keywords_at_known_times(detector_model, long_recording):
    labels = long_recording["labels"]
    n_kw = sum(lb["kind"] == "keyword" for lb in labels)
    assert n_kw >= 8 and any(lb["kind"] == "filler" for lb in labels)
    dets, _ = run_blocks(detector_model, long_recording["audio"], 1600)
    m = match(dets, labels, ["kwa", "kwb"])
    assert m["hits"] / m["n_events"] >= 0.8, (dets, labels)
    assert m["false_alarms"] <= 1, dets
    assert all(-0.1 <= lat <= 0.75 for lat in m["latencies"])


def test_match_says_what_each_false_alarm_fired_on():
    from kws_okd.stream.engine import Detection
    labels = [dict(start_s=1.0, end_s=1.5, word="kwa", source="kwa/x_nohash_0", domain="flite"),
              dict(start_s=3.0, end_s=3.5, word="_unknown_", source="real_test/4", domain="real_test"),
              dict(start_s=5.0, end_s=5.5, word="kwb", source="alsa/Front_Left", domain="real_alsa"),
              dict(start_s=7.0, end_s=7.6, word="_unknown_", source="music_test/0", domain="")]
    dets = [Detection(1.6, "kwa", 0.9),   # hit
            Detection(2.1, "kwa", 0.9),   # second firing on the hit word: repeat
            Detection(3.7, "kwa", 0.9),   # on the real non-keyword
            Detection(5.8, "kwa", 0.9),   # on kwb: other keyword, and kwb is missed
            Detection(7.1, "kwb", 0.9),   # on music (domain from the source ID: an old label file)
            Detection(9.9, "kwb", 0.9)]   # nothing there
    m = match(dets, labels, ["kwa", "kwb"])
    assert m["hits"] == 1 and m["false_alarms"] == 5
    assert m["false_alarms_by"] == {"repeat": 1, "real_test": 1, "other keyword": 1, "music_test": 1,
                                    "no word": 1}
    assert m["misses_by"] == {"real_alsa": 1}


def test_block_size_does_not_change_detections(detector_model, long_recording):
    audio = long_recording["audio"][:SR * 20]
    ref, (t_ref, s_ref) = run_blocks(detector_model, audio, len(audio))
    assert ref
    for size in (1, 333, 7919):
        dets, (t, s) = run_blocks(detector_model, audio[:SR * 6] if size == 1 else audio, size)
        if size == 1:
            assert np.array_equal(s, s_ref[:len(s)])
        else:
            assert dets == ref and np.array_equal(s, s_ref) and np.array_equal(t, t_ref)


def test_incremental_windows_equal_the_model(detector_model):
    audio = batch(np.random.default_rng(5), 3)[0].reshape(-1).numpy()
    cfg = StreamConfig(hop_ms=30, smooth=1, keywords=CLASSES, threshold=2.0)
    eng = StreamEngine(detector_model, CLASSES, cfg, record=True)
    assert eng.incremental
    eng.feed(audio)
    _, scores = eng.trace()
    for w in (0, 7, len(scores) - 1):
        win = torch.from_numpy(audio[w * 480:w * 480 + SR])[None]
        with torch.no_grad():
            p = torch.softmax(detector_model(win), -1)[0].numpy()
        np.testing.assert_allclose(scores[w], p, atol=1e-5)
    # A hop off the frame grid falls back to whole-window features and agrees too.
    eng2 = StreamEngine(detector_model, CLASSES, StreamConfig(hop_ms=25, smooth=1, keywords=CLASSES,
                                                              threshold=2.0), record=True)
    assert not eng2.incremental
    eng2.feed(audio[:SR + 400])
    np.testing.assert_allclose(eng2.trace()[1][0], scores[0], atol=1e-5)


def test_long_audio_is_deterministic_and_eval_reports(detector_model, long_recording, tmp_path):
    root = long_recording["root"]
    again = tmp_path / "again.wav"
    compose_long_audio(root / "test.csv", again, minutes=0.75, keywords=["kwa", "kwb"],
                       noise_dir=root / "noise", snr_db=15, seed=3)
    assert np.array_equal(sf.read(str(again))[0], sf.read(str(long_recording["wav"]))[0])
    assert again.with_suffix(".csv").read_text() == (root / "long.csv").read_text()
    times, scores, kws, dur = stream_scores(detector_model, CLASSES, long_recording["wav"], CFG)
    curve = sweep(times, scores, long_recording["labels"], kws, dur, CFG.refractory_s)
    frr = [c["frr"] for c in sorted(curve, key=lambda c: c["threshold"])]
    fa = [c["false_alarms"] for c in sorted(curve, key=lambda c: c["threshold"])]
    assert frr[-1] >= frr[0] and fa[-1] <= fa[0]   # stricter threshold: more misses, fewer alarms
    op = operating_point(curve, fa_per_hour=1.0)
    assert op is not None and op["false_alarms"] == 0 and op["frr"] <= 0.2


def test_eval_stream_writes_report_and_det(detector_model, long_recording, tmp_path, monkeypatch):
    import kws_okd.train.checkpoint as ckpt
    monkeypatch.setattr(ckpt, "load_model", lambda p: (detector_model, {"classes": CLASSES}))
    rep = evaluate_stream({"tiny": "unused.pt"}, long_recording["wav"], out_dir=tmp_path, config=CFG,
                          runtime="torch")
    assert (tmp_path / "det.png").stat().st_size > 1000
    assert "FRR" in (tmp_path / "stream_report.md").read_text()
    assert rep["models"]["tiny"]["at_fa_per_hour"]["frr"] <= 0.2


@pytest.fixture(scope="module")
def fast_detector(detector_model, tmp_path_factory):
    """The fast path (ONNX Runtime classifier + NumPy frames) of the test model, built and
    checked against PyTorch as ``kws-okd stream`` builds its cache entries."""
    from kws_okd.stream.fast import FastWindowModel, build_fast
    folder = tmp_path_factory.mktemp("fast")
    meta = build_fast(detector_model, CLASSES, folder)
    assert meta["posterior_max_abs_diff"] <= 1e-4 and meta["windows_checked"] == 101
    return FastWindowModel(folder)


def test_fast_path_detects_like_torch_and_ignores_block_size(detector_model, fast_detector, long_recording):
    audio = long_recording["audio"]
    ref, (t_ref, s_ref) = run_blocks(detector_model, audio, 1600)
    got, (t, s) = run_blocks(fast_detector, audio, 1600)
    assert len(ref) >= 8 and [d[:2] for d in got] == [d[:2] for d in ref]
    assert np.allclose([d.score for d in got], [d.score for d in ref], atol=1e-4)
    assert np.array_equal(t, t_ref) and np.abs(s - s_ref).max() <= 1e-4
    # Windows are classified in batches when a block completes several (one ONNX Runtime
    # call); the batch must not change a bit: one hop per block, odd blocks, whole file.
    eng = StreamEngine(fast_detector, CLASSES, CFG)
    assert eng.max_batch > 1
    for size in (640, 7919, len(audio)):
        d2, (t2, s2) = run_blocks(fast_detector, audio, size)
        assert d2 == got and np.array_equal(t2, t) and np.array_equal(s2, s)


def test_eval_stream_defaults_to_the_fast_path(detector_model, fast_detector, long_recording, monkeypatch):
    import kws_okd.stream.fast as fast
    import kws_okd.train.checkpoint as ckpt
    monkeypatch.setattr(ckpt, "load_model", lambda p: (detector_model, {"classes": CLASSES}))
    monkeypatch.setattr(fast, "load_fast_model", lambda p, cache_dir=None, log=None: fast_detector)
    reps = {rt: evaluate_stream({"tiny": "unused.pt"}, long_recording["wav"], config=CFG, **kw)
            for rt, kw in (("fast", {}), ("torch", dict(runtime="torch")))}
    assert reps["fast"]["runtime"] == "fast"
    ops = {rt: r["models"]["tiny"]["at_threshold"] for rt, r in reps.items()}
    assert ops["fast"] == ops["torch"] and ops["fast"]["hits"] >= 8


class FakeInputStream:
    """Stands in for sounddevice.InputStream: calls the callback with blocks of an array."""
    audio = None
    block = 512

    def __init__(self, samplerate, blocksize, channels, dtype, device=None, callback=None):
        assert samplerate == SR and channels == 1 and dtype == "float32"
        self.callback = callback

    def __enter__(self):
        for i in range(0, len(self.audio), self.block):
            blk = self.audio[i:i + self.block, None]
            self.callback(blk, len(blk), None, None)
        return self

    def __exit__(self, *exc):
        return False


def test_fake_microphone_drives_the_same_engine(detector_model, long_recording, monkeypatch):
    import sounddevice as sd
    audio = long_recording["audio"][:SR * 15]
    FakeInputStream.audio = audio
    monkeypatch.setattr(sd, "InputStream", FakeInputStream)
    eng = StreamEngine(detector_model, CLASSES, CFG)
    mic = eng.run(sources.mic_blocks(SR, 0.02, duration_s=len(audio) / SR))
    ref, _ = run_blocks(detector_model, audio, 4000)
    assert mic and mic == ref


def test_no_input_device_gives_one_clear_error(detector_model, monkeypatch, tmp_path, capsys):
    import sounddevice as sd

    def no_device(*a, **k):
        raise sd.PortAudioError("Error querying device -1")
    monkeypatch.setattr(sd, "InputStream", no_device)
    from kws_okd.train.checkpoint import save_model
    from kws_okd.models import build_model
    save_model(tmp_path / "m.pt", build_model("bcresnet1", 4), {"name": "bcresnet1"}, CLASSES)
    p = argparse.ArgumentParser()
    add_stream_commands(p.add_subparsers(dest="cmd"))
    a = p.parse_args(["stream", "--model", str(tmp_path / "m.pt"), "--mic"])
    with pytest.raises(sources.DeviceError, match="no audio input device") as e:
        a.fn(a)
    assert isinstance(e.value, KWSError) and "\n" not in str(e.value)


def test_stdin_and_resampled_file_sources(detector_model, long_recording, tmp_path):
    audio = long_recording["audio"][:SR * 10]
    pcm = (np.round(audio * 32768).clip(-32768, 32767).astype("<i2")).tobytes()
    ref, _ = run_blocks(detector_model, audio, 1000)
    eng = StreamEngine(detector_model, CLASSES, CFG)
    assert eng.run(sources.stdin_blocks(SR, SR, stream=io.BytesIO(pcm))) == ref
    # 44.1 kHz stereo FLAC: converted on the way in, the keywords are still found.
    from scipy.signal import resample_poly
    st = resample_poly(audio, 441, 160).astype(np.float32)
    sf.write(str(tmp_path / "x.flac"), np.stack([st, st], 1), 44100)
    eng = StreamEngine(detector_model, CLASSES, CFG)
    got = eng.run(sources.file_blocks(tmp_path / "x.flac", SR))
    assert eng.ring.total == pytest.approx(len(audio), abs=2)
    assert [d.keyword for d in got] == [d.keyword for d in ref]


def test_stateful_mode_steps_per_hop():
    class Energy:
        """A stateful toy: fires once the running energy of recent hops is high."""
        sample_rate = SR

        def reset(self):
            self.ema = 0.0

        def step(self, hop):
            self.ema = 0.5 * self.ema + 0.5 * float(np.mean(hop ** 2))
            return np.array([0.0, 20.0 * (self.ema > 0.01)])

    audio = np.zeros(SR * 3, dtype=np.float32)
    audio[SR:SR + 4000] = 0.5
    cfg = StreamConfig(hop_ms=20, smooth=1, threshold=0.9, keywords=["on"])
    dets = StreamEngine(Energy(), ["off", "on"], cfg).run([audio[i:i + 999] for i in range(0, len(audio), 999)])
    assert len(dets) == 1 and 1.0 < dets[0].time_s <= 1.06


def test_ring_buffer_and_resampler_invariance():
    r = RingBuffer(10)
    r.write(np.arange(7))
    r.write(np.arange(7, 25))
    assert r.read(15, 25).tolist() == list(range(15, 25))
    with pytest.raises(IndexError):
        r.read(14, 20)
    x = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    whole = StreamResampler(22050, SR)(x)
    rs = StreamResampler(22050, SR)
    parts = np.concatenate([rs(x[i:i + 123]) for i in range(0, len(x), 123)])
    assert np.array_equal(whole, parts)
    # The low-pass is scipy's firwin Kaiser design, without importing scipy.signal.
    from scipy.signal import firwin

    from kws_okd.stream.resample import kaiser_lowpass
    for n, cutoff in ((2 * 10 * 441 + 1, 1 / 441), (201, 1 / 3)):
        assert np.abs(kaiser_lowpass(n, cutoff) - firwin(n, cutoff, window=("kaiser", 5.0))).max() < 1e-15


def test_noisy_valid_keeps_the_words_and_adds_the_noise(long_recording, tmp_path):
    from kws_okd.errors import DataError
    from kws_okd.evaluate.long_audio import KEYWORD_SHARE, build_noisy_valid
    root = long_recording["root"]
    la = tmp_path / "long_audio"
    la.mkdir()
    from kws_okd.data.manifest import read_manifest
    write_manifest(la / "pool_valid.csv", read_manifest(root / "test.csv"))   # absolute paths
    compose_long_audio(la / "pool_valid.csv", la / "valid.wav", minutes=0.5, keywords=["kwa", "kwb"], seed=4,
                       keyword_share=KEYWORD_SHARE)
    noisy = build_noisy_valid(la, root / "noise", tmp_path / "out", 5.0)
    assert noisy == tmp_path / "out" / "valid_snr5.wav"
    assert noisy.with_suffix(".csv").read_text() == (la / "valid.csv").read_text()   # same words, same places
    clean, noisy_x = sf.read(str(la / "valid.wav"))[0], sf.read(str(noisy))[0]
    labels = read_labels(la / "valid.csv")
    speech = np.zeros(len(clean), bool)
    for lb in labels:
        speech[int(lb["start_s"] * SR):int(lb["end_s"] * SR)] = True
    # The composer may scale a mix down to keep its peak: take the speech's share by least
    # squares (the clean recording holds a -60 dB dither besides it), the rest is the noise.
    k = float(np.dot(noisy_x, clean) / np.dot(clean, clean))
    level = np.sqrt(np.mean((k * clean[speech]) ** 2))
    snr = 20 * np.log10(level / np.sqrt(np.mean((noisy_x - k * clean) ** 2)))
    assert 4.0 < snr < 6.0, snr
    (la / "valid.json").unlink()
    with pytest.raises(DataError, match="valid.json: no record of the valid recording"):
        build_noisy_valid(la, root / "noise", tmp_path / "out", 5.0)
