import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from kws_okd.data import real_speech as rs
from kws_okd.data.manifest import read_manifest
from kws_okd.data.words import GSC_V2_WORDS
from kws_okd.errors import AudioError, DataError

SR = 16000


def _wav(path, x, sr=SR, subtype="PCM_16"):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.asarray(x, dtype=np.float32), sr, subtype=subtype)
    return path


def _noise(seconds, amp=0.1, seed=0, sr=SR):
    return amp * np.random.default_rng(seed).standard_normal(int(seconds * sr))


@pytest.fixture
def folder(tmp_path):
    """Each file's window count by hand (1-s windows, 0.5-s hop, last one end-aligned)."""
    d = tmp_path / "voices"
    _wav(d / "speech.wav", _noise(0.6))                       # short: 1 padded window
    _wav(d / "sub" / "long.flac", _noise(2.2, seed=1))        # 0, .5, 1.0, 1.2 s: 4
    _wav(d / "silent.wav", np.zeros(int(1.5 * SR)))           # 2 windows, both silent: 0
    _wav(d / "half.wav", np.r_[np.zeros(SR), _noise(1.0, seed=2)])  # 0 s silent; .5, 1.0: 2
    _wav(d / "tel.wav", _noise(1.0, seed=3, sr=8000), sr=8000)  # resampled to 16 kHz: 1
    _wav(d / "quiet.wav", _noise(1.0, amp=1e-4))              # -80 dBFS: 0
    _wav(d / "yes.wav", _noise(1.0))                          # a GSC word: excluded
    _wav(d / "pack" / "Yessir.wav", _noise(1.0))              # a hedgewars "yes" line: excluded
    _wav(d / "overdriven.wav", 10 * _noise(1.0), subtype="FLOAT")  # broken: skipped
    (d / "corrupt.wav").write_bytes(b"RIFF\x00\x00 not audio at all")
    (d / "notes.txt").write_text("not audio")
    return d


def _load(folder, cache, **kw):
    kw.setdefault("holdout_frac", 0.0)
    return rs.load_real_windows([folder], cache, return_info=True, **kw)


def test_window_counts_and_shapes(folder, tmp_path):
    w = rs._windows(np.arange(8, dtype=np.float32) + 1, 10, 5)
    assert w.shape == (1, 10) and w[0, 0] == 0 and w[0, 1] == 1 and w[0, -1] == 0  # centred
    assert len(rs._windows(np.ones(10), 10, 5)) == 1
    x = np.arange(12.0)
    assert [list(r[:1]) for r in rs._windows(x, 10, 5)] == [[0.0], [2.0]]  # end-aligned tail
    assert len(rs._windows(np.ones(22), 10, 5)) == 4

    with pytest.warns(UserWarning) as rec:
        train, held, info = _load(folder, tmp_path / "cache")
    msgs = " ".join(str(r.message) for r in rec)
    assert "corrupt.wav" in msgs and "overdriven.wav" in msgs and "broken encoding" in msgs
    assert train.shape == (1 + 4 + 0 + 2 + 1 + 0, SR) and held.shape == (0, SR)
    assert train.dtype == torch.float32
    assert info["files"] == 6 and info["files_failed"] == 2 and info["files_excluded"] == 2
    assert info["windows"] == 8 and info["files_with_windows"] == 4
    assert info["per_folder"]["voices/sub"] == {"files": 1, "windows": 4, "seconds": 2.2}
    assert info["seconds"] == pytest.approx(0.6 + 2.2 + 1.5 + 2.0 + 1.0 + 1.0, abs=0.05)
    # Levels stay as recorded (no normalisation): the 0.1-RMS noise keeps its level.
    rms = train.pow(2).mean(dim=1).sqrt()
    assert 0.05 < float(rms.max()) < 0.11


def _tagged_folder(root, n=10):
    """File i holds the constant (i + 1) / 20 for 2.2 s, so every window names its file."""
    for i in range(n):
        _wav(root / f"f{i}.wav", np.full(int(2.2 * SR), (i + 1) / 20))
    return root


def _tags(w):
    return {int(round(float(v) * 20)) - 1 for v in w.mean(dim=1)}


def test_holdout_is_by_file_and_deterministic(tmp_path):
    d = _tagged_folder(tmp_path / "tags")
    train, held, info = _load(d, tmp_path / "c", holdout_frac=0.2, seed=3)
    assert len(train) == 8 * 4 and len(held) == 2 * 4  # whole files, 4 windows each
    assert _tags(train).isdisjoint(_tags(held)) and len(_tags(held)) == 2
    assert info["heldout_files"] == 2
    again = rs.load_real_windows([d], tmp_path / "c", holdout_frac=0.2, seed=3)
    assert torch.equal(again[0], train) and torch.equal(again[1], held)
    others = {frozenset(_tags(rs.load_real_windows([d], tmp_path / "c", holdout_frac=0.2,
                                                   seed=s)[1])) for s in range(6)}
    assert len(others) > 1  # the seed does pick the files


