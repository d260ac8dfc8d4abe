import argparse
import json

import numpy as np
import pytest
import soundfile as sf

from kws_okd.data import gsc
from kws_okd.data.manifest import read_classes, read_manifest
from kws_okd.data.shift import build_suite, conditions
from kws_okd.errors import DataError
from kws_okd.evaluate.report import evaluate
from kws_okd.evaluate.severity import severity_report
from kws_okd.models import build_model
from kws_okd.train.checkpoint import save_model
from tests.conftest import make_gsc_fixture

WORDS = ["yes", "no", "up", "down"]


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    root = make_gsc_fixture(tmp_path_factory.mktemp("gsc") / "g", WORDS)
    out = root.parent / "m"
    gsc.prepare(root, out, task="35")
    return out


@pytest.fixture(scope="module")
def suite(manifests, tmp_path_factory):
    return build_suite(manifests, tmp_path_factory.mktemp("s") / "suite", "compact", seed=3, rirs_per_level=2,
                       log=lambda m: None)


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_a_byte_identical_suite(manifests, suite, tmp_path):
    again = build_suite(manifests / "test_id.csv", tmp_path / "again", "compact", seed=3, rirs_per_level=2,
                       log=lambda m: None)
    a, b = _files(suite), _files(again)
    assert a.keys() == b.keys() and len(a) > 20
    assert all(a[k] == b[k] for k in a)
    other = build_suite(manifests, tmp_path / "other", "compact", seed=4, rirs_per_level=2,
                        log=lambda m: None)
    assert _files(other)["babble_10db/yes/ee55_nohash_0.wav"] != a["babble_10db/yes/ee55_nohash_0.wav"]


def test_suite_layout_manifests_protocol_and_parameters(manifests, suite):
    proto = json.loads((suite / "protocol.json").read_text())["eval_sets"]
    meta = json.loads((suite / "suite.json").read_text())
    names = [c["name"] for c in meta["conditions"]]
    assert set(proto) == {f"test_shift_{n}" for n in names}
    assert proto["test_shift_clean"] == "id" and proto["test_shift_babble_10db"] == "ood"
    assert read_classes(suite / "classes.txt") == read_classes(manifests / "classes.txt")
    for n in names:
        rows = read_manifest(suite / f"test_shift_{n}.csv")
        assert {r["domain"] for r in rows} == {n} and len(rows) == len(WORDS)
        for r in rows:
            x, sr = sf.read(r["wav"])
            assert sr == 16000 and len(x) == 16000 and np.abs(x).max() <= 0.99 + 1e-4
    room = next(c for c in meta["conditions"] if c["family"] == "room")
    assert room["severity"] == 0.6 and "seed" in room
    bank = meta["rir_banks"]["rir_rt60_0.6"]
    assert bank["seed"] >= 1_000_000 and bank["length"][0] > 8.0  # disjoint from training rooms
    assert all(abs(r - 0.6) < 0.15 for r in bank["rt60_measured"])
    assert set(meta["held_out_noises"]).isdisjoint({"white", "pink", "hum", "machine"})


def test_shifted_clips_differ_from_clean_at_the_stated_snr(suite):
    clean, _ = sf.read(suite / "clean" / "up" / "ee55_nohash_0.wav")
    brown, _ = sf.read(suite / "brown_5db" / "up" / "ee55_nohash_0.wav")
    snr = 10 * np.log10((clean ** 2).mean() / ((brown - clean) ** 2).mean())
    assert abs(snr - 5) < 0.5  # 16-bit rounding only


def test_evaluate_and_severity_report_run_on_the_suite(suite, tmp_path):
    classes = read_classes(suite / "classes.txt")
    pt = tmp_path / "m.pt"
    save_model(pt, build_model("bcresnet1", len(classes)), {"name": "bcresnet1"}, classes)
    report = evaluate({"student": pt}, suite, tmp_path / "eval", plots=False)
    assert report["models"]["student"]["ood_acc"] is not None
    table = severity_report(tmp_path / "eval" / "report.json", suite, tmp_path / "eval")
    r = table["models"]["student"]
    assert set(r["acc"]) == {c["name"] for c in json.loads((suite / "suite.json").read_text())["conditions"]}
    assert 0 <= r["mean_ood"] <= 1
    assert (tmp_path / "eval" / "severity_student.png").stat().st_size > 1000
    assert "mean OOD" in (tmp_path / "eval" / "severity.md").read_text()


def test_full_suite_lists_every_family():
    names = {c["name"] for c in conditions("full", user_noise=True)}
    for k in ("babble", "brown", "impulse", "user"):
        assert {f"{k}_{s}db" for s in (20, 10, 5, 0)} <= names
    assert {"room_rt60_0.3", "room_rt60_0.6", "room_rt60_1.0", "telephone", "gsm", "opus", "mp3",
            "mu_law_8bit", "narrowband_8k", "phone_call", "far_field"} <= names


def test_cli_and_bad_inputs(manifests, tmp_path):
    p = argparse.ArgumentParser()
    from kws_okd.cli import add_core_commands
    add_core_commands(p.add_subparsers(dest="cmd"))
    a = p.parse_args(["shift", "--data", str(manifests), "--out", str(tmp_path / "s"), "--suite", "full",
                      "--seed", "2"])
    assert a.suite == "full" and a.seed == 2 and callable(a.fn)
    with pytest.raises(DataError, match="test manifest does not exist"):
        build_suite(tmp_path / "nowhere", tmp_path / "x")
    with pytest.raises(DataError, match="noise folder does not exist"):
        build_suite(manifests, tmp_path / "x", noise_dir=tmp_path / "no_noise")
    with pytest.raises(DataError, match="unknown shift suite"):
        build_suite(manifests, tmp_path / "x", suite="huge")
