"""tools/compare_variants.py: validation figures of a model from its traces, the
comparison over seeds, and the command line's errors."""
import runpy
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import tool_exit

TOOL = str(Path(__file__).resolve().parents[1] / "tools" / "compare_variants.py")
KEYWORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
HOP = 0.02


@pytest.fixture(scope="module")
def tool():
    return runpy.run_path(TOOL, run_name="compare_variants")


def _trace(peaks, seconds=20.0):
    """A trace of ``seconds`` at a 20 ms hop, every score 0 but ``peaks``: (time s, keyword, score)."""
    times = np.round(np.arange(1.0, seconds, HOP), 4)
    scores = np.zeros((len(times), len(KEYWORDS)), np.float32)
    for t, word, s in peaks:
        scores[int(round((t - 1.0) / HOP)), KEYWORDS.index(word)] = s
    return times, scores, KEYWORDS, seconds


def _label(start, end, word):
    kind = "keyword" if word in KEYWORDS else "filler"
    return dict(start_s=start, end_s=end, word=word, kind=kind, source=f"x/{word}", domain="espeak")


def test_score_traces_against_hand_counts(tool):
    stream = dict(hop_ms=20.0, smooth=5, refractory_s=1.0, thresholds={k: 0.9 for k in KEYWORDS})
    # valid: "yes" found (0.99), "no" missed (0.5), a false alarm of "up" (0.95) on a filler.
    valid = _trace([(2.6, "yes", 0.99), (6.5, "no", 0.5), (12.2, "up", 0.95)])
    valid_labels = [_label(2.0, 2.5, "yes"), _label(6.0, 6.4, "no"), _label(12.0, 12.4, "house")]
    sent = _trace([(4.5, "go", 0.97)])
    sent_labels = [_label(4.0, 4.3, "go")]
    talk = _trace([(5.0, "off", 0.99), (15.0, "on", 0.89)])   # one false alarm, one below threshold
    # keyword lines: line 1 "yes" on top (0.3 against 0.2), line 2 "down" under "on" (0.1 < 0.4).
    lines = _trace([(3.0, "yes", 0.3), (3.1, "no", 0.2), (9.0, "down", 0.1), (9.1, "on", 0.4)])
    lines_labels = [_label(2.5, 3.0, "yes"), _label(8.5, 9.0, "down")]
    traces = {"valid": valid, "valid_sentences": sent, "valid_real": talk, "valid_real_keywords": lines,
              "valid_snr5": valid}
    labels = {"valid": valid_labels, "valid_sentences": sent_labels, "valid_real": [],
              "valid_real_keywords": lines_labels, "valid_snr5": valid_labels}
    fig = tool["score_traces"](traces, labels, stream, "valid_snr5")
    per_hour = 3600 / 20.0   # one event on a 20 s recording
    assert fig["valid_frr"] == pytest.approx(0.5) and fig["valid_fa_h"] == pytest.approx(per_hour)
    assert fig["sentences_frr"] == 0.0 and fig["sentences_fa_h"] == 0.0
    assert fig["pooled_frr"] == pytest.approx(1 / 3)          # 2 of 3 keywords found
    assert fig["talk_fa_h"] == pytest.approx(per_hour)
    assert fig["kwlines_top"] == 1 and fig["kwlines_hits"] == 0
    # One threshold swept: above 0.95 the false alarm goes and "yes" (0.99) stays: FRR 0.5.
    assert fig["snr_frr_at1"] == pytest.approx(0.5) and fig["snr_frr"] == pytest.approx(0.5)
    # Recordings not given give no figure.
    assert set(tool["score_traces"]({"valid": valid}, labels, stream)) == {"valid_frr", "valid_fa_h", "pooled_frr"}


def test_summarize_and_verdicts_against_hand_computation(tool):
    per_seed = {"base": {0: dict(valid_acc=94.0, talk_fa_h=10.0), 1: dict(valid_acc=95.0, talk_fa_h=20.0),
                         2: dict(valid_acc=96.0, talk_fa_h=30.0)},
                "cand": {0: dict(valid_acc=97.0, talk_fa_h=15.0), 1: dict(valid_acc=98.0, talk_fa_h=25.0),
                         2: dict(valid_acc=99.0)}}   # seed 2 lacks people talking
    s = tool["summarize"](per_seed)
    assert s["reference"] == "base"
    acc = s["variants"]["cand"]["figures"]["valid_acc"]
    assert acc["mean"] == pytest.approx(98.0) and acc["std"] == pytest.approx(np.sqrt(2 / 3))
    d = acc["vs_first"]   # 98 - 95 = 3 > 2 * 0.816: beyond
    assert d["delta"] == pytest.approx(3.0) and d["beyond_spread"] is True
    assert tool["verdict"](d, "higher") == "higher, beyond (better)"
    assert tool["verdict"](d, "lower") == "higher, beyond (worse)"
    assert "talk_fa_h" not in s["variants"]["cand"]["figures"]
    assert s["variants"]["base"]["figures"]["talk_fa_h"]["vs_first"] is None
    within = tool["summarize"]({"a": {0: {"valid_acc": 1.0}, 1: {"valid_acc": 3.0}},
                                "b": {0: {"valid_acc": 2.0}, 1: {"valid_acc": 4.0}}})
    assert tool["verdict"](within["variants"]["b"]["figures"]["valid_acc"]["vs_first"], "higher") == "within"
    text = tool["render"](s)
    assert "| valid acc. % | 95.0 ± 0.8 (94 / 95 / 96) | 98.0 ± 0.8 (97 / 98 / 99): higher, beyond (better) |" in text


@pytest.mark.parametrize("args, msg", [
    (["base=x/model.pt"], "with {seed} in the path"),
    (["results/seed{{seed}}/model.pt"], "give name=path"),
    (["base={tmp}/seed{{seed}}/model.pt"], "no model file"),
    (["a={tmp}/m{{seed}}.pt", "a={tmp}/m{{seed}}.pt"], "given twice"),
])
def test_cli_names_bad_variants(tmp_path, capsys, args, msg):
    for s in (0, 1, 2):
        (tmp_path / f"m{s}.pt").write_bytes(b"")
    argv = [a.format(tmp=tmp_path) for a in args]
    assert tool_exit("compare_variants.py", ["--out", str(tmp_path / "out"), *argv]) == 2
    assert msg in capsys.readouterr().err