def test_holdout_by_folder(tmp_path):
    a, b = _tagged_folder(tmp_path / "a", 3), tmp_path / "b"
    for i in range(3, 6):
        _wav(b / f"f{i}.wav", np.full(int(2.2 * SR), (i + 1) / 20))
    train, held, info = rs.load_real_windows([a, b], tmp_path / "c", holdout_frac=0.5,
                                             holdout_by="folder", return_info=True)
    assert _tags(held) in ({0, 1, 2}, {3, 4, 5}) and _tags(train) | _tags(held) == set(range(6))
    assert len(info["heldout_folders"]) == 1
    for by in ("file", "folder"):  # the folders' order changes nothing, and reuses the cache
        one = rs.load_real_windows([a, b], tmp_path / "c", holdout_frac=0.5, holdout_by=by)
        two = rs.load_real_windows([b, a], tmp_path / "c", holdout_frac=0.5, holdout_by=by,
                                   return_info=True)
        assert all(torch.equal(x, y) for x, y in zip(one, two)) and two[2]["cache_hit"]


def test_cache_is_reused(folder, tmp_path, monkeypatch):
    with pytest.warns(UserWarning):
        first = _load(folder, tmp_path / "cache")
    assert not first[2]["cache_hit"]

    def no_decode(*a, **k):
        raise AssertionError("decoded again despite the cache")
    monkeypatch.setattr(rs, "_decode", no_decode)
    with pytest.warns(UserWarning, match="2 real-audio files skipped"):
        second = _load(folder, tmp_path / "cache")
    assert second[2]["cache_hit"] and torch.equal(first[0], second[0])
    assert len(list((tmp_path / "cache").iterdir())) == 1  # no temp file left behind


def test_cache_changes_with_files(folder, tmp_path):
    with pytest.warns(UserWarning):
        a = _load(folder, tmp_path / "cache")
    _wav(folder / "new.wav", _noise(0.5, seed=9))
    with pytest.warns(UserWarning):
        b = _load(folder, tmp_path / "cache")
    assert not b[2]["cache_hit"] and len(b[0]) == len(a[0]) + 1


@pytest.mark.parametrize("damage", ["truncated", "garbage", "foreign"])
def test_cache_rebuilt_after_kill(tmp_path, damage):
    d = _tagged_folder(tmp_path / "tags", 3)
    train, _, info = _load(d, tmp_path / "cache")
    cache = Path(info["cache"])
    data = cache.read_bytes()
    if damage == "truncated":  # a kill mid-write without the atomic rename
        cache.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        cache.write_bytes(b"\x00" * 100)
    else:  # loads fine, but is not what the key promises
        torch.save({"key": "x", "windows": torch.zeros(2, 5, dtype=torch.float16)}, cache)
    with pytest.warns(UserWarning, match="rebuilding"):
        again, _, info2 = _load(d, tmp_path / "cache")
    assert not info2["cache_hit"] and torch.equal(again, train)
    assert _load(d, tmp_path / "cache")[2]["cache_hit"]  # and the rebuilt one is good


def test_folder_errors_name_the_folder(tmp_path):
    empty = tmp_path / "empty"
    (empty / "deeper").mkdir(parents=True)
    (empty / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="no audio files") as e:
        rs.load_real_windows([empty], tmp_path / "c")
    assert str(empty) in str(e.value)

    missing = tmp_path / "missing"
    with pytest.raises(DataError, match="does not exist") as e:
        rs.load_real_windows([missing], tmp_path / "c")
    assert str(missing) in str(e.value)

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.wav").write_bytes(b"garbage")
    (bad / "b.ogg").write_bytes(b"")
    with pytest.warns(UserWarning), pytest.raises(DataError, match="could be decoded") as e:
        rs.load_real_windows([bad], tmp_path / "c")
    assert str(bad) in str(e.value)

    silent = tmp_path / "silent"
    _wav(silent / "z.wav", np.zeros(SR))
    with pytest.raises(DataError, match="no 1-s window louder") as e:
        rs.load_real_windows([silent], tmp_path / "c")
    assert str(silent) in str(e.value)

    with pytest.raises(DataError, match="no real-audio folder"):
        rs.load_real_windows([], tmp_path / "c")


