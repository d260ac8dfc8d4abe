"""A run folder is reused or resumed only for the config, data and teacher that made it."""
import json
import os
import time

import pytest
import torch

from kws_okd.data import gsc
from kws_okd.train.checkpoint import load_model, save_model, set_stream_thresholds
from kws_okd.train.config import load_recipe
from kws_okd.train.provenance import (PROVENANCE_FILE, differences, manifest_digest, run_provenance,
                                      stale_reasons, weights_digest)
from kws_okd.train.run import finished_run, train, training_manifests


def test_differences_name_changed_keys_and_ignore_options_added_at_their_off_value():
    old = {"seed": 0, "optim": {"lr": 0.01, "wd": 0.0}, "data": {"families": ["a", "b"]}}
    assert differences(old, old) == []
    new = {"seed": 0, "optim": {"lr": 0.02, "wd": 0.0}, "data": {"families": ["a", "b", "c"]},
           "train_without_domains": [], "callbacks": None, "flag": False}
    assert differences(old, new) == ["data.families", "optim.lr"]
    # An option added since counts when it is on, and one removed counts when it was.
    assert differences(old, {**old, "train_without_domains": ["real_speech"]}) == ["train_without_domains"]
    assert differences({**old, "extra": {"p": 0.5}}, old) == ["extra"]
    assert differences({"a": 1}, {"a": 1.0}) == []          # YAML / JSON round trips keep numbers equal


def test_manifest_digest_follows_the_rows_not_where_the_checkout_lives(tmp_path):
    def write(folder, root, label="3"):
        folder.mkdir()
        head = "ID,wav,duration,spk_id,domain,word,label,offset\n"
        (folder / "train.csv").write_text(head + f"down/a_0,{root}/down/a_0.wav,1.0,a,espeak,down,{label},0\n")
        (folder / "valid.csv").write_text(head + f"up/b_0,{root}/up/b_0.wav,1.0,b,espeak,up,2,0\n")
        (folder / "classes.txt").write_text("yes\nno\nup\ndown\n")
        return manifest_digest(folder / "train.csv", folder)

    here = write(tmp_path / "m1", "/home/me/data")
    assert write(tmp_path / "m2", "/srv/elsewhere") == here
    assert write(tmp_path / "m3", "/home/me/data", label="2") != here


