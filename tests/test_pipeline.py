import json

import pytest

from kws_okd.pipeline import run_pipeline, teacher_agreement
from tests.test_train import overrides


def test_default_job_end_to_end_on_a_tiny_corpus(tiny_corpus, tmp_path):
    out = tmp_path / "report"
    ov = overrides(tiny_corpus, tmp_path) + ["data.task=12", "data.real_negatives=1.0"]
    report = run_pipeline(ov, methods=("erm", "okd_real"), seeds=(0,), out=out, shift_suite="compact",
                          reference_teachers=("resnet",), long_audio_minutes=0.5)
    assert set(report["models"]) == {"teacher", "teacher-resnet", "bcresnet2_20ms-erm/seed0",
                                     "bcresnet2_20ms-okd_real/seed0"}
    assert report["models"]["teacher"]["method"] == "erm"
    # The teacher trains without the real-speech _unknown_ windows; the students keep them.
    from pathlib import Path

    from kws_okd.data.manifest import read_manifest
    (without,) = tmp_path.rglob("train.without-real_speech.csv")
    full = read_manifest(without.with_name("train.csv"))
    assert [r for r in full if r["domain"] != "real_speech"] == read_manifest(without) != full
    config = Path(report["models"]["teacher"]["path"]).with_name("config.yaml").read_text()
    assert "train_without_domains:\n- real_speech\n" in config
    config = Path(report["models"]["bcresnet2_20ms-okd_real/seed0"]["path"]).with_name("config.yaml").read_text()
    assert "train_without_domains: []\n" in config
    # Its OKD moves half of the teacher's command-word probability on real audio alone to _unknown_ (rule 11).
    assert "reject_class: auto\n" in config and "reject_share: 0.5\n" in config
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["methods"]) == {"erm", "okd_real"}
    assert summary["methods"]["okd_real"]["ood_acc"]["n"] == 1
    assert set(summary["shift"]) == set(report["models"])
    # The real column: class-balanced accuracy on the development set's report speakers;
    # its select speakers and the older 43 clips are columns of their own.
    assert report["sets"]["people_report"]["tag"] == "real" and report["sets"]["people_select"]["tag"] == "select"
    assert report["sets"]["real_dev_keywords"]["tag"] == report["sets"]["real_dev_unknown"]["tag"] == "real43"
    assert summary["methods"]["erm"]["real_acc"]["n"] == 1
    for r in report["models"].values():
        people = r["sets"]["people_report"]
        assert r["real_acc"] == people["balanced"]
        per = people["per_class"]
        assert people["balanced"] == pytest.approx(sum(v["right"] / v["n"] for v in per.values()) / len(per))
        kw = [v for c, v in per.items() if not c.startswith("_")]
        assert r["kw_as_unknown"] == sum(v["called"].get("_unknown_", 0) for v in kw) / sum(v["n"] for v in kw)
    # Every model trained on the 12-class task carries its _unknown_ offset, chosen on the select speakers.
    import torch
    for name in ("teacher", "bcresnet2_20ms-erm/seed0"):
        cal = torch.load(report["models"][name]["path"], weights_only=True)["info"]["calibration"]
        assert cal["chosen_on"].endswith("people_select.csv") and cal["clips"] == 62
    assert "**people %**" in (out / "summary.md").read_text()
    # Agreement with the teacher on held-out real audio: the teacher agrees with itself.
    assert report["models"]["teacher"]["agree_real"] == 1.0
    assert abs(report["models"]["teacher"]["kl_real"]) < 1e-6
    assert 0.0 <= summary["methods"]["okd_real"]["agree_real"]["mean"] <= 1.0
    assert 0.0 <= summary["methods"]["okd_real"]["kwcall_real"]["mean"] <= 1.0
    assert "| kw calls % |" in (out / "summary.md").read_text()
    text = (out / "summary.md").read_text()
    assert "| bcresnet2_20ms-okd_real |" in text and "klettres-data" in text and "report* speakers" in text
    assert "| teacher-resnet (erm) |" in text
    assert (out / "shift" / "severity.md").exists()
    # Long audio: thresholds chosen on the validation recording are stored in the student's
    # model file, and the test recordings report FRR at fixed false-alarm rates.
    import torch
    blob = torch.load(report["models"]["bcresnet2_20ms-erm/seed0"]["path"], weights_only=True)
    thr = blob["stream"]["thresholds"]
    assert set(thr) == {"yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"}
    from kws_okd.pipeline import THRESHOLD_FLOOR
    assert all(THRESHOLD_FLOOR <= v < 1.0 for v in thr.values()) and blob["stream"]["target_fa_per_hour"] == 1.0
    assert f"none below {THRESHOLD_FLOOR}" in blob["stream"]["chosen_on"]
    r = report["models"]["bcresnet2_20ms-okd_real/seed0"]
    from kws_okd.evaluate.real_prompts import prompt_folder
    real = prompt_folder() is not None   # Asterisk's prompts: installed by the set-up
    assert set(r["long_audio"]) == {"test_people", "test_clean", "test_snr5", "test_sentences"} | (
        {"test_real_prompts"} if real else set())
    # Real people's keywords in running audio: the report speakers' clips, and real talk.
    people = read_labels_of(tmp_path, "test_people")
    assert {lb["source"].split("/")[0] for lb in people} <= {"people", "talk_report"}
    assert {lb["word"] for lb in people if lb["kind"] == "keyword"} <= set(thr)
    assert r["people_events"] == sum(lb["kind"] == "keyword" for lb in people) > 0
    assert 0.0 <= r["people_recall"] <= 1.0 and "Real people's keywords in running audio" in text
    select = {lb["source"] for lb in read_labels_of(tmp_path, "valid_people") if lb["source"].startswith("people/")}
    assert select and not select & {lb["source"] for lb in people}   # other speakers
    assert "select speakers" in blob["stream"]["chosen_on"]
    # what the stored thresholds do on real people's keywords travels with them (model card)
    erm = report["models"]["bcresnet2_20ms-erm/seed0"]
    measured = blob["stream"]["measured"]["test_people"]
    assert measured["keywords"] == erm["people_events"] and measured["found"] == round(erm["people_recall"] * erm["people_events"])
    assert 0.0 <= r["kw_frr_clean"] <= 1.0
    assert "FRR @ 1 FA/h" in text and (out / "det_test_clean.png").exists()
    # The errors at the stored thresholds, broken down: they add up to the totals.
    errs = r["kw_errors_clean"]
    from kws_okd.stream.longaudio import read_labels
    labels = read_labels(next(tmp_path.rglob("long_audio/test_clean.csv")))
    assert all(lb["domain"] for lb in labels)   # every segment names its domain
    n_kw = sum(lb["kind"] == "keyword" for lb in labels)
    assert sum(errs["misses_by"].values()) == round(r["kw_frr_clean"] * n_kw)
    assert set(errs["misses_by"]) <= {lb["domain"] for lb in labels if lb["kind"] == "keyword"}
    assert "false alarms fired on" in text
    # Keywords inside sentences by held-out voices: its own recording, row and DET plot.
    sent_csv = next(tmp_path.rglob("long_audio/test_sentences.csv"))
    sent = read_labels(sent_csv)
    ood = set(json.loads((sent_csv.parent.parent / "protocol.json").read_text())["ood_domains"])
    assert {lb["domain"] for lb in sent} <= ood and any(lb["kind"] == "keyword" for lb in sent)
    assert "test_sentences" in r["long_audio"] and 0.0 <= r["kw_frr_sent"] <= 1.0
    assert summary["methods"]["erm"]["kw_frr_sent"]["n"] == 1
    assert "Keywords inside sentences" in text and (out / "det_test_sentences.png").exists()
    # The thresholds were also chosen on sentences of the training families' validation
    # speakers (never a test voice, never a test text), which no report scores as a test.
    import csv
    proto = json.loads((sent_csv.parent.parent / "protocol.json").read_text())
    with open(f"{proto['root']}/speakers.csv", newline="") as f:
        valid_voices = {row["voice"] for row in csv.DictReader(f)
                        if row["split"] == "validation" and row["domain"] not in ood}
    vsent = read_labels(sent_csv.with_name("valid_sentences.csv"))
    assert {lb["source"].split("/")[1] for lb in vsent} <= valid_voices
    assert any(lb["kind"] == "keyword" for lb in vsent)
    assert not {lb["source"].rsplit("/", 1)[1] for lb in vsent} & {lb["source"].rsplit("/", 1)[1] for lb in sent
                                                                    if lb["kind"] == "filler"}
    assert "sentences of the same speakers" in blob["stream"]["chosen_on"]
    from kws_okd.evaluate.voice_lines import HEDGEWARS_VOICES
    if HEDGEWARS_VOICES.is_dir():   # people talking, no keyword in it
        vr = json.loads(next(tmp_path.rglob("long_audio/valid_real.json")).read_text())
        assert vr["minutes"] <= 1.5 + 1 / 60 and vr["lines"] > 5 and vr["n_keywords"] == 0
        # The thresholds are chosen on it too; it is scored at them, false alarms only.
        assert "voice lines" in blob["stream"]["chosen_on"] and r["talk_fa"] >= 0
        assert "valid_real" not in r["long_audio"] and "People talking" in text
        # People saying command words in the same game's lines: all 60, scored for hits.
        kl = json.loads(next(tmp_path.rglob("long_audio/valid_real_keywords.json")).read_text())
        assert kl["n_keywords"] == kl["lines"] == r["kwline_events"] == 60
        assert 0 <= r["kwline_hits"] <= 60 and r["kwline_fa"] >= 0
        assert summary["methods"]["okd_real"]["kwline_hits_runs"] == [r["kwline_hits"]]
        assert "People saying command words" in text and f"{r['kwline_hits']} of 60" in text
        assert 0 <= r["kwline_top"] <= 60 and summary["methods"]["okd_real"]["kwline_top_runs"] == [r["kwline_top"]]
        assert f" | {r['kwline_top']} of 60 |" in text   # the last column: no thresholds
    if real:   # real people's sentences: cut to 3x the recordings' 0.5 min here, scored like the rest
        rp = json.loads(next(tmp_path.rglob("long_audio/test_real_prompts.json")).read_text())
        assert rp["minutes"] <= 1.5 + 1 / 60 and rp["prompts"] > 5
        assert r["real_events"] == rp["n_keywords"] and 0 <= r["real_hits"] <= r["real_events"]
        assert r["real_fa"] >= 0 and "Real people's sentences" in text
        assert (out / "det_test_real_prompts.png").exists()
    # The fast streaming path of the final file (thresholds stored) is prepared next to it
    # and inside it.
    from pathlib import Path

    from kws_okd.stream.fast import embedded_entry, model_digest
    student = Path(report["models"]["bcresnet2_20ms-erm/seed0"]["path"])
    assert (student.parent / ".kws-okd-cache" / f"stream-{model_digest(student)[:20]}" / "fast.json").is_file()
    carried = json.loads(embedded_entry(student)["fast.json"])
    assert carried["stream"]["thresholds"] == thr != {}
    assert "Task: **12-class**" in text
    assert (out / "curves.png").exists() and summary["methods"]["erm"]["steps"] > 0
    # The students trained side by side, one thread each, and counted their steps.
    from kws_okd.train.sweep import read_progress
    for name in ("bcresnet2_20ms-erm/seed0", "bcresnet2_20ms-okd_real/seed0"):
        run = Path(report["models"][name]["path"]).parent
        assert "threads: 1" in (run / "config.yaml").read_text().splitlines()
        done, total = read_progress(run)
        assert done == total == json.loads((run / "train_summary.json").read_text())["steps"]