def _two_bursts():
    """Noise 0.10-0.45 s, a 0.15-s pause... then a word 0.80-1.30 s (a tone with a
    0.08-s closure in it), then a click at 1.60 s; 1.8 s in all."""
    t = np.arange(int(1.8 * SR)) / SR
    x = 1e-4 * np.random.default_rng(0).standard_normal(len(t))
    x[(t >= 0.10) & (t < 0.45)] += _noise(0.35, amp=0.2)[: int(((t >= 0.10) & (t < 0.45)).sum())]
    word = ((t >= 0.80) & (t < 1.00)) | ((t >= 1.08) & (t < 1.30))
    x[word] += 0.3 * np.sin(2 * np.pi * 300 * t[word])
    x[(t >= 1.60) & (t < 1.62)] += 0.3  # 20-ms click after a long pause
    return x.astype(np.float32)


def test_last_word_is_the_second_burst():
    x = _two_bursts()
    segs = [(a / SR, b / SR) for a, b in rs.voiced_segments(x, SR)]
    assert len(segs) == 2  # the closure is bridged, the click dropped
    assert segs[0] == pytest.approx((0.10, 0.45), abs=0.011)
    assert segs[1] == pytest.approx((0.80, 1.30), abs=0.011)
    cut = rs.last_word(x, SR)
    start = int(round((0.80 - 0.05) * SR))
    assert len(cut) == pytest.approx(int((0.50 + 0.15) * SR), abs=0.011 * SR)
    assert np.array_equal(cut, x[start:start + len(cut)])
    trimmed = rs.trim_silence(x, SR)
    assert len(trimmed) / SR == pytest.approx(1.30 - 0.10 + 2 * 0.05, abs=0.03)
    assert len(rs.last_word(np.zeros(SR, np.float32), SR)) == 0


def _fake_packages(root):
    alsa = root / "alsa"
    t = np.arange(int(1.4 * 48000)) / 48000
    for name in ("Front_Left", "Rear_Right", "Front_Center"):
        x = np.where((t > 0.05) & (t < 0.45), 0.3 * np.sin(2 * np.pi * 200 * t), 0.0)
        x = x + np.where((t > 0.8) & (t < 1.3), 0.3 * np.sin(2 * np.pi * 250 * t), 0.0)
        _wav(alsa / f"{name}.wav", x, sr=48000)
    ast = root / "asterisk"
    t8 = np.arange(int(1.4 * 8000)) / 8000  # longer than 1 s of speech: cropped to 1 s
    _wav(ast / "digits" / "0.wav", np.where((t8 > 0.1) & (t8 < 1.3),
                                            0.2 * np.sin(2 * np.pi * 300 * t8), 0.0), sr=8000)
    no = np.where((t8 > 0.3) & (t8 < 0.7), 0.2 * np.sin(2 * np.pi * 300 * t8), 0.0)
    _wav(ast / "vm-no.wav", no, sr=8000)
    _wav(ast / "vm-for.wav", _noise(0.5, sr=8000), sr=8000)  # "for": not "four", never used
    return alsa, ast


def test_build_real_dev_from_fake_packages(tmp_path, monkeypatch, capsys):
    alsa, ast = _fake_packages(tmp_path / "pkgs")
    monkeypatch.setattr(rs, "ALSA_DIR", alsa)
    monkeypatch.setattr(rs, "ASTERISK_DIRS", (ast, tmp_path / "none"))
    classes = ["yes", "no", "left", "right", "zero"]
    csv = rs.build_real_dev(tmp_path / "out", classes, progress=True)
    rows = read_manifest(csv)
    got = {(r["ID"], r["word"], r["label"], r["domain"], r["spk_id"]) for r in rows}
    assert got == {("alsa/Front_Left", "left", 2, "real_alsa", "alsa-utils"),
                   ("alsa/Rear_Right", "right", 3, "real_alsa", "alsa-utils"),
                   ("asterisk/digits_0", "zero", 4, "real_asterisk", "asterisk-core-sounds-en"),
                   ("asterisk/vm-no", "no", 1, "real_asterisk", "asterisk-core-sounds-en")}
    for r in rows:
        x, sr = sf.read(r["wav"])
        assert sr == SR and x.shape == (SR,)
    left = sf.read(next(r["wav"] for r in rows if r["word"] == "left"))[0]
    # only the 250-Hz second "word", centred: the clip's middle is loud, its edges silent
    assert np.abs(left[:2000]).max() < 1e-3 and np.abs(left[7000:9000]).max() > 0.2
    spec = np.abs(np.fft.rfft(left))
    assert abs(np.argmax(spec) * SR / len(left) - 250) < 5
    assert rs.real_dev_summary(csv) == {"real_alsa": {"left": 1, "right": 1},
                                        "real_asterisk": {"zero": 1, "no": 1}}
    stamp = json.loads((tmp_path / "out" / "real_dev.json").read_text())
    assert 0.5 < stamp["cut_seconds"]["alsa/Front_Left"] < 0.7
    assert "cut" in capsys.readouterr().out

    def no_read(*a, **k):
        raise AssertionError("rebuilt although complete")
    monkeypatch.setattr(rs, "read_audio", no_read)
    assert rs.build_real_dev(tmp_path / "out", classes) == csv
    monkeypatch.undo()
    monkeypatch.setattr(rs, "ALSA_DIR", alsa)
    monkeypatch.setattr(rs, "ASTERISK_DIRS", (ast,))
    (tmp_path / "out" / "real_dev" / "asterisk" / "vm-no.wav").unlink()  # incomplete: rebuild
    assert len(read_manifest(rs.build_real_dev(tmp_path / "out", classes))) == 4
    assert (tmp_path / "out" / "real_dev" / "asterisk" / "vm-no.wav").exists()


