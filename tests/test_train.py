import json

import pytest
import torch

from kws_okd.augment import build_augmentation
from kws_okd.cli import main
from kws_okd.data import gsc
from kws_okd.data.registry import load_dataset as ManifestDataset
from kws_okd.distill import build_objective
from kws_okd.errors import ConfigError
from kws_okd.models import build_model
from kws_okd.train.config import load_recipe
from kws_okd.train.run import train


@pytest.fixture(scope="module")
def manifests(tiny_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("manifests")
    gsc.prepare(tiny_corpus, out, task="35", ood_domains=["flite"])
    return out


@pytest.mark.parametrize("method", ["erm", "kd", "okd"])
def test_a_few_steps_lower_the_loss(manifests, method):
    torch.manual_seed(0)
    ds = ManifestDataset(manifests / "train.csv")
    x, y = ds.waves[:32], ds.labels[:32]
    student = build_model("bcresnet1", 35)
    teacher = build_model("dscnn", 35).eval()
    objective = build_objective(method)
    augment = build_augmentation({"name": "gaussian_noise", "min_snr": 20, "max_snr": 20})
    opt = torch.optim.Adam(student.parameters(), lr=0.01)
    losses = []
    for _ in range(15):
        torch.manual_seed(1)  # same x_ood each step: measure fit, not noise
        loss, _, _ = objective(student, teacher, x, y, augment)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def overrides(tiny_corpus, tmp_path, *extra):
    return ["data=gsc", f"data.root={tiny_corpus}", "data.task=35", "data.ood_domains=[flite]",
            f"data.manifest_dir={tmp_path}/manifests", f"results_dir={tmp_path}/results",
            "epochs=1", "steps=null", "batch_size=32", "progress=false", *extra]


def test_teacher_then_okd_student_then_report(tiny_corpus, tmp_path):
    t_pt = train(load_recipe("teacher", overrides(tiny_corpus, tmp_path)))
    assert t_pt.exists()
    s_pt = train(load_recipe("student", overrides(tiny_corpus, tmp_path, "distill=okd",
                                                  "student=bcresnet1", "seed=2")))
    assert "bcresnet1-okd+context0.5/seed2" in str(s_pt)
    summary = json.loads((s_pt.parent / "train_summary.json").read_text())
    assert summary["method"] == "okd" and summary["params"] <= 20_000
    out = tmp_path / "report"
    rc = main(["eval", "--model", f"teacher={t_pt}", "--model", f"okd={s_pt}",
               "--data", str(tmp_path / "manifests"), "--out", str(out)])
    assert rc == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["sets"]["test_ood_flite"]["tag"] == "ood" and rep["sets"]["test_id"]["tag"] == "id"
    okd = rep["models"]["okd"]
    assert okd["gap_ood"] == pytest.approx(rep["models"]["teacher"]["ood_acc"] - okd["ood_acc"])
    assert set(okd["sets"]["test_id"]["by_domain"]) == {"espeak", "espeak_accent", "espeak_klatt"}
    assert (out / "report.md").read_text().count("|") > 20
    assert (out / "confusion_okd_test_ood_flite.png").stat().st_size > 1000

    # Resume: asking for one more epoch continues from the saved epoch counter.
    train(load_recipe("student", overrides(tiny_corpus, tmp_path, "distill=okd", "seed=2", "student=bcresnet1",
                                           "epochs=2")))
    log = (s_pt.parent / "train_log.txt").read_text()
    assert log.count("epoch: 1,") == 1 and log.count("epoch: 2,") == 1


def test_unknown_recipe_key_and_missing_teacher(tiny_corpus, tmp_path, capsys):
    assert main(["train", "banana=3"]) == 2
    assert "banana" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="unknown model"):
        load_recipe("student", ["student.name=nope"]) and train(
            load_recipe("student", overrides(tiny_corpus, tmp_path, "student.name=nope", "distill=erm")))
    cfg = load_recipe("student", overrides(tiny_corpus, tmp_path, "teacher_ckpt=/no/teacher.pt"))
    with pytest.raises(ConfigError, match="/no/teacher.pt: model file does not exist"):
        train(cfg)
