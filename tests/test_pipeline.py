import json

from kws_okd.pipeline import run_pipeline, teacher_agreement
from tests.test_train import overrides


def test_default_job_end_to_end_on_a_tiny_corpus(tiny_corpus, tmp_path):
    out = tmp_path / "report"
    report = run_pipeline(overrides(tiny_corpus, tmp_path), methods=("erm", "okd_real"), seeds=(0,),
                          out=out, shift_suite="compact", reference_teachers=("resnet",))
    assert set(report["models"]) == {"teacher", "teacher-resnet", "bcresnet1-erm/seed0",
                                     "bcresnet1-okd_real/seed0"}
    assert report["models"]["teacher"]["method"] == "erm"
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["methods"]) == {"erm", "okd_real"}
    assert summary["methods"]["okd_real"]["ood_acc"]["n"] == 1
    assert set(summary["shift"]) == set(report["models"])
    # The real-speech development set is its own column, tagged `real`.
    assert report["sets"]["real_dev"]["tag"] == "real"
    assert summary["methods"]["erm"]["real_acc"]["n"] == 1
    # Agreement with the teacher on held-out real audio: the teacher agrees with itself.
    assert report["models"]["teacher"]["agree_real"] == 1.0
    assert abs(report["models"]["teacher"]["kl_real"]) < 1e-6
    assert 0.0 <= summary["methods"]["okd_real"]["agree_real"]["mean"] <= 1.0
    text = (out / "summary.md").read_text()
    assert "| bcresnet1-okd_real |" in text and "klettres-data" in text and "`real`" in text
    assert "| teacher-resnet (erm) |" in text
    assert (out / "shift" / "severity.md").exists()


def test_teacher_agreement_against_hand_computed_values(tmp_path):
    import torch
    from kws_okd.models import build_model
    from kws_okd.train.checkpoint import save_model
    torch.manual_seed(0)
    paths = {}
    for name in ("t", "s"):
        net = build_model("bcresnet1", num_classes=3).eval()
        paths[name] = tmp_path / f"{name}.pt"
        save_model(paths[name], net, {"name": "bcresnet1"}, ["a", "b", "c"], {})
    x = 0.1 * torch.randn(6, 16000)
    out = teacher_agreement(paths, "t", x, batch=4)
    from kws_okd.train.checkpoint import load_model
    with torch.no_grad():
        lt, ls = load_model(paths["t"])[0](x), load_model(paths["s"])[0](x)
    pt = lt.softmax(-1)
    kl = (pt * (pt.log() - ls.log_softmax(-1))).sum(-1).mean()
    assert out["t"] == {"agree": 1.0, "kl": 0.0}
    assert out["s"]["agree"] == float((lt.argmax(-1) == ls.argmax(-1)).float().mean())
    assert abs(out["s"]["kl"] - float(kl)) < 1e-5


def test_eval_set_tags_follow_the_file_name(tmp_path):
    from kws_okd.evaluate.report import find_eval_sets
    for stem, tag in (("real_dev", "real"), ("test_ood_flite", "ood"), ("test_id", "id")):
        csv = tmp_path / f"{stem}.csv"
        csv.write_text("ID,wav,word,label\n")
        assert find_eval_sets(csv) == {stem: (csv, tag)}
