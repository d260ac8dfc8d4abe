"""The real-speech recording of Asterisk prompts (kws_okd/evaluate/real_prompts.py), on
prompt folders the tests write: tone bursts stand in for speech, at the telephone rate."""
import json

import numpy as np
import pytest
import soundfile as sf

from kws_okd.data.words import KEYWORDS_12
from kws_okd.errors import DataError
from kws_okd.evaluate import real_prompts
from kws_okd.evaluate.real_prompts import (PROMPT_TABLE, build_real_prompts, compose_real_prompts,
                                           read_prompt_table)
from kws_okd.stream.longaudio import read_labels

SR = 8000   # the prompts' own rate; the recording is 16 kHz


def _prompt(path, seconds, on_s, off_s):
    """A prompt file: silence, a tone from ``on_s`` to ``off_s``, silence."""
    x = np.zeros(int(seconds * SR), dtype=np.float32)
    t = np.arange(int((off_s - on_s) * SR)) / SR
    x[int(on_s * SR):int(on_s * SR) + len(t)] = 0.3 * np.sin(2 * np.pi * 440 * t)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, SR)


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "prompts"
    _prompt(d / "hello-world.wav", 2.0, 0.5, 1.5)
    _prompt(d / "long-one.wav", 6.0, 1.0, 5.0)
    _prompt(d / "letters" / "ascii91.wav", 1.5, 0.25, 1.25)
    table = tmp_path / "table.tsv"
    table.write_text("# test table\nhello-world\tno@0.5\nlong-one\tup@0.25 stop@0.75\n"
                     "letters/ascii91\nnot-installed\ton@0.5\n")
    return d, table


def _by_source(labels):
    out = {}
    for lb in labels:
        out.setdefault(lb["source"], []).append(lb)
    return out


def test_labels_place_each_command_word_inside_its_prompt(folder, tmp_path):
    d, table = folder
    wav = tmp_path / "out" / "real.wav"
    wav.parent.mkdir()
    info = compose_real_prompts(d, ["no", "up"], wav, table=table, tolerance_s=0.2)
    labels = read_labels(wav.with_suffix(".csv"))
    src = _by_source(labels)
    # The missing file is skipped; "stop" is not a keyword here, so it is ordinary speech.
    assert set(src) == {"asterisk/hello-world", "asterisk/long-one", "asterisk/letters/ascii91"}
    assert info["prompts"] == 3 and info["n_keywords"] == 2
    # hello-world: speech 0.5-1.5 s of the file; "no" at half of it, +-0.2 s.
    filler, kw = sorted(src["asterisk/hello-world"], key=lambda lb: lb["kind"])
    assert (filler["kind"], filler["word"], kw["kind"], kw["word"]) == ("filler", "_unknown_", "keyword", "no")
    assert filler["end_s"] - filler["start_s"] == pytest.approx(1.0, abs=0.02)
    mid = filler["start_s"] + 0.5 * (filler["end_s"] - filler["start_s"])
    assert (kw["start_s"], kw["end_s"]) == (pytest.approx(mid - 0.2, abs=1e-3), pytest.approx(mid + 0.2, abs=1e-3))
    # long-one: speech 1-5 s; "up" a quarter of the way in, at 2 s of the file.
    filler, kw = sorted(src["asterisk/long-one"], key=lambda lb: lb["kind"])
    assert kw["word"] == "up" and kw["domain"] == "real_asterisk"
    assert (kw["start_s"] + kw["end_s"]) / 2 - filler["start_s"] == pytest.approx(1.0, abs=0.02)
    assert len(src["asterisk/letters/ascii91"]) == 1
    # Labels are in time order, and the speech is where they say.
    starts = [lb["start_s"] for lb in labels]
    assert starts == sorted(starts)
    x, sr = sf.read(wav)
    assert sr == 16000 and info["minutes"] == pytest.approx(len(x) / sr / 60, abs=0.01)
    fillers = [lb for lb in labels if lb["kind"] == "filler"]
    for lb in fillers:
        seg = x[int(lb["start_s"] * sr):int(lb["end_s"] * sr)]
        assert np.sqrt(np.mean(seg ** 2)) > 0.1
    gap = x[int((fillers[0]["end_s"] + 0.6) * sr):int((fillers[1]["start_s"] - 0.05) * sr)]
    assert len(gap) and np.sqrt(np.mean(gap ** 2)) < 1e-3


