import json

from kws_okd.pipeline import run_pipeline
from tests.test_train import overrides


def test_default_job_end_to_end_on_a_tiny_corpus(tiny_corpus, tmp_path):
    out = tmp_path / "report"
    report = run_pipeline(overrides(tiny_corpus, tmp_path), methods=("erm", "okd"), seeds=(0,),
                          out=out, shift_suite="compact")
    assert set(report["models"]) == {"teacher", "bcresnet1-erm/seed0", "bcresnet1-okd/seed0"}
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["methods"]) == {"erm", "okd"}
    assert summary["methods"]["okd"]["ood_acc"]["n"] == 1
    assert set(summary["shift"]) == set(report["models"])
    text = (out / "summary.md").read_text()
    assert "| okd |" in text and "shifted suite" in text
    assert (out / "shift" / "severity.md").exists()