@pytest.fixture(scope="module")
def manifests(tiny_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("manifests")
    gsc.prepare(tiny_corpus, out, task="35", ood_domains=["flite"])
    return out


def recipe(manifests, tiny_corpus, tmp_path, *extra):
    return load_recipe("student", ["data=gsc", f"data.root={tiny_corpus}", "data.task=35",
                                   "data.ood_domains=[flite]", f"data.manifest_dir={manifests}",
                                   f"results_dir={tmp_path}/results", "epochs=1", "steps=null", "batch_size=32",
                                   "progress=false", "student=bcresnet1", *extra])


def test_a_run_of_another_config_is_set_aside_and_trained_again(manifests, tiny_corpus, tmp_path):
    cfg = recipe(manifests, tiny_corpus, tmp_path, "distill=erm")
    assert not finished_run(cfg)
    pt = train(cfg)
    assert finished_run(cfg)
    # How a run is executed is not what it learns: no retraining for progress bars or threads.
    assert finished_run(recipe(manifests, tiny_corpus, tmp_path, "distill=erm", "threads=1", "progress=true"))
    first = load_model(pt)[1]["state_dict"]

    changed = recipe(manifests, tiny_corpus, tmp_path, "distill=erm", "optim.lr=0.05")
    assert changed.exp_dir == cfg.exp_dir and not finished_run(changed)
    with pytest.warns(UserWarning, match=r"optim\.lr.*moved to seed0\.stale-1, training again"):
        train(changed)
    aside = pt.parent.with_name("seed0.stale-1")
    # Nothing is lost: the old run is kept whole, with its weights and its record.
    kept = load_model(aside / "model.pt")[1]["state_dict"]
    assert kept.keys() == first.keys() and all(torch.equal(kept[k], first[k]) for k in first)
    assert json.loads((aside / PROVENANCE_FILE).read_text())["config"]["optim"]["lr"] == pytest.approx(0.01)
    assert json.loads((pt.parent / PROVENANCE_FILE).read_text())["config"]["optim"]["lr"] == 0.05
    assert finished_run(changed) and not finished_run(cfg)

    # A longer budget is no new run: it resumes where the finished one stopped.
    longer = recipe(manifests, tiny_corpus, tmp_path, "distill=erm", "optim.lr=0.05", "epochs=2")
    assert not finished_run(longer)
    train(longer)
    assert not pt.parent.with_name("seed0.stale-2").exists()
    log = (pt.parent / "train_log.txt").read_text()
    assert log.count("epoch: 1,") == 1 and log.count("epoch: 2,") == 1


def test_a_student_is_stale_when_its_teacher_changes_but_not_when_thresholds_are_stored(
        manifests, tiny_corpus, tmp_path):
    teacher = train(recipe(manifests, tiny_corpus, tmp_path, "distill=erm", "seed=5"))
    kd = recipe(manifests, tiny_corpus, tmp_path, "distill=kd", f"teacher_ckpt={teacher}")
    train(kd)
    assert finished_run(kd)
    before = weights_digest(teacher)
    set_stream_thresholds(teacher, {"yes": 0.7})       # written into the file after training
    assert weights_digest(teacher) == before and finished_run(kd)

    model, blob = load_model(teacher)
    with torch.no_grad():
        next(iter(model.parameters())).add_(0.1)
    save_model(teacher, model, blob["model"], blob["classes"], blob["info"])
    assert weights_digest(teacher) != before
    assert not finished_run(kd)


def test_a_run_from_before_provenance_files_is_judged_by_its_config_and_its_teachers_age(
        manifests, tiny_corpus, tmp_path):
    teacher = train(recipe(manifests, tiny_corpus, tmp_path, "distill=erm", "seed=6"))
    kd = recipe(manifests, tiny_corpus, tmp_path, "distill=kd", f"teacher_ckpt={teacher}", "seed=1")
    run = train(kd).parent
    (run / PROVENANCE_FILE).unlink()                    # as an older checkout left it: config.yaml only
    assert finished_run(kd)
    assert not finished_run(recipe(manifests, tiny_corpus, tmp_path, "distill=kd", f"teacher_ckpt={teacher}",
                                   "seed=1", "optim.weight_decay=0.1"))
    # The teacher trained again (it has a provenance file newer than the student's start).
    later = time.time() + 5
    os.utime(teacher.parent / PROVENANCE_FILE, (later, later))
    manifest_dir, train_csv = training_manifests(kd)
    current = run_provenance(kd, train_csv, manifest_dir, teacher)
    assert stale_reasons(run, current, teacher) == ["teacher trained again after this run started"]
    assert not finished_run(kd)


def test_options_since_removed_count_only_when_they_were_on(tmp_path):
    """A run of an older checkout recorded options the #36 prune removed: left off, they
    are no change (its folder is reused); switched on, it learnt from something else."""
    cfg = {"role": "student", "seed": 0}
    old = {**cfg, "background_noise": {"p": 0.0, "snr": [0.0, 20.0]}, "spec_augment": {"p": 0.0}}
    (tmp_path / PROVENANCE_FILE).write_text(json.dumps({"config": old, "data": "d"}))
    assert stale_reasons(tmp_path, {"config": cfg, "data": "d"}) == []
    assert stale_reasons(tmp_path, {"config": {**cfg, "seed": 1}, "data": "d"}) == ["config seed"]
    (tmp_path / PROVENANCE_FILE).write_text(json.dumps({"config": {**old, "band_limit": {"p": 0.5}}, "data": "d"}))
    assert stale_reasons(tmp_path, {"config": cfg, "data": "d"}) == ["config band_limit"]
    # A teacher is not judged by what only students hear (speech around the word).
    teacher = {"role": "teacher", "seed": 0, "context_speech": {"p": 0.5, "teacher_hears": "clean"}}
    (tmp_path / PROVENANCE_FILE).write_text(json.dumps({"config": teacher, "data": "d"}))
    assert stale_reasons(tmp_path, {"config": {**teacher, "context_speech": {"p": 0.0}}, "data": "d"}) == []
    student = {**teacher, "role": "student"}
    (tmp_path / PROVENANCE_FILE).write_text(json.dumps({"config": student, "data": "d"}))
    assert stale_reasons(tmp_path, {"config": {**student, "context_speech": {"p": 0.5}}, "data": "d"}) == []
    assert stale_reasons(tmp_path, {"config": {**student, "context_speech": {"p": 0.0}}, "data": "d"}) == [
        "config context_speech.p"]
