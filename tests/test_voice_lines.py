"""The real-speech validation recording of a game's voice lines
(kws_okd/evaluate/voice_lines.py), on pack folders the tests write: tone bursts in Ogg
Vorbis stand in for the lines, stereo at 44.1 kHz as hedgewars-data ships them."""
import json
import os

import numpy as np
import pytest
import soundfile as sf

from kws_okd.data.words import KEYWORDS_12
from kws_okd.errors import ConfigError, DataError
from kws_okd.evaluate.voice_lines import (KEYWORD_LINES, LEFT_OUT, build_valid_real, build_valid_real_keywords,
                                          voice_lines)
from kws_okd.stream.longaudio import read_labels

SR = 44100


def _line(path, seconds=1.0, on_s=0.2, off_s=0.8, hz=300.0):
    x = np.zeros((int(seconds * SR), 2), dtype=np.float32)
    t = np.arange(int((off_s - on_s) * SR)) / SR
    x[int(on_s * SR):int(on_s * SR) + len(t)] = 0.3 * np.sin(2 * np.pi * hz * t)[:, None]
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, SR, format="OGG", subtype="VORBIS")


@pytest.fixture
def voices(tmp_path):
    root = tmp_path / "voices"
    for pack in ("Default", "Pirate"):
        for stem in ("Hello", "Takecover", "Yessir", "Nooo", "Ooff2", "Hurry"):
            _line(root / pack / f"{stem}.ogg")
    _line(root / "Pirate" / "Leavemealone.ogg", seconds=2.0, on_s=0.5, off_s=1.5)
    (root / "Pirate" / "notes.txt").write_text("not a line")
    return root


def test_lines_named_for_a_command_word_are_left_out(voices):
    lines = voice_lines(voices)
    assert [f"{p.parent.name}/{p.stem}" for p in lines] == [
        "Default/Hello", "Default/Takecover", "Pirate/Hello", "Pirate/Leavemealone", "Pirate/Takecover"]
    # Every reason names a command word of the 12-class task.
    assert set(LEFT_OUT.values()) <= set(KEYWORDS_12)


def test_missing_or_empty_package_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"missing; .*hedgewars-data.*apt-get install"):
        voice_lines(tmp_path / "nowhere")
    (tmp_path / "empty" / "Default").mkdir(parents=True)
    with pytest.raises(DataError, match=r"empty: no voice lines .*hedgewars-data"):
        voice_lines(tmp_path / "empty")
    # The builder reports an absent package as "nothing to build", not an error.
    assert build_valid_real(tmp_path / "out", KEYWORDS_12, root=tmp_path / "nowhere") is None


def test_recording_holds_every_line_once_and_no_keyword(voices, tmp_path):
    wav = build_valid_real(tmp_path / "out", KEYWORDS_12, root=voices)
    assert wav.name == "valid_real.wav"
    labels = read_labels(wav.with_suffix(".csv"))
    info = json.loads(wav.with_suffix(".json").read_text())
    # One _unknown_ segment per line, nothing to detect: every detection is a false alarm.
    assert sorted(lb["source"] for lb in labels) == sorted(
        f"hedgewars/{p.parent.name}/{p.stem}" for p in voice_lines(voices))
    assert {(lb["kind"], lb["word"], lb["domain"]) for lb in labels} == {("filler", "_unknown_", "real_hedgewars")}
    assert info["lines"] == 5 and info["n_keywords"] == 0
    # Each segment is its line's tone (0.6 s; the long line's 1.0 s), read at 16 kHz.
    lengths = sorted(round(lb["end_s"] - lb["start_s"], 1) for lb in labels)
    assert lengths == [0.6, 0.6, 0.6, 0.6, 1.0]
    x, sr = sf.read(wav)
    assert sr == 16000 and x.ndim == 1
    # Five lines, 6 s of audio (one line is 2 s), 5 pauses of 0.25-0.75 s, 1 s of tail.
    assert 6.0 + 5 * 0.25 + 1 <= len(x) / sr <= 6.0 + 5 * 0.75 + 1 + 0.01
    segs = sorted((lb["start_s"], lb["end_s"]) for lb in labels)
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(segs, segs[1:]))


def test_recording_is_reused_until_a_line_or_a_setting_changes(voices, tmp_path):
    out = tmp_path / "out"
    wav = build_valid_real(out, KEYWORDS_12, root=voices)
    first = wav.stat().st_mtime_ns
    assert build_valid_real(out, KEYWORDS_12, root=voices).stat().st_mtime_ns == first
    # A package update changes a file: rebuilt.
    line = voices / "Default" / "Hello.ogg"
    _line(line, seconds=1.5)
    os.utime(line, ns=(line.stat().st_atime_ns, line.stat().st_mtime_ns + 10**9))
    assert build_valid_real(out, KEYWORDS_12, root=voices).stat().st_mtime_ns != first
    second = wav.stat().st_mtime_ns
    # Another seed (another order) or a cut: rebuilt, and the cut keeps fewer lines.
    build_valid_real(out, KEYWORDS_12, root=voices, max_minutes=3 / 60)
    assert wav.stat().st_mtime_ns != second
    assert json.loads(wav.with_suffix(".json").read_text())["lines"] < 5