def read_labels_of(root, name):
    from kws_okd.stream.longaudio import read_labels
    return read_labels(next(root.rglob(f"long_audio/{name}.csv")))


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

    # With an _unknown_ class: the share of windows whose top class is a command word.
    # The student is made to say "yes" to everything, the teacher never.
    for name, bias in (("t", [-100.0, 0.0, 0.0]), ("s", [100.0, 0.0, 0.0])):
        net = build_model("bcresnet1", num_classes=3).eval()
        with torch.no_grad():
            net.backbone.head[5].bias.copy_(torch.tensor(bias))
        save_model(paths[name], net, {"name": "bcresnet1"}, ["yes", "_unknown_", "_silence_"], {})
    out = teacher_agreement(paths, "t", x, batch=4)
    assert out["t"]["kw_calls"] == 0.0 and out["s"]["kw_calls"] == 1.0
    assert out["s"]["agree"] == 0.0


def test_eval_set_tags_follow_the_file_name(tmp_path):
    from kws_okd.evaluate.report import find_eval_sets
    for stem, tag in (("real_dev", "real"), ("test_ood_flite", "ood"), ("test_id", "id")):
        csv = tmp_path / f"{stem}.csv"
        csv.write_text("ID,wav,word,label\n")
        assert find_eval_sets(csv) == {stem: (csv, tag)}