def test_max_minutes_cuts_the_order_short(folder, tmp_path):
    d, table = folder
    full = compose_real_prompts(d, ["no", "up"], tmp_path / "full.wav", table=table)
    short = compose_real_prompts(d, ["no", "up"], tmp_path / "short.wav", table=table, max_minutes=4 / 60)
    assert full["prompts"] == 3 and short["prompts"] < 3
    # The cut keeps the same order: the short recording is the start of the full one.
    a, b = (read_labels(tmp_path / f"{n}.csv") for n in ("full", "short"))
    assert b == a[:len(b)] and short["minutes"] * 60 <= 4 + 1.01
    # At least one prompt, however short the limit.
    assert compose_real_prompts(d, ["no"], tmp_path / "one.wav", table=table, max_minutes=0.001)["prompts"] == 1


def test_event_is_clipped_to_the_prompt(folder, tmp_path):
    d, table = folder
    wav = tmp_path / "real.wav"
    compose_real_prompts(d, ["no"], wav, table=table, tolerance_s=5.0)
    filler, kw = sorted(_by_source(read_labels(wav.with_suffix(".csv")))["asterisk/hello-world"],
                        key=lambda lb: lb["kind"])
    assert (kw["start_s"], kw["end_s"]) == (filler["start_s"], filler["end_s"])


def test_composition_is_deterministic_for_a_seed(folder, tmp_path):
    d, table = folder
    a, b, c = (tmp_path / f"{n}.wav" for n in "abc")
    compose_real_prompts(d, ["no"], a, table=table, seed=3)
    compose_real_prompts(d, ["no"], b, table=table, seed=3)
    compose_real_prompts(d, ["no"], c, table=table, seed=4)
    assert a.read_bytes() == b.read_bytes()
    assert a.with_suffix(".csv").read_text() == b.with_suffix(".csv").read_text()
    assert a.with_suffix(".csv").read_text() != c.with_suffix(".csv").read_text()


def test_build_reuses_a_matching_recording_and_skips_without_the_package(folder, tmp_path, monkeypatch):
    d, _ = folder
    # The shipped table names hello-world and letters/ascii91, so the fixture folder serves.
    wav = build_real_prompts(tmp_path / "la", list(KEYWORDS_12), folder=d)
    stamp = json.loads(wav.with_suffix(".json").read_text())
    assert stamp["prompts"] == 2 and stamp["settings"]["folder"] == str(d)
    mtime = wav.stat().st_mtime_ns
    assert build_real_prompts(tmp_path / "la", list(KEYWORDS_12), folder=d) == wav
    assert wav.stat().st_mtime_ns == mtime
    build_real_prompts(tmp_path / "la", list(KEYWORDS_12), seed=1, folder=d)
    assert json.loads(wav.with_suffix(".json").read_text())["seed"] == 1
    # A prompt file rewritten in place (same size) is a new source: rebuilt.
    before = json.loads(wav.with_suffix(".json").read_text())["settings"]["files"]
    _prompt(d / "hello-world.wav", 2.0, 0.6, 1.6)
    build_real_prompts(tmp_path / "la", list(KEYWORDS_12), seed=1, folder=d)
    assert json.loads(wav.with_suffix(".json").read_text())["settings"]["files"] != before
    monkeypatch.setattr(real_prompts, "prompt_folder", lambda: None)
    assert build_real_prompts(tmp_path / "none", list(KEYWORDS_12)) is None


def test_no_listed_prompt_in_the_folder_is_an_error(tmp_path):
    table = tmp_path / "t.tsv"
    table.write_text("hello-world\tno@0.5\n")
    with pytest.raises(DataError, match="none of the prompts"):
        compose_real_prompts(tmp_path, ["no"], tmp_path / "x.wav", table=table)


@pytest.mark.parametrize("line, message", [
    ("vm-intro\tup", r"'up' is not WORD@PLACE"),
    ("vm-intro\tup@1.5", r"'up@1.5' is not WORD@PLACE with PLACE in \[0, 1\]"),
    ("vm-intro\t@0.5", r"is not WORD@PLACE"),
    ("vm-intro\nvm-intro", "listed twice"),
])
def test_bad_table_lines_are_named(tmp_path, line, message):
    table = tmp_path / "t.tsv"
    table.write_text("# header\n" + line + "\n")
    with pytest.raises(DataError, match=message) as e:
        read_prompt_table(table)
    assert str(table) in str(e.value)


def test_the_shipped_table():
    rows = read_prompt_table(PROMPT_TABLE)
    names = [n for n, _ in rows]
    events = [w for _, words in rows for w, _ in words]
    assert len(rows) > 400 and len(events) == 23
    assert set(events) <= set(KEYWORDS_12)
    # Sound-alikes of command words are left out rather than counted either way.
    assert not {"vm-nonumber", "vm-newuser"} & set(names)
    assert not [n for n in names if n.startswith("silence/")]
    assert dict(rows)["pbx-invalidpark"] == (("no", 0.31), ("on", 0.52))