def test_real_dev_12_class_maps_other_words_and_nato_prompts_to_unknown(tmp_path, monkeypatch):
    alsa, ast = _fake_packages(tmp_path / "pkgs")
    t8 = np.arange(8000) / 8000
    _wav(ast / "phonetic" / "k_p.wav", np.where((t8 > 0.2) & (t8 < 0.6), 0.2 * np.sin(2 * np.pi * 350 * t8), 0.0),
         sr=8000)
    monkeypatch.setattr(rs, "ALSA_DIR", alsa)
    monkeypatch.setattr(rs, "ASTERISK_DIRS", (ast,))
    classes = ["yes", "no", "left", "right", "_unknown_", "_silence_"]
    rows = read_manifest(rs.build_real_dev(tmp_path / "out", classes))
    got = {r["ID"]: (r["word"], r["label"]) for r in rows}
    assert got == {"alsa/Front_Left": ("left", 2), "alsa/Rear_Right": ("right", 3),
                   "asterisk/vm-no": ("no", 1), "asterisk/digits_0": ("_unknown_", 4),
                   "asterisk/phonetic_k_p": ("_unknown_", 4)}
    # Without an _unknown_ class the NATO prompt is not a clip, and "zero" is left out.
    rows = read_manifest(rs.build_real_dev(tmp_path / "out35", ["no", "left", "right"]))
    assert {r["ID"] for r in rows} == {"alsa/Front_Left", "alsa/Rear_Right", "asterisk/vm-no"}


def test_real_dev_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(rs, "ALSA_DIR", tmp_path / "no_alsa")
    monkeypatch.setattr(rs, "ASTERISK_DIRS", (tmp_path / "no_ast",))
    with pytest.raises(DataError, match="apt-get install .*alsa-utils asterisk-core-sounds-en-wav"):
        rs.build_real_dev(tmp_path / "out", list(GSC_V2_WORDS))
    alsa, ast = _fake_packages(tmp_path / "pkgs")
    monkeypatch.setattr(rs, "ALSA_DIR", alsa)
    with pytest.raises(DataError, match="class list"):
        rs.build_real_dev(tmp_path / "out", ["cat", "dog"])


def test_reserved_sources_never_training_audio(tmp_path, monkeypatch):
    alsa, _ = _fake_packages(tmp_path / "pkgs")
    monkeypatch.setattr(rs, "_RESERVED", (alsa,))
    with pytest.raises(DataError, match="excluded"):
        rs.load_real_windows([alsa], tmp_path / "c")


def test_installed_packages():
    """The real Debian data, where installed (tools/setup_system.sh installs it)."""
    if not (rs.ALSA_DIR.is_dir() or rs.ASTERISK_DIRS[0].is_dir()) or not rs.KLETTRES_ROOT.is_dir():
        pytest.skip("alsa-utils / asterisk-core-sounds-en-wav / klettres-data not installed")
    folders = rs.default_real_audio_folders()
    assert len(folders) >= 10 and all(f.parent == rs.KLETTRES_ROOT for f in folders)
    # The keyword-like list names real files (a typo there would let a keyword through).
    for p in rs._KEYWORD_LIKE:
        assert (rs.KLETTRES_ROOT / f"{p}.ogg").is_file(), p
    for name in rs.ALSA_CLIPS:
        if rs.ALSA_DIR.is_dir():
            x = rs.read_audio(rs.ALSA_DIR / name, SR, warn=False)
            assert 0.2 <= len(rs.last_word(x, SR)) / SR <= 0.9, name


def test_audio_error_is_what_decode_raises(tmp_path):
    with pytest.raises(AudioError):
        rs._decode(tmp_path / "nope.wav", SR, SR, SR // 2, -50.0)