def test_learning_curve_is_read_against_optimiser_steps(tmp_path):
    from kws_okd.evaluate.curves import read_curve
    (tmp_path / "train_summary.json").write_text(json.dumps({"epochs": 2, "steps": 70}))
    (tmp_path / "train_log.txt").write_text(
        "epoch: 1, lr: 1.00e-02 - train loss: 2.10e+00, train acc: 3.00e-01 - valid loss: 1.9, valid acc: 4.00e-01\n"
        "epoch: 2, lr: 5.00e-03 - train loss: 1.00e+00, train acc: 6.50e-01 - valid loss: 1.1, valid acc: 7.25e-01\n")
    c = read_curve(tmp_path)
    assert c["step"] == [35, 70] and c["valid_acc"] == [0.4, 0.725] and c["train_acc"] == [0.3, 0.65]
    assert c["valid_loss"] == [1.9, 1.1]


def test_results_page_points_its_links_at_the_report_folder(tmp_path):
    from kws_okd.pipeline import write_results_page
    report = tmp_path / "results" / "synth" / "report"
    report.mkdir(parents=True)
    (report / "summary.md").write_text("| a |\n\nDET: [det_test_clean.png](det_test_clean.png), "
                                       "[web](https://x.org/a), [here](#top), [shift](shift/severity.md)\n")
    page = tmp_path / "docs" / "results.md"
    write_results_page(report / "summary.md", page)
    text = page.read_text()
    assert "[det_test_clean.png](../results/synth/report/det_test_clean.png)" in text
    assert "[shift](../results/synth/report/shift/severity.md)" in text
    assert "[web](https://x.org/a)" in text and "[here](#top)" in text
    assert text.startswith("<!-- written by `kws-okd run --results-page")