def test_installed_package_names_every_left_out_line():
    """On the real package (tools/setup_system.sh installs it): each left-out name is a
    line of every pack (a typo would let a keyword line through), and the rest remain."""
    from kws_okd.evaluate.voice_lines import HEDGEWARS_VOICES
    if not HEDGEWARS_VOICES.is_dir():
        pytest.skip("hedgewars-data not installed")
    packs = sorted(d for d in HEDGEWARS_VOICES.iterdir() if d.is_dir())
    assert len(packs) >= 10
    for pack in packs:
        stems = {p.stem.lower() for p in pack.glob("*.ogg")}
        assert {"yessir", "nooo", "enemydown", "comeonthen"} <= stems, pack
    lines = voice_lines()
    assert 600 <= len(lines) and not {p.stem.lower() for p in lines} & set(LEFT_OUT)


def test_keyword_lines_recording_holds_one_event_per_line(voices, tmp_path):
    wav = build_valid_real_keywords(tmp_path / "out", KEYWORDS_12, root=voices)
    assert wav.name == "valid_real_keywords.wav"
    labels = read_labels(wav.with_suffix(".csv"))
    events = sorted((lb["source"], lb["word"]) for lb in labels if lb["kind"] == "keyword")
    # Yessir and Nooo of both packs; the other lines and the left-out Ooff2 / Hurry are not in it.
    assert events == [("hedgewars/Default/Nooo", "no"), ("hedgewars/Default/Yessir", "yes"),
                      ("hedgewars/Pirate/Nooo", "no"), ("hedgewars/Pirate/Yessir", "yes")]
    fillers = [lb for lb in labels if lb["kind"] == "filler"]
    assert len(fillers) == 4
    for f in fillers:   # the event spans the line's speech (the 0.6 s tone): tolerance 1.5 s either side
        ev = next(lb for lb in labels if lb["kind"] == "keyword" and lb["source"] == f["source"])
        assert (ev["start_s"], ev["end_s"]) == (f["start_s"], f["end_s"])
        assert round(f["end_s"] - f["start_s"], 1) == 0.6
    x, sr = sf.read(wav)   # 4 one-second lines, 4 pauses of 1-2 s, 1 s of tail
    assert 4 + 4 * 1.0 + 1 <= len(x) / sr <= 4 + 4 * 2.0 + 1 + 0.01
    info = json.loads(wav.with_suffix(".json").read_text())
    assert info["lines"] == 4 and info["n_keywords"] == 4
    first = wav.stat().st_mtime_ns
    assert build_valid_real_keywords(tmp_path / "out", KEYWORDS_12, root=voices).stat().st_mtime_ns == first
    assert build_valid_real_keywords(tmp_path / "out", KEYWORDS_12, root=tmp_path / "nowhere") is None


def test_keyword_lines_name_command_words_and_are_never_trained_on():
    from kws_okd.data.real_speech import HEDGEWARS_KEYWORD_LIKE
    assert {w for w, _ in KEYWORD_LINES.values()} <= set(KEYWORDS_12)
    assert all(HEDGEWARS_KEYWORD_LIKE[stem] == w for stem, (w, _) in KEYWORD_LINES.items())
    assert all(0 <= place <= 1 for _, place in KEYWORD_LINES.values())


def test_talk_packs_alternate_and_valid_recording_keeps_to_its_packs(voices, tmp_path):
    from kws_okd.data.real_speech import talk_packs
    for pack in ("Classic", "Robot"):
        _line(voices / pack / "Hello.ogg")
    # sorted: Classic, Default, Pirate, Robot -> train every other one from the first
    assert [p.name for p in talk_packs("train", voices)] == ["Classic", "Pirate"]
    assert [p.name for p in talk_packs("valid", voices)] == ["Default", "Robot"]
    assert talk_packs("train", tmp_path / "nowhere") == []
    with pytest.raises(ConfigError, match="talk pack role 'test'"):
        talk_packs("test", voices)
    wav = build_valid_real(tmp_path / "out", KEYWORDS_12, root=voices, packs=["Default", "Robot"])
    sources = {lb["source"].split("/")[1] for lb in read_labels(wav.with_suffix(".csv"))}
    assert sources == {"Default", "Robot"}
    assert json.loads(wav.with_suffix(".json").read_text())["settings"]["packs"] == ["Default", "Robot"]
