"""The real development set (kws_okd/data/people.py) and the _unknown_ calibration
(kws_okd/train/calibrate.py)."""
import numpy as np
import pytest
import torch
from torch import nn

from kws_okd.data import people
from kws_okd.data.manifest import read_manifest
from kws_okd.data.words import KEYWORDS_12, UNKNOWN
from kws_okd.errors import ConfigError, DataError
from kws_okd.models import build_model
from kws_okd.train import calibrate as cal
from tests.conftest import write_tone

CLASSES = ["_silence_", UNKNOWN, *KEYWORDS_12]


def test_vendored_set_roles_are_disjoint_by_speaker_and_cover_every_clip():
    clips = people.scan_people()
    assert len(clips) == 249
    roles = people.speaker_roles(clips)
    assert len(roles) == 34 and set(roles.values()) == set(people.ROLES)
    rows = {r: people.people_rows(CLASSES, r) for r in people.ROLES}
    assert sum(len(v) for v in rows.values()) == 249
    spk = {r: {x["spk_id"] for x in v} for r, v in rows.items()}
    assert not spk["train"] & spk["select"] and not spk["train"] & spk["report"] and not spk["select"] & spk["report"]
    summary = people.role_summary()
    assert sum(v["keyword_clips"] for v in summary.values()) == 77
    # about half the keyword clips train, the rest split evenly between select and report
    assert 34 <= summary["train"]["keyword_clips"] <= 44
    assert abs(summary["select"]["keyword_clips"] - summary["report"]["keyword_clips"]) <= 4
    # non-keywords are _unknown_, keywords their own class
    for r in rows["report"]:
        word = r["ID"].split("/")[1]
        assert r["word"] == (word if word in KEYWORDS_12 else UNKNOWN)
        assert CLASSES[r["label"]] == r["word"]


def test_roles_depend_on_the_clip_list_not_its_order():
    clips = people.scan_people()
    assert people.speaker_roles(clips) == people.speaker_roles(list(reversed(clips)))


def test_roles_balance_keyword_clips_by_hand():
    # speaker a has 4 keyword clips, b 2, c 2, d none: a -> train, b -> select (furthest
    # below 0.25), c -> report, d (no keyword) fills the role furthest below its share of all clips
    clips = ([dict(speaker="a", word="yes")] * 4 + [dict(speaker="b", word="no")] * 2
             + [dict(speaker="c", word="up")] * 2 + [dict(speaker="d", word="bed")] * 3)
    roles = people.speaker_roles(clips)
    assert roles["a"] == "train" and {roles["b"], roles["c"]} == {"select", "report"}
    assert roles["d"] in people.ROLES


