"""The default streaming path (``kws-okd stream --model``: ONNX Runtime classifier +
NumPy frames, cached per model file) end to end on a BC-ResNet-1 student: detections
equal to the PyTorch model run on every whole window, the cache, start-up without
PyTorch, a raw-waveform model falling back to PyTorch, and the microphone demo on a
virtual ALSA capture device (PortAudio's real stream API reading a file)."""
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from kws_okd.cli import main
from kws_okd.errors import ConfigError
from kws_okd.stream import sources
from kws_okd.stream.engine import Detection, detect_trace
from kws_okd.stream.meter import LevelMeter

SR = 16000
CLASSES = ["_silence_", "_unknown_", "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
KEYWORDS = CLASSES[2:]
LINE = re.compile(r"^\s*(\d+\.\d\d) s  (\S+)\s+(\d\.\d{3})$")
ALSA_CONF = Path("/usr/share/alsa/alsa.conf")


def synthetic(seconds: float, seed: int) -> np.ndarray:
    """Noise at drifting levels with chirps every 1-2 s (word-like events)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    level = 10 ** (np.interp(np.arange(n), np.linspace(0, n, 6), rng.uniform(-55, -25, 6)) / 20)
    x = rng.standard_normal(n) * level
    t = 0.4
    while t < seconds - 0.8:
        d = rng.uniform(0.3, 0.6)
        tt = np.arange(int(d * SR)) / SR
        f0, f1 = rng.uniform(200, 3000, 2)
        i = int(t * SR)
        x[i:i + len(tt)] += (np.sin(2 * np.pi * (f0 * tt + 0.5 * (f1 - f0) / d * tt ** 2))
                             * np.hanning(len(tt)) * rng.uniform(0.05, 0.5))
        t += d + rng.uniform(0.6, 1.5)
    return (x / max(1.0, np.abs(x).max() / 0.95)).astype(np.float32)


BCRESNET1 = {"name": "bcresnet1"}


def calibrated_student(audio: np.ndarray, model_cfg: dict = BCRESNET1):
    """A BC-ResNet (``model_cfg`` as a model file stores it; BC-ResNet-1 by default) with
    random He-normal weights and batch-norm statistics measured on ``audio`` (forward
    passes, no training): its posteriors follow the input."""
    from kws_okd.models import build_model
    torch.manual_seed(0)
    model = build_model(**model_cfg, num_classes=len(CLASSES))
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            m.momentum = None
            m.reset_running_stats()
    rng = np.random.default_rng(0)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            starts = rng.integers(0, len(audio) - SR, 24)
            model(torch.from_numpy(np.stack([audio[s:s + SR] for s in starts])))
        model.backbone.head[-1].weight.mul_(10.0)
    return model.eval()


def full_window_scores(model, audio, hop=SR // 50, smooth=5):
    """PyTorch ``model(window)`` on every whole 1 s window, averaged over ``smooth``
    windows: the reference the streaming paths must reproduce."""
    starts = np.arange(0, len(audio) - SR + 1, hop)
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            post = torch.cat([torch.softmax(model(torch.from_numpy(np.stack([audio[s:s + SR] for s in chunk]))), -1)
                              for chunk in np.array_split(starts, -(-len(starts) // 64))]).numpy().astype(np.float64)
    finally:
        torch.set_num_threads(prev)
    smoothed = np.stack([post[max(0, i - smooth + 1):i + 1].mean(0) for i in range(len(post))])
    kw = [CLASSES.index(k) for k in KEYWORDS]
    return (starts + SR) / SR, smoothed[:, kw]


def parse(stdout: str) -> list[tuple]:
    out = []
    for line in stdout.splitlines():
        m = LINE.match(line)
        assert m, f"stdout carries only detections, got {line!r}"
        out.append((float(m[1]), m[2], float(m[3])))
    return out


def make_student(root: Path, model_cfg: dict = BCRESNET1) -> dict:
    """A calibrated student saved in ``root``, its test clip, its warmed fast-path cache, and
    the detections of its full-window PyTorch model at a threshold far from every score."""
    from kws_okd.stream.fast import load_fast_model
    from kws_okd.train.checkpoint import save_model
    audio = synthetic(8.0, seed=0)
    model = calibrated_student(audio, model_cfg)
    save_model(root / "model.pt", model, model_cfg, CLASSES)
    sf.write(str(root / "clip.wav"), audio, SR, subtype="FLOAT")
    fast = load_fast_model(root / "model.pt")   # warms the cache next to the model
    times, scores = full_window_scores(model, audio)
    # A threshold that fires a few times, far from every smoothed score, so the
    # comparison is not decided by float rounding.
    cands = np.quantile(scores.max(axis=1), np.linspace(0.9, 0.99, 30))
    thr = float(max(cands, key=lambda c: np.abs(scores - c).min()))
    assert np.abs(scores - thr).min() > 1e-4
    ref = detect_trace(times, scores, KEYWORDS, [thr] * len(KEYWORDS), 1.0)
    assert len(ref) >= 2
    return dict(root=root, model=root / "model.pt", wav=root / "clip.wav", audio=audio, fast=fast,
                torch_model=model, thr=thr, ref=ref)


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    return make_student(tmp_path_factory.mktemp("student"))


def stream_args(student, *extra):
    return ["stream", "--model", str(student["model"]), "--threshold", f"{student['thr']:.9f}",
            "--keywords", ",".join(KEYWORDS), *extra]


def assert_streams_like_full_window_model(student, capsys):
    assert main(stream_args(student, "--wav", str(student["wav"]))) == 0
    out, err = capsys.readouterr()
    got = parse(out)
    assert "onnxruntime" in err and "preparing" not in err   # the fast path, from the cache
    assert [g[:2] for g in got] == [(round(d.time_s, 2), d.keyword) for d in student["ref"]]
    assert np.allclose([g[2] for g in got], [d.score for d in student["ref"]], atol=6e-4)
    assert student["fast"].meta["posterior_max_abs_diff"] <= 1e-4


def test_default_stream_detections_equal_the_full_window_torch_model(student, capsys):
    assert_streams_like_full_window_model(student, capsys)


def test_a_student_on_20ms_frames_streams_like_its_full_window_model(tmp_path, capsys):
    """``student=bcresnet2_20ms``: 40 ms windows at a 20 ms hop (51 frames a second) go
    through the same NumPy framing and ONNX classifier as BC-ResNet-1's 10 ms frames."""
    from omegaconf import OmegaConf

    from kws_okd.train.run import model_config
    recipe = OmegaConf.load(Path(__file__).parents[1] / "recipes/kws/student/bcresnet2_20ms.yaml")
    st = make_student(tmp_path, model_config(recipe))
    with torch.no_grad():
        assert st["torch_model"].frontend(torch.zeros(1, SR)).shape == (1, 40, 51)
    assert_streams_like_full_window_model(st, capsys)


def test_traces_from_worker_processes_equal_those_made_here(student, tmp_path):
    """The report scores long recordings in worker processes: on the fast path their
    traces are those of this process to the bit; a PyTorch-only model's agree closely."""
    from kws_okd.evaluate.long_audio import trace, trace_files
    from kws_okd.models import build_model
    from kws_okd.stream.engine import StreamConfig
    from kws_okd.train.checkpoint import save_model
    save_model(tmp_path / "raw.pt", build_model("m3", len(CLASSES)), {"name": "m3"}, CLASSES)
    other = tmp_path / "other.wav"
    sf.write(str(other), student["audio"][::-1].copy(), SR, subtype="FLOAT")
    cfg = StreamConfig()
    pairs = [(student["model"], student["wav"]), (student["model"], other), (tmp_path / "raw.pt", other)]
    here, there = trace_files(pairs, cfg, jobs=1), trace_files(pairs, cfg, jobs=2)
    assert list(here) == list(there) == [(str(m), str(w)) for m, w in pairs]
    for k, (times, scores, keywords, dur) in here.items():
        assert np.array_equal(times, there[k][0]) and keywords == there[k][2] == KEYWORDS and dur == 8.0
        if k[0] == str(student["model"]):
            assert np.array_equal(scores, there[k][1])
        else:
            assert np.allclose(scores, there[k][1], atol=1e-5)
    first = (str(student["model"]), str(student["wav"]))
    assert np.array_equal(here[first][1], trace(student["fast"], CLASSES, student["wav"], cfg)[1])
    assert len(here[first][0]) == 1 + (8 * SR - SR) // (SR // 50)


def test_cache_entries_are_checked_keyed_by_the_model_file_and_atomic(student, tmp_path, monkeypatch):
    import kws_okd.stream.fast as fast
    from kws_okd.train.checkpoint import save_model
    monkeypatch.delenv("KWS_OKD_CACHE", raising=False)   # entries next to the model, as by default
    model = tmp_path / "m.pt"
    model.write_bytes(student["model"].read_bytes())
    logs = []
    a = fast.load_fast_model(model, log=logs.append)
    b = fast.load_fast_model(model, log=logs.append)
    assert len(logs) == 1 and a.folder == b.folder and a.folder.parent == tmp_path / ".kws-okd-cache"
    entries = lambda: sorted(p.name for p in (tmp_path / ".kws-okd-cache").iterdir())  # noqa: E731
    assert entries() == [a.folder.name]
    # Another model file at the same path gets its own entry.
    other = calibrated_student(student["audio"][::-1].copy())
    save_model(model, other, BCRESNET1, CLASSES)
    c = fast.load_fast_model(model, log=logs.append)
    assert len(logs) == 2 and c.folder != a.folder and len(entries()) == 2
    # A damaged entry is rebuilt, not trusted.
    (c.folder / "classifier.onnx").write_bytes(b"not a model")
    d = fast.load_fast_model(model, log=logs.append)
    assert d.folder == c.folder and any("rebuilding" in m for m in logs) and len(entries()) == 2
    # An entry that fails the check against PyTorch is never published (nor left half-built).
    save_model(model, calibrated_student(student["audio"][SR:]), BCRESNET1, CLASSES)
    monkeypatch.setattr(fast, "TOLERANCE", -1.0)
    with pytest.raises(ConfigError, match="differs from PyTorch"):
        fast.load_fast_model(model)
    assert len(entries()) == 2


def test_warm_start_does_not_import_pytorch(student):
    """Start-up (process start to first hop) is mostly imports: with the cache warm,
    `kws-okd stream` must not load PyTorch, torchaudio, SciPy's signal module or the
    training stack."""
    code = ("import sys\nfrom kws_okd.cli import main\n"
            f"rc = main({stream_args(student, '--wav', str(student['wav']))!r})\n"
            "heavy = [m for m in ('torch', 'torchaudio', 'scipy.signal', 'speechbrain', 'hydra', "
            "'matplotlib', 'kws_okd.data.shift', 'kws_okd.train.checkpoint') if m in sys.modules]\n"
            "print('HEAVY', heavy, file=sys.stderr)\nsys.exit(rc)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, KWS_OKD_FIRST_HOP="1"))
    assert p.returncode == 0, p.stderr
    assert "HEAVY []" in p.stderr and "first hop processed" in p.stderr
    assert [g[:2] for g in parse(p.stdout)] == [(round(d.time_s, 2), d.keyword) for d in student["ref"]]


def test_a_model_file_carries_its_checked_entry_and_a_copy_alone_starts_without_pytorch(student, tmp_path):
    import zipfile

    import kws_okd.stream.fast as fast
    from kws_okd.train.checkpoint import load_model, set_stream_thresholds
    made, copied = tmp_path / "made", tmp_path / "copied"
    made.mkdir()
    copied.mkdir()
    model = made / "model.pt"
    model.write_bytes(student["model"].read_bytes())
    assert fast.embedded_entry(model) is None
    a = fast.load_fast_model(model, embed=True)
    carried = fast.embedded_entry(model)
    assert sorted(carried) == sorted(fast.ENTRY_FILES)
    assert carried["classifier.onnx"] == (a.folder / "classifier.onnx").read_bytes()
    assert a.folder.name == f"stream-{fast.model_digest(model)[:20]}"   # named after the new file
    torch_model, blob = load_model(model)                # torch.load ignores the extra records
    assert blob["classes"] == CLASSES
    with pytest.raises(ConfigError, match="already carries a fast-stream entry"):
        fast.embed_fast_entry(model, a.folder)
    # A file whose entry is cached but not inside it gets it embedded too.
    late = made / "late.pt"
    late.write_bytes(student["model"].read_bytes())
    fast.load_fast_model(late)
    assert fast.embedded_entry(late) is None
    fast.load_fast_model(late, embed=True)
    assert fast.embedded_entry(late)["classifier.onnx"] == carried["classifier.onnx"]
    # model.pt alone, elsewhere: no cache, no PyTorch, no export; detections as before.
    (copied / "model.pt").write_bytes(model.read_bytes())
    args = ["stream", "--model", str(copied / "model.pt"), "--threshold", f"{student['thr']:.9f}",
            "--keywords", ",".join(KEYWORDS), "--wav", str(student["wav"])]
    code = ("import sys\nfrom kws_okd.cli import main\n"
            f"rc = main({args!r})\n"
            "print('HEAVY', [m for m in ('torch', 'kws_okd.train.checkpoint') if m in sys.modules], "
            "file=sys.stderr)\nsys.exit(rc)\n")
    env = {k: v for k, v in os.environ.items() if k != "KWS_OKD_CACHE"}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 0, p.stderr
    assert "HEAVY []" in p.stderr and "preparing" not in p.stderr
    assert [g[:2] for g in parse(p.stdout)] == [(round(d.time_s, 2), d.keyword) for d in student["ref"]]
    assert len(list((copied / ".kws-okd-cache").iterdir())) == 1
    # Rewritten weights or thresholds drop the entry (set_stream_thresholds saves a new file) ...
    set_stream_thresholds(copied / "model.pt", {"yes": 0.5})
    assert fast.embedded_entry(copied / "model.pt") is None
    # ... and an entry whose model records changed under it is not trusted.
    with zipfile.ZipFile(model) as z:
        records = {i.filename: z.read(i.filename) for i in z.infolist()}
    pkl = next(n for n in records if n.endswith("/data.pkl"))
    records[pkl] = records[pkl].replace(b"bcresnet1", b"bcresnetX")
    with zipfile.ZipFile(tmp_path / "edited.pt", "w") as z:
        for n, data in records.items():
            z.writestr(n, data)
    assert fast.embedded_entry(tmp_path / "edited.pt") is None


def test_raw_waveform_model_streams_with_pytorch(tmp_path, capsys):
    from kws_okd.models import build_model
    from kws_okd.train.checkpoint import save_model
    save_model(tmp_path / "raw.pt", build_model("m3", len(CLASSES)), {"name": "m3"}, CLASSES)
    sf.write(str(tmp_path / "x.wav"), synthetic(1.5, seed=3), SR)
    assert main(["stream", "--model", str(tmp_path / "raw.pt"), "--wav", str(tmp_path / "x.wav")]) == 0
    err = capsys.readouterr().err
    assert "no fast streaming path" in err and "torch;" in err and "1.5 s of audio" in err
    assert not list((tmp_path / ".kws-okd-cache").glob("*"))


def test_level_meter_draws_in_place():
    buf, now = io.StringIO(), [0.0]
    meter = LevelMeter(buf, width=20, floor_db=-60, interval_s=0.1, clock=lambda: now[0])
    sine = np.sin(2 * np.pi * 440 * np.arange(1600) / SR).astype(np.float32)
    meter.update(sine)                    # full-scale sine: -3 dBFS, bar 19/20
    now[0] = 0.05
    meter.update(sine)                    # too soon: not redrawn
    now[0] = 0.2
    meter.update(np.zeros(1600, np.float32))  # redrawn with the level of both blocks: -6 dBFS
    draws = buf.getvalue().split("\r")[1:]
    assert draws[0] == "level   -3.0 dBFS |" + "#" * 19 + "." + "|"
    assert draws[1] == "level   -6.0 dBFS |" + "#" * 18 + ".." + "|"
    assert "\n" not in buf.getvalue()
    meter.clear()
    assert buf.getvalue().endswith("\r" + " " * len(draws[1]) + "\r")
    assert meter.render(-np.inf).startswith("level   -inf dBFS |....")


def test_meter_goes_to_stderr_and_leaves_stdout_to_detections(student, capsys):
    assert main(stream_args(student, "--wav", str(student["wav"]), "--meter")) == 0
    out, err = capsys.readouterr()
    assert len(parse(out)) == len(student["ref"])
    assert "\rlevel " in err and " dBFS |" in err


# -- the microphone: PortAudio's real stream API on a virtual ALSA capture device -----------

def _alsa_env(tmp_path: Path, audio: np.ndarray | None) -> dict:
    """ALSA configuration with a capture PCM ``kwsmic`` that reads ``audio`` (float32
    raw) from a file through the ``file`` plugin over a ``null`` device: no sound card
    or kernel module needed, and it delivers samples as fast as they are read."""
    if not ALSA_CONF.exists():
        pytest.skip("no ALSA configuration on this machine")
    files = [str(ALSA_CONF)]
    if audio is not None:
        raw = tmp_path / "mic.raw"
        audio.astype("<f4").tofile(raw)
        conf = tmp_path / "asound.conf"
        conf.write_text('pcm.kwsmic {\n  type file\n  slave.pcm { type null }\n  file "/dev/null"\n'
                        f'  infile "{raw}"\n  format "raw"\n}}\n')
        files.append(str(conf))
    return dict(os.environ, ALSA_CONFIG_PATH=":".join(files))


def _input_devices(env) -> list[str]:
    code = ("import sounddevice as sd\n"
            "print('\\n'.join(d['name'] for d in sd.query_devices() if d['max_input_channels'] > 0))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    if p.returncode != 0:
        pytest.skip(f"sounddevice/PortAudio unusable here: {p.stderr.strip()[-200:]}")
    return p.stdout.split()


def _cli(args, env, timeout=120):
    p = subprocess.run([sys.executable, "-m", "kws_okd.cli", *args], capture_output=True, timeout=timeout,
                       env=env)
    # Decoded by hand: text mode would turn the meter's carriage returns into newlines.
    return subprocess.CompletedProcess(p.args, p.returncode, p.stdout.decode(), p.stderr.decode())


def test_microphone_on_a_virtual_alsa_device(student, tmp_path):
    env = _alsa_env(tmp_path, student["audio"])
    if "kwsmic" not in _input_devices(env):
        pytest.skip("PortAudio does not list ALSA plugin devices here")
    p = _cli(stream_args(student, "--mic", "--device", "kwsmic", "--seconds", "8", "--meter"), env)
    assert p.returncode == 0, p.stderr
    got = parse(p.stdout)
    assert [g[:2] for g in got] == [(round(d.time_s, 2), d.keyword) for d in student["ref"]]
    assert "\rlevel " in p.stderr and "8.0 s of audio" in p.stderr and "Traceback" not in p.stderr


def _one_error_line(p) -> str:
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("kws-okd: error:")]
    assert len(errors) == 1, p.stderr
    return errors[0]


def test_microphone_errors_are_one_clear_line(student, tmp_path):
    env = _alsa_env(tmp_path, student["audio"])
    if "kwsmic" not in _input_devices(env):
        pytest.skip("PortAudio does not list ALSA plugin devices here")
    # A rate the device refuses (the null device takes every usual rate, not 123 Hz).
    err = _one_error_line(_cli(stream_args(student, "--mic", "--device", "kwsmic", "--rate", "123"), env))
    assert "input device 'kwsmic' does not support 123 Hz" in err and "try --rate" in err
    err = _one_error_line(_cli(stream_args(student, "--mic", "--device", "kwsmic", "--block-ms", "0"), env))
    assert "--block-ms 0: must be positive" in err
    err = _one_error_line(_cli(stream_args(student, "--mic", "--device", "no-such-mic"), env))
    assert "no audio input device could be opened" in err and "no-such-mic" in err
    # No input device at all.
    bare = _alsa_env(tmp_path, None)
    if _input_devices(bare):
        pytest.skip("this machine has real input devices")
    err = _one_error_line(_cli(stream_args(student, "--mic"), bare))
    assert "no audio input device could be opened" in err and "--wav" in err


class RateLimitedStream:
    """sounddevice.InputStream of a device that only runs at ``rate``. A sounddevice-level
    fake: ALSA's virtual PCMs convert or accept every usual rate, so a device that
    refuses 16 kHz but works at its own default cannot be made without hardware."""
    rate, audio = 48000, None

    def __init__(self, samplerate, blocksize, channels, dtype, device=None, callback=None):
        import sounddevice as sd
        if samplerate != self.rate:
            raise sd.PortAudioError("Invalid sample rate [PaErrorCode -9997]")
        self.callback, self.blocksize = callback, blocksize

    def __enter__(self):
        for i in range(0, len(self.audio), self.blocksize):
            blk = self.audio[i:i + self.blocksize, None]
            self.callback(blk, len(blk), None, None)
        return self

    def __exit__(self, *exc):
        return False


def test_microphone_falls_back_to_the_device_rate(monkeypatch):
    import sounddevice as sd
    t = np.arange(48000) / 48000
    RateLimitedStream.audio = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    monkeypatch.setattr(sd, "InputStream", RateLimitedStream)
    monkeypatch.setattr(sd, "query_devices", lambda device=None, kind=None: {
        "name": "usb mic", "default_samplerate": float(RateLimitedStream.rate)})
    y = np.concatenate(list(sources.mic_blocks(SR, 0.02, duration_s=1.0)))
    assert abs(len(y) - SR) <= 10                       # 48 kHz in, resampled to 16 kHz
    spectrum = np.abs(np.fft.rfft(y[1000:-1000]))
    assert abs(np.argmax(spectrum) * SR / len(y[1000:-1000]) - 1000) < 5
    # A device that refuses both the model's rate and its own default: one clear message.
    monkeypatch.setattr(RateLimitedStream, "rate", 12345)
    monkeypatch.setattr(sd, "query_devices", lambda device=None, kind=None: {
        "name": "usb mic", "default_samplerate": 48000.0})
    with pytest.raises(sources.DeviceError, match="'usb mic' supports neither 16000 Hz nor its default 48000 Hz"):
        sources.mic_blocks(SR, 0.02)
    with pytest.raises(sources.DeviceError, match="does not support 22050 Hz"):
        sources.mic_blocks(SR, 0.02, rate=22050)


def test_detection_tuple_is_what_the_cli_prints(student):
    """The fast engine's Detection list (not just the CLI text) equals the reference."""
    from kws_okd.stream.engine import StreamConfig, StreamEngine
    cfg = StreamConfig(hop_ms=20, smooth=5, threshold=student["thr"], keywords=KEYWORDS)
    audio = student["audio"]
    got = StreamEngine(student["fast"], CLASSES, cfg).run([audio[i:i + 320] for i in range(0, len(audio), 320)])
    assert all(isinstance(d, Detection) for d in got)
    assert [(d.time_s, d.keyword) for d in got] == [(d.time_s, d.keyword) for d in student["ref"]]
    assert np.allclose([d.score for d in got], [d.score for d in student["ref"]], atol=1e-4)


@pytest.mark.parametrize("runtime", ["fast", "torch"])
def test_stream_uses_the_thresholds_stored_in_the_model(student, tmp_path, capsys, runtime):
    import shutil

    from kws_okd.train.checkpoint import set_stream_thresholds
    model = tmp_path / "model.pt"
    shutil.copy(student["model"], model)
    # Stored: the reference threshold for every keyword but one, which can never fire.
    stored = {k: student["thr"] for k in KEYWORDS}
    stored[student["ref"][0].keyword] = 0.9999999
    set_stream_thresholds(model, stored, target_fa_per_hour=1.0)
    args = ["stream", "--model", str(model), "--keywords", ",".join(KEYWORDS), "--wav", str(student["wav"]),
            "--runtime", runtime, "--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 0
    out, err = capsys.readouterr()
    want = [(round(d.time_s, 2), d.keyword) for d in detect_trace(
        *full_window_scores(student["torch_model"], student["audio"]), KEYWORDS,
        [stored[k] for k in KEYWORDS], 1.0)]
    assert [g[:2] for g in parse(out)] == want and len(want) < len(student["ref"])
    assert "thresholds stored in the model" in err
    # A threshold on the command line wins over the stored ones.
    assert main(args + ["--threshold", f"{student['thr']:.9f}"]) == 0
    out, err = capsys.readouterr()
    assert len(parse(out)) == len(student["ref"]) and "stored in the model" not in err