def test_bad_development_clips_are_named(tmp_path):
    with pytest.raises(DataError, match="missing"):
        people.scan_people(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no <word>"):
        people.scan_people(tmp_path / "empty")
    write_tone(tmp_path / "d" / "yes" / "aa_nohash_0.wav")
    bad = tmp_path / "d" / "no" / "bb_nohash_0.wav"
    bad.parent.mkdir()
    bad.write_bytes(b"RIFF not a wav")
    with pytest.raises(DataError, match="bb_nohash_0.wav: unreadable"):
        people.scan_people(tmp_path / "d")
    bad.unlink()
    write_tone(tmp_path / "d" / "no" / "bb_nohash_0.wav", sr=8000)
    with pytest.raises(DataError, match="bb_nohash_0.wav: development clips are 16-kHz"):
        people.scan_people(tmp_path / "d")


def test_people_manifest_written_once_and_repeat(tmp_path):
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    p = people.people_manifest(tmp_path, "select")
    rows = read_manifest(p)
    assert rows and all(r["domain"] == people.DOMAIN for r in rows)
    stamp = p.stat().st_mtime_ns
    assert people.people_manifest(tmp_path, "select").stat().st_mtime_ns == stamp   # up to date: not rewritten
    q = people.write_people_manifest(tmp_path / "x.csv", CLASSES, "train", repeat=3)
    rows3 = read_manifest(q)
    assert len(rows3) == 3 * len(people.people_rows(CLASSES, "train"))
    assert len({r["ID"] for r in rows3}) == len(rows3)
    once = read_manifest(people.write_people_manifest(tmp_path / "y.csv", CLASSES, "train"))
    assert [r["ID"] for r in once] == [r["ID"] for r in people.people_rows(CLASSES, "train")]
    assert [r["ID"] for r in people.repeated([dict(ID="a"), dict(ID="b")], 2)] == ["a#0", "a#1", "b#0", "b#1"]


def test_balanced_accuracy_by_hand():
    labels = np.array([0, 0, 0, 0, 1, 2])
    pred = np.array([0, 0, 0, 0, 0, 2])
    # class 0: 4/4, class 1: 0/1, class 2: 1/1 -> 2/3 (plain accuracy would say 5/6)
    assert cal.balanced_accuracy(pred, labels) == pytest.approx(2 / 3)


def test_balanced_nll_by_hand():
    # two classes, one clip each: -log softmax of the true class, averaged over classes
    z = np.array([[0.0, 0.0], [0.0, np.log(3.0)]])
    assert cal.balanced_nll(z, [0, 1]) == pytest.approx((np.log(2) + np.log(4 / 3)) / 2)


def test_choose_offset_minimises_the_balanced_likelihood():
    # class 1 is _unknown_. Keyword clip: logits (0, u - o); _unknown_ clip: (0, v - o).
    # The balanced NLL is (log(1 + e^(u-o)) + log(1 + e^(o-v))) / 2, least at o = (u + v) / 2.
    logits = np.array([[0.0, 1.0], [0.0, 5.0]])
    off, acc, curve = cal.choose_offset(logits, np.array([0, 1]), unknown=1)
    assert off == pytest.approx(3.0)
    assert acc == 1.0
    assert min(c[1] for c in curve) == pytest.approx(np.log1p(np.exp(-2.0)))
    nlls = [c[1] for c in curve]
    i = nlls.index(min(nlls))   # one minimum: falling before it, rising after
    assert all(a >= b for a, b in zip(nlls[:i], nlls[1:i + 1])) and all(a <= b for a, b in zip(nlls[i:], nlls[i + 1:]))


@pytest.mark.parametrize("name", ["bcresnet2", "dscnn"])
def test_fold_offset_moves_the_unknown_logit_alone(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=len(CLASSES)).eval()
    x = 0.1 * torch.randn(3, 16000)
    before = model(x).detach()
    cal.fold_offset(model, len(CLASSES), 1, 2.5)
    after = model(x).detach()
    assert torch.allclose(after[:, 1], before[:, 1] - 2.5, atol=1e-5)
    assert torch.allclose(after[:, [0, *range(2, len(CLASSES))]], before[:, [0, *range(2, len(CLASSES))]])


def test_calibrate_unknown_folds_the_chosen_offset(tmp_path):
    class Fixed(nn.Module):   # logits from the first two samples of the wave, plus a bias
        def __init__(self):
            super().__init__()
            self.out = nn.Linear(2, 2)
            with torch.no_grad():
                self.out.weight.copy_(torch.eye(2))
                self.out.bias.zero_()

        def forward(self, w):
            return self.out(w[:, :2])

    class DS:
        inputs = torch.tensor([[0.0, 1.2], [0.0, 3.0]])
        labels = torch.tensor([0, 1])
        path = "select.csv"

    model = Fixed()
    info = cal.calibrate_unknown(model, DS, ["yes", UNKNOWN])
    assert info["balanced_acc_before"] == 0.5 and info["balanced_acc_after"] == 1.0
    assert info["unknown_offset"] == pytest.approx(2.1)   # (1.2 + 3.0) / 2
    assert model.out.bias[1].item() == pytest.approx(-info["unknown_offset"])
    with pytest.raises(ConfigError, match="needs an _unknown_ class"):
        cal.calibrate_unknown(model, DS, ["yes", "no"])


def test_a_model_without_an_output_bias_is_refused():
    model = nn.Sequential(nn.Linear(4, 3, bias=False))
    with pytest.raises(ConfigError, match="no output layer with 3 outputs and a bias"):
        cal.fold_offset(model, 3, 1, 1.0)
