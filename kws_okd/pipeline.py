"""The default end-to-end job: corpus -> teacher -> ERM/KD/OKD students -> report."""
from __future__ import annotations

import os
import warnings
from collections import Counter
from pathlib import Path

import torch

from kws_okd.data.manifest import read_classes
from kws_okd.data.registry import corpus_noise_dir, prepare_data
from kws_okd.errors import KWSError
from kws_okd.evaluate.compare import mean_std
from kws_okd.evaluate.long_audio import LOWEST_THRESHOLD, frr_at
from kws_okd.evaluate.report import evaluate
from kws_okd.train.config import RECIPES, load_recipe
from kws_okd.train.run import finished_run, train
from kws_okd.utils.atomic import write_json, write_text

METRICS = ("id_acc", "ood_acc", "real_acc", "select_acc", "real43_acc", "kw_as_unknown", "gap_id", "gap_ood", "gap_real", "agree_real", "kl_real", "kwcall_real",
           "frr1_clean", "frr1_snr5", "kw_frr_clean", "kw_fa_clean", "kw_frr_snr5", "kw_fa_snr5",
           "frr1_sent", "kw_frr_sent", "kw_fa_sent", "real_hits", "real_events", "real_fa", "frr1_real", "talk_fa",
           "kwline_hits", "kwline_events", "kwline_fa", "kwline_top",
           "people_recall", "people_events", "people_fa", "people_frr1")


def method_overrides(method: str) -> list[str]:
    """A method with a file in recipes/kws/method (e.g. ``okd_rnc``: OKD whose x_ood comes
    from the room / noise / channel policy) brings its own groups; any other name is a
    distillation objective (``distill=<name>``)."""
    if (RECIPES / "kws" / "method" / f"{method}.yaml").exists():
        return [f"+method={method}"]
    return [f"distill={method}"]


def real_dev_set(manifests) -> dict:
    """The real-speech sets every report scores: the development set's ``report``
    speakers (the ``real`` column, class-balanced) and its ``select`` speakers, which the
    ``_unknown_`` calibration is chosen on (kws_okd/data/people.py); and, when their
    Debian packages are installed, the older 43 clips of the alsa-utils voice and the
    Asterisk prompts (``real43``: keyword clips and non-keyword ones, as two sets)."""
    from kws_okd.data.manifest import read_manifest, write_manifest
    from kws_okd.data.people import people_manifest
    from kws_okd.data.real_speech import build_real_dev
    from kws_okd.data.words import UNKNOWN
    sets = {f"people_{role}": (people_manifest(manifests, role), tag)
            for role, tag in (("report", "real"), ("select", "select"))}
    try:
        csv = build_real_dev(Path(manifests) / "real_dev", read_classes(Path(manifests) / "classes.txt"))
    except KWSError as e:
        warnings.warn(f"no real43 column: {e}", stacklevel=2)
        return sets
    rows = read_manifest(csv)
    unk = [r for r in rows if r["word"] == UNKNOWN]
    if not unk or len(unk) == len(rows):
        return {**sets, "real_dev": (csv, "real43")}
    for name, part in (("real_dev_keywords", [r for r in rows if r["word"] != UNKNOWN]),
                       ("real_dev_unknown", unk)):
        write_manifest(csv.with_name(f"{name}.csv"), part)
        sets[name] = (csv.with_name(f"{name}.csv"), "real43")
    return sets


def long_audio_recordings(manifests, corpus_noise, held_real, real_dev: dict, minutes: float = 8.0,
                          talk_split: bool = False) -> dict:
    """The validation and test recordings (clean and 5 dB) every report scores, built once
    per corpus and reused (kws_okd/evaluate/long_audio.py), and, on a synthetic corpus,
    ``test_sentences``: keywords inside sentences spoken by the held-out families' voices
    (kws_okd/evaluate/sentences.py); with hedgewars-data installed, ``valid_real``: people
    talking, where only false alarms are counted, and ``valid_real_keywords``: its lines
    named for a command word (kws_okd/evaluate/voice_lines.py); with
    asterisk-core-sounds-en-wav installed,
    ``test_real_prompts``: real people's sentences (kws_okd/evaluate/real_prompts.py).
    ``talk_split``: a student trained on half the voice packs (``real_audio.talk``), so
    ``valid_real`` holds the other half only."""
    import json

    from kws_okd.data.tts import ENGINES
    from kws_okd.evaluate.long_audio import build_long_audio, build_people_recordings
    from kws_okd.evaluate.real_prompts import build_real_prompts
    from kws_okd.evaluate.sentences import build_sentences
    from kws_okd.evaluate.voice_lines import build_valid_real, build_valid_real_keywords
    from kws_okd.stream.engine import default_keywords
    real_csv = next((v[0] for v in real_dev.values() if v[1] == "real43"), None)
    if real_csv is not None:
        real_csv = Path(real_csv).with_name("real_dev.csv")
    out = Path(manifests) / "long_audio"
    recs = build_long_audio(manifests, corpus_noise, out, held_real, real_csv, minutes=minutes, snrs=(None, 5.0))
    proto = json.loads((Path(manifests) / "protocol.json").read_text())
    families = [f for f in proto.get("ood_domains", []) if f in ENGINES and ENGINES[f].available()]
    keywords = default_keywords(read_classes(Path(manifests) / "classes.txt"))
    valid_voices = split_voices(proto, "validation")
    if valid_voices:   # running speech of the training families, for the thresholds
        recs["valid_sentences"] = build_sentences([], keywords, out, minutes=min(6.0, minutes),
                                                  name="valid_sentences", voices=valid_voices, texts="valid")
    if families:
        recs["test_sentences"] = build_sentences(families, keywords, out, minutes=min(6.0, minutes))
    # People talking (a game's voice lines, no keyword in them: false alarms only) and real
    # people's sentences (evaluation only): all of each (19 and 23 min) at the default 8 min.
    whole = None if minutes >= 8 else 3 * minutes
    from kws_okd.data.real_speech import talk_packs
    packs = [p.name for p in talk_packs("valid")] if talk_split else None
    talk = build_valid_real(out, keywords, max_minutes=whole, packs=packs)
    if talk is not None:
        recs["valid_real"] = talk
        recs["valid_real_keywords"] = build_valid_real_keywords(out, keywords)
    real = build_real_prompts(out, keywords, max_minutes=whole)
    if real is not None:
        recs["test_real_prompts"] = real
    # Real people's keywords in running audio: the development set's select speakers
    # (thresholds) and report speakers (reported only).
    recs.update(build_people_recordings(manifests, corpus_noise, out, held_real, minutes=minutes))
    return recs


def split_voices(proto: dict, split: str) -> list:
    """The synthetic voices of the training families in a corpus ``split`` (its
    ``speakers.csv``; ``proto`` is the manifests' ``protocol.json``), or none when the
    corpus has no such record (a real corpus)."""
    import csv

    from kws_okd.data.tts import ENGINES, voice_from_name
    speakers = Path(proto.get("root", "")) / "speakers.csv"
    if not proto.get("root") or not speakers.is_file():
        return []
    train, ood = proto.get("train_domains"), set(proto.get("ood_domains") or [])
    with open(speakers, newline="") as f:   # no train_domains: every family not held out
        rows = [r for r in csv.DictReader(f) if r["split"] == split
                and (r["domain"] in train if train else r["domain"] not in ood)]
    return [voice_from_name(r["voice"]) for r in rows
            if r["domain"] in ENGINES and ENGINES[r["domain"]].available()]


def validation_recordings(recs: dict) -> list:
    """The recordings thresholds are chosen on (:data:`THRESHOLD_RECORDINGS`)."""
    return [v for k, v in recs.items() if k in THRESHOLD_RECORDINGS]


# Thresholds are chosen on synthetic words and sentences of the training families'
# validation speakers, real people saying the words (the development set's select
# speakers) and people talking with no command word in it (hedgewars): each keyword's
# threshold is the lowest that keeps every one of them within its share of 1 FA/h.
THRESHOLD_RECORDINGS = ("valid", "valid_sentences", "valid_people", "valid_real")
# No stored threshold below this: kws_okd/evaluate/long_audio.py's default (the 0.98 floor
# stood in for people talking, now a threshold recording itself).
THRESHOLD_FLOOR = LOWEST_THRESHOLD
THRESHOLDS_CHOSEN_ON = ("validation long audio: isolated words (training families' validation speakers, "
                        "held-out real recordings, music), sentences of the same speakers, the development "
                        "set's select speakers, and people talking (hedgewars voice lines); "
                        f"none below {THRESHOLD_FLOOR}")


# What a model card reports of the stored thresholds: real people's keywords (report
# speakers), people talking, and real people's sentences.
MEASURED_RECORDINGS = {"test_people": "real people's keywords in running audio (report speakers)",
                       "valid_real": "people talking, no keyword (a threshold recording)",
                       "test_real_prompts": "real people's sentences (Asterisk prompts)"}


def measured_at_thresholds(result: dict) -> dict:
    """Recall and false alarms per hour at the stored thresholds on the recordings of
    :data:`MEASURED_RECORDINGS` a model was scored on (stored with its thresholds)."""
    out = {}
    for rec, what in MEASURED_RECORDINGS.items():
        pk = (result.get(rec) or {}).get("per_keyword")
        if pk:
            out[rec] = dict(what=what, keywords=pk["n_events"], found=pk["hits"],
                            fa_per_hour=round(float(pk["fa_per_hour"]), 2))
    return out


def default_jobs(n_jobs: int) -> int:
    """Worker processes for ``n_jobs`` trainings or traces: one per CPU core, at most four
    (a training run holds its corpus in memory)."""
    return max(1, min(n_jobs, os.cpu_count() or 1, 4))


def long_audio_eval(models: dict, manifests, out: Path, corpus_noise, held_real, real_dev: dict,
                    fa_per_hour: float = 1.0, minutes: float = 8.0, jobs: int | None = None,
                    talk_split: bool = False) -> dict:
    """Per student: per-keyword thresholds chosen on the validation recordings (isolated
    words and sentences) for ``fa_per_hour`` (stored in its model.pt), then FRR at 0.5/1/2 FA/h and at those
    thresholds on the clean and 5 dB test recordings (kws_okd/evaluate/long_audio.py).
    The score traces come from ``jobs`` processes at once (None: one per core, at most 4)."""
    from kws_okd.evaluate.long_audio import calibrate_traces, score_at_thresholds, score_trace, trace_files
    from kws_okd.stream.engine import StreamConfig
    from kws_okd.stream.fast import FastPathUnavailable, load_fast_model
    from kws_okd.stream.longaudio import plot_det, read_labels
    from kws_okd.train.checkpoint import load_model, set_stream_thresholds
    cache_dir = Path(manifests) / "long_audio" / "fast_models"   # scratch: model.pt changes below
    from kws_okd.data.registry import clip_seconds_of
    recs = long_audio_recordings(manifests, corpus_noise, held_real, real_dev, minutes, talk_split)
    cfg = StreamConfig(window_s=clip_seconds_of(Path(manifests) / "train.csv"))
    students = {}
    for name, path in models.items():
        model, blob = load_model(path)
        if blob["model"].get("name") == "speech_embedding":
            continue   # minutes per recording on a CPU; the students are what gets deployed
        students[name] = path
        try:   # the path `kws-okd stream` takes by default: same scores, several times faster;
            load_fast_model(path, cache_dir)   # built here once, before the workers read it
        except FastPathUnavailable:
            pass
    pairs = [(p, w) for p in students.values() for w in recs.values()]
    traces = trace_files(pairs, cfg, cache_dir, jobs=jobs or default_jobs(len(pairs)))
    labels = {k: read_labels(Path(w).with_suffix(".csv")) for k, w in recs.items()}
    valid = [k for k in recs if k in THRESHOLD_RECORDINGS]
    results = {}
    for name, path in students.items():
        tr = {k: traces[(str(path), str(w))] for k, w in recs.items()}
        thr = calibrate_traces([(tr[k], labels[k]) for k in valid], cfg, fa_per_hour, THRESHOLD_FLOOR)
        # The threshold recordings are not scored, but for people talking: no keyword in
        # it, its false alarms only.
        results[name] = dict(thresholds=thr, **{
            k: {"per_keyword": score_at_thresholds(tr[k], labels[k], cfg, thr)} if k == "valid_real"
            else score_trace(tr[k], labels[k], cfg, thr) for k in recs if k not in valid or k == "valid_real"})
        set_stream_thresholds(path, thr, target_fa_per_hour=fa_per_hour, hop_ms=cfg.hop_ms, smooth=cfg.smooth,
                              refractory_s=cfg.refractory_s, chosen_on=THRESHOLDS_CHOSEN_ON,
                              measured=measured_at_thresholds(results[name]))
        try:   # storing the thresholds changed the file: prepare its fast-path entry now, next
            load_fast_model(path, embed=True)   # to it and inside it, so that the first `kws-okd
            # stream` on it, or on a copy of model.pt alone, starts warm
        except (FastPathUnavailable, KWSError):
            pass
    for rec in (k for k in recs if k in TEST_RECORDINGS):
        plot_det({n: r[rec]["curve"] for n, r in results.items()}, out / f"det_{rec}.png",
                 f"DET on {rec} ({results[next(iter(results))][rec]['minutes']:g} min)")
    write_json(out / "long_audio.json", {n: {k: ({kk: vv for kk, vv in v.items() if kk != "curve"}
                                                  if isinstance(v, dict) and "curve" in v else v)
                                              for k, v in r.items()} for n, r in results.items()})
    return results


@torch.no_grad()
def teacher_agreement(models: dict, teacher: str, windows: torch.Tensor, batch: int = 256) -> dict:
    """How closely each model hears held-out real recordings as the teacher does: top-1
    agreement with the teacher and ``KL(teacher || model)`` (T = 1, nats), per model. With
    an ``_unknown_`` class also ``kw_calls``: the share of the windows (letters and
    syllables, no command word) whose top class is a command word."""
    from kws_okd.distill.losses import kl_per_sample
    from kws_okd.stream.engine import default_keywords
    from kws_okd.train.checkpoint import load_model

    def logits(path):
        model, blob = load_model(path)
        return torch.cat([model(windows[i:i + batch]) for i in range(0, len(windows), batch)]), blob["classes"]

    t, classes = logits(models[teacher])
    log_pt = t.log_softmax(-1)
    keywords = torch.tensor([c in default_keywords(classes) for c in classes])
    out = {}
    for name, path in models.items():
        s = t if name == teacher else logits(path)[0]
        top = s.argmax(-1)
        out[name] = dict(agree=float((top == t.argmax(-1)).float().mean()),
                         kl=float(kl_per_sample(log_pt, s.log_softmax(-1)).mean()))
        if "_unknown_" in classes:
            out[name]["kw_calls"] = float(keywords[top].float().mean())
    return out


def heldout_real_windows():
    """The recordings the real-audio OKD recipe holds out of training (same folders, split
    and seed as recipes/kws/augment/real_audio.yaml), with their description."""
    from kws_okd.augment.real_audio import default_cache_dir
    from kws_okd.data.real_speech import default_real_audio_folders, load_real_windows
    try:
        _, held, info = load_real_windows(default_real_audio_folders(), default_cache_dir(),
                                          holdout_frac=0.2, seed=0, return_info=True)
    except KWSError as e:
        warnings.warn(f"no teacher-agreement check on real audio: {e}", stacklevel=2)
        return None, None
    return held, info


def train_students(runs: dict[str, list[str]], jobs: int | None = None) -> dict[str, Path]:
    """Train the student runs (name -> recipe overrides) not yet finished, ``jobs`` at a
    time (None: :func:`default_jobs`); return each run's ``model.pt`` path.

    Each run trains on one thread whatever ``jobs`` is, so a run's weights do not depend
    on how many cores the machine has (unless its overrides set ``threads``). Two runs on
    one thread each get through about 1.7 times the steps of one run on two threads
    (2 cores here; docs/decisions.md). OKD runs, the longest, start first."""
    from kws_okd.train.sweep import one_thread, train_runs
    runs = {name: one_thread(r) for name, r in runs.items()}
    cfgs = {name: load_recipe("student", r) for name, r in runs.items()}
    paths = {name: Path(c.exp_dir) / "model.pt" for name, c in cfgs.items()}
    okd_first = sorted(runs, key=lambda name: not cfgs[name].distill.name.startswith("okd"))
    todo = [runs[name] for name in okd_first if not finished_run(cfgs[name])]
    if todo:
        threads = torch.get_num_threads()
        try:
            train_runs("student", todo, jobs=jobs or default_jobs(len(todo)), progress=True)
        finally:   # one job trains in this process, on one thread; the evaluation gets them all back
            torch.set_num_threads(threads)
    return paths


def run_pipeline(overrides=(), methods=("erm", "kd", "okd_real"), seeds=(0,), student="bcresnet2_20ms",
                 teacher_overrides=(), out=None, shift_suite: str | None = "compact",
                 reference_teachers=(), long_audio_minutes: float | None = 8.0, jobs: int | None = None,
                 results_page=None) -> dict:
    overrides = list(overrides)
    tcfg = load_recipe("teacher", overrides + list(teacher_overrides))
    manifests = prepare_data(tcfg.data, progress=tcfg.progress)
    teacher_pt = Path(tcfg.exp_dir) / "model.pt"
    if not finished_run(tcfg):  # finished runs of this config and data are reused; unfinished ones resume
        train(tcfg)
    models = {"teacher": teacher_pt}
    # Other teachers, trained only to be compared with (no student learns from them).
    for name in reference_teachers:
        if name == tcfg.teacher.name:
            continue
        rcfg = load_recipe("teacher", overrides + [f"teacher={name}"])
        pt = Path(rcfg.exp_dir) / "model.pt"
        if not finished_run(rcfg):
            train(rcfg)
        models[f"teacher-{name}"] = pt
    runs = {f"{student}-{m}/seed{seed}": overrides + method_overrides(m) + [f"student={student}", f"seed={seed}"]
            for seed in seeds for m in methods}
    models.update(train_students(runs, jobs))
    # Students that heard people talking (real_audio.talk): the people-talking threshold
    # recording keeps to the voice packs they did not hear.
    talk_split = any(load_recipe("student", r).augment.get("talk") for r in runs.values())
    out = Path(out or Path(tcfg.results_dir) / tcfg.data.name / "report")
    real_dev = real_dev_set(manifests)
    report = evaluate(models, manifests, out, teacher="teacher", extra_sets=real_dev)
    for r in report["models"].values():
        r["kw_as_unknown"] = keywords_called_unknown(r["sets"].get("people_report", {}).get("per_class"))
    held, real_info = heldout_real_windows()
    if held is not None:
        for name, a in teacher_agreement(models, "teacher", held).items():
            report["models"][name].update(agree_real=a["agree"], kl_real=a["kl"], kwcall_real=a.get("kw_calls"))
    if long_audio_minutes and "_unknown_" in read_classes(Path(manifests) / "classes.txt"):
        for name, r in long_audio_eval(models, manifests, out, corpus_noise_dir(tcfg.data), held, real_dev,
                                       minutes=long_audio_minutes, jobs=jobs, talk_split=talk_split).items():
            kw = {rec: r[rec]["per_keyword"] for rec in ("test_clean", "test_snr5")}
            report["models"][name].update(
                frr1_clean=frr_at(r["test_clean"], 1.0), frr1_snr5=frr_at(r["test_snr5"], 1.0),
                kw_frr_clean=kw["test_clean"]["frr"], kw_fa_clean=kw["test_clean"]["fa_per_hour"],
                kw_frr_snr5=kw["test_snr5"]["frr"], kw_fa_snr5=kw["test_snr5"]["fa_per_hour"],
                kw_errors_clean=dict(false_alarms_by=kw["test_clean"]["false_alarms_by"],
                                     misses_by=kw["test_clean"]["misses_by"]),
                **_sentence_metrics(r.get("test_sentences")), **_real_prompt_metrics(r.get("test_real_prompts")),
                **({"talk_fa": r["valid_real"]["per_keyword"]["fa_per_hour"]} if "valid_real" in r else {}),
                **_keyword_line_metrics(r.get("valid_real_keywords")), **_people_metrics(r.get("test_people")),
                long_audio={rec: r[rec]["frr_at"] for rec in TEST_RECORDINGS if rec in r})
    write_json(out / "report.json", report)
    from kws_okd.evaluate.curves import plot_curves
    plot_curves({m: Path(models[f"{student}-{m}/seed{seeds[0]}"]).parent for m in methods}, out / "curves.png",
                f"{student} students, seed {seeds[0]}: accuracy against optimiser steps")
    summary = summarize(report, student, methods, seeds)
    summary["task"] = f"{len(read_classes(Path(manifests) / 'classes.txt'))}-class"
    summary["long_audio_minutes"] = long_audio_minutes
    summary["real_audio"] = real_info
    if shift_suite:
        # Shifted copies of the ID test set made by generators held out from training
        # (docs/shift_suite.md); accuracy per condition and severity.
        from kws_okd.data.shift import build_suite
        from kws_okd.evaluate.severity import severity_report
        suite = build_suite(manifests, Path(manifests).parent / f"shift_{shift_suite}", shift_suite, seed=0)
        shift_report = evaluate(models, suite, out / "shift", teacher="teacher", plots=False)
        severity_report(shift_report, suite, out / "shift")
        summary["shift"] = {name: r["ood_acc"] for name, r in shift_report["models"].items()}
        for m, row in summary["methods"].items():
            ms = mean_std([summary["shift"][f"{student}-{m}/seed{s}"] for s in seeds])
            row["suite_acc"] = dict(mean=ms[0], std=ms[1], n=len(seeds))
    write_json(out / "summary.json", summary)
    write_text(out / "summary.md", render_summary(summary, report))
    if results_page:
        write_results_page(out / "summary.md", Path(results_page))
    return report


def write_results_page(summary_md: Path, page: Path) -> None:
    """``page``: the run's summary with its relative links (plots, report.md) pointing at
    the report folder, and a line saying where it came from."""
    import os
    import re
    rel = Path(os.path.relpath(summary_md.parent.resolve(), page.parent.resolve()))
    text = summary_md.read_text()
    text = re.sub(r"\]\((?!https?:|/|#)([^)]+)\)", lambda m: f"]({(rel / m.group(1)).as_posix()})", text)
    head = (f"<!-- written by `kws-okd run --results-page {page}` (make run); do not edit by hand -->\n"
            f"Copied from `{summary_md}` by the run that wrote it; the plots it links to are in that folder.\n\n")
    write_text(page, head + text)


TEST_RECORDINGS = ("test_people", "test_clean", "test_snr5", "test_sentences", "test_real_prompts")


def _real_prompt_metrics(r: dict | None) -> dict:
    """The report fields of the real-speech recording (none without the package)."""
    if not r:
        return {}
    pk = r["per_keyword"]
    return dict(real_hits=pk["hits"], real_events=pk["n_events"], real_fa=pk["fa_per_hour"],
                frr1_real=frr_at(r, 1.0, unreached=1.0))


def _people_metrics(r: dict | None) -> dict:
    """The report fields of real people's keywords in running audio (report speakers)."""
    if not r:
        return {}
    pk = r["per_keyword"]
    return dict(people_recall=pk["hits"] / max(1, pk["n_events"]), people_events=pk["n_events"],
                people_fa=pk["fa_per_hour"], people_frr1=frr_at(r, 1.0, unreached=1.0))


def _keyword_line_metrics(r: dict | None) -> dict:
    """The report fields of people saying command words in a game's lines (none without
    it, or when no line names a keyword of the model)."""
    if not r or "top_keyword" not in r:
        return {}
    pk = r["per_keyword"]
    return dict(kwline_hits=pk["hits"], kwline_events=pk["n_events"], kwline_fa=pk["fa_per_hour"],
                kwline_top=r["top_keyword"]["top"])


def _sentence_metrics(r: dict | None) -> dict:
    """The report fields of the keywords-inside-sentences recording (none without it)."""
    if not r:
        return {}
    return dict(frr1_sent=frr_at(r, 1.0), kw_frr_sent=r["per_keyword"]["frr"],
                kw_fa_sent=r["per_keyword"]["fa_per_hour"])


def keywords_called_unknown(per_class: dict | None) -> float | None:
    """The share of the keyword clips of a per-class breakdown called ``_unknown_``."""
    kw = {c: v for c, v in (per_class or {}).items() if not c.startswith("_")}
    n = sum(v["n"] for v in kw.values())
    return sum(v["called"].get("_unknown_", 0) for v in kw.values()) / n if n else None


def summarize(report, student, methods, seeds) -> dict:
    rows = {}
    for m in methods:
        runs = [report["models"][f"{student}-{m}/seed{s}"] for s in seeds]
        row = {}
        for key in METRICS:
            vals = [r[key] for r in runs if r.get(key) is not None]
            ms = mean_std(vals)
            row[key] = None if ms is None else dict(mean=ms[0], std=ms[1], n=len(vals))
        row["params"] = runs[0]["params"]
        row["steps"] = runs[0].get("steps")
        for key in ("real_hits", "kwline_hits", "kwline_top"):   # counts of events: shown per seed
            if any(r.get(key) is not None for r in runs):
                row[f"{key}_runs"] = [r.get(key) for r in runs]
        errors = [r["kw_errors_clean"] for r in runs if r.get("kw_errors_clean")]
        if errors:   # counts summed over seeds
            row["kw_errors_clean"] = {k: sum_counts(e[k] for e in errors) for k in errors[0]}
        rows[m] = row
    teachers = {name: {k: r.get(k) for k in ("id_acc", "ood_acc", "real_acc", "select_acc", "real43_acc",
                                             "kw_as_unknown", "agree_real", "kl_real", "kwcall_real")}
                | {"params": r.get("params")}
                for name, r in report["models"].items() if r.get("role") == "teacher"}
    return dict(student=student, seeds=list(seeds), methods=rows, teacher=teachers["teacher"],
                teachers=teachers)


def sum_counts(dicts) -> dict:
    """Counts added up over dicts, largest first."""
    total: Counter = Counter()
    for d in dicts:
        total.update(d)
    return dict(total.most_common())


def render_summary(summary, report) -> str:
    def ms(x, scale=100.0, digits=1):
        return "–" if x is None else f"{scale * x['mean']:.{digits}f} ± {scale * x['std']:.{digits}f}"

    def pct(x):
        return "–" if x is None else f"{100 * x:.1f}"

    real43 = [s for s, v in report["sets"].items() if v["tag"] == "real43"]
    n_real43 = sum(report["models"]["teacher"]["sets"][s]["n"] for s in real43)
    people = report["models"]["teacher"]["sets"].get("people_report", {})
    select = report["models"]["teacher"]["sets"].get("people_select", {})
    lines = ["# kws-okd default run", "",
             f"Task: **{summary.get('task', '?')}** ({'ten command words + _unknown_ + _silence_' if summary.get('task') == '12-class' else 'every word a class'}). "
             f"Student: {summary['student']}; seeds {summary['seeds']} (mean ± std over seeds). "
             "Each run's checkpoint is the one with the best training-domain validation accuracy; "
             "its `_unknown_` offset is chosen on the select speakers (kws_okd/train/calibrate.py). "
             "The OOD sets and the people of the report column were never used for training, selection or tuning.", "",
             f"Columns: **people** real people saying the Speech Commands words ({people.get('n', 0)} clips of the "
             "development set's *report* speakers, Speech Commands v0.01, CC BY 4.0: kws_okd/data/people.py), "
             "class-balanced accuracy (the mean of the per-class accuracies); **select** the same for the "
             f"{select.get('n', 0)} clips of the speakers the `_unknown_` offset was chosen on (not a fair "
             "estimate); **kw→unk** the share of people's keyword clips (report speakers) called `_unknown_`; "
             "**ID** unseen speakers of the training synthesisers; **OOD** held-out "
             "synthesiser families; **suite** the shifted-speech suite (noise, rooms, channels held "
             f"out from training); **real43** {n_real43} clips of the alsa-utils voice and Asterisk prompts "
             "(mostly one speaker); **agree / KL** "
             "top-1 agreement with the teacher and KL(teacher ‖ model) on held-out real recordings "
             "(klettres-data files never used in training); **kw calls** the share of those recordings "
             "(letters and syllables, no command word) whose top class is a command word.", "",
             "| model | params | **people %** | select % | kw→unk % | ID acc % | OOD acc % | suite % | real43 % | agree % | KL | kw calls % |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    shift = summary.get("shift", {})
    for name, t in summary["teachers"].items():
        kl = "–" if t.get("kl_real") is None else f"{t['kl_real']:.2f}"
        lines.append(f"| {name} ({report['models'][name]['method']}) | {t['params']:,} | **{pct(t['real_acc'])}** | "
                     f"{pct(t.get('select_acc'))} | {pct(t.get('kw_as_unknown'))} | {pct(t['id_acc'])} | "
                     f"{pct(t['ood_acc'])} | {pct(shift.get(name))} | {pct(t.get('real43_acc'))} | "
                     f"{pct(t['agree_real'])} | {kl} | {pct(t.get('kwcall_real'))} |")
    for m, r in summary["methods"].items():
        lines.append(f"| {summary['student']}-{m} | {r['params']:,} | **{ms(r['real_acc'])}** | "
                     f"{ms(r.get('select_acc'))} | {ms(r.get('kw_as_unknown'))} | "
                     f"{ms(r['id_acc'])} | {ms(r['ood_acc'])} | {ms(r.get('suite_acc'))} | "
                     f"{ms(r.get('real43_acc'))} | {ms(r['agree_real'])} | {ms(r['kl_real'], 1.0, 2)} | "
                     f"{ms(r.get('kwcall_real'))} |")
    lines += ["", "People (report speakers), per class: right / clips, summed over seeds for the students.", ""]
    per = {name: report["models"][name]["sets"].get("people_report", {}).get("per_class", {})
           for name in report["models"]}
    classes = list(next((p for p in per.values() if p), {}))
    if classes:
        rows = {"teacher": [per["teacher"]]} | {
            m: [per[f"{summary['student']}-{m}/seed{s}"] for s in summary["seeds"]] for m in summary["methods"]}
        lines += ["| model | " + " | ".join(classes) + " |", "|---" * (len(classes) + 1) + "|"]
        for name, ps in rows.items():
            lines.append(f"| {name} | " + " | ".join(
                f"{sum(p[c]['right'] for p in ps)}/{sum(p[c]['n'] for p in ps)}" for c in classes) + " |")
    lines += ["", "Gaps to the teacher (teacher minus student, points):", "",
              "| method | gap ID | gap OOD | gap real |", "|---|---|---|---|"]
    for m, r in summary["methods"].items():
        lines.append(f"| {m} | {ms(r['gap_id'])} | {ms(r['gap_ood'])} | {ms(r['gap_real'])} |")
    if any(r.get("frr1_clean") for r in summary["methods"].values()):
        lines += ["", f"Long audio (kws_okd/evaluate/long_audio.py): {summary.get('long_audio_minutes', 8):g}-min recordings of isolated words with "
                  "gaps. Positives: keywords of the held-out synthesiser families and of the real keyword "
                  "clips (drawn at random from one pool: the breakdown below shows which domains came "
                  "up); negatives: their other words, held-out real recordings (klettres files never "
                  "trained on), real NATO-alphabet prompts, music. **FRR @ 1 FA/h**: one threshold for "
                  "all keywords, the best of a sweep on the test recording itself (on 8 min, 1 FA/h "
                  "means no false alarm on a recording of minutes). **Stored thresholds**: per-keyword thresholds chosen on "
                  "separate validation recordings (isolated words, and sentences, of the training families' "
                  "validation speakers; the development set's select speakers; people talking) for 1 FA/h "
                  "and saved in each model.pt; the FRR and "
                  "false alarms per hour they give on the test recordings.", "",
                  "| method | FRR @ 1 FA/h clean % | FRR @ 1 FA/h 5 dB % | stored thr.: FRR clean % | FA/h clean "
                  "| FRR 5 dB % | FA/h 5 dB |", "|---|---|---|---|---|---|---|"]
        for m, r in summary["methods"].items():
            lines.append(f"| {m} | {ms(r['frr1_clean'])} | {ms(r['frr1_snr5'])} | {ms(r['kw_frr_clean'])} | "
                         f"{ms(r['kw_fa_clean'], 1.0)} | {ms(r['kw_frr_snr5'])} | {ms(r['kw_fa_snr5'], 1.0)} |")
        errs = {m: r["kw_errors_clean"] for m, r in summary["methods"].items() if r.get("kw_errors_clean")}
        if errs:
            def counts(d):
                return ", ".join(f"{k} {v}" for k, v in d.items()) or "none"
            lines += ["", "Where the stored thresholds fail on the clean test recording (counts summed over "
                      "seeds): what each false alarm fired on (a non-keyword's domain, `other keyword`, "
                      "`repeat` of a hit, or `no word`), and the missed keywords by domain.", "",
                      "| method | false alarms fired on | missed keywords |", "|---|---|---|"]
            for m, e in errs.items():
                lines.append(f"| {m} | {counts(e['false_alarms_by'])} | {counts(e['misses_by'])} |")
        methods = summary["methods"]

        def section(key, text, columns, row):
            """A paragraph and a table of one row per method, when some method has ``key``."""
            if any(r.get(key) is not None for r in methods.values()):
                lines.extend(["", text, "", "| method | " + " | ".join(columns) + " |",
                              "|---" * (len(columns) + 1) + "|"])
                lines.extend(f"| {m} | " + " | ".join(row(r)) + " |" for m, r in methods.items())

        def per_seed(r, key, n):
            """A count of events per seed, e.g. ``1/0/2 of 23``."""
            return "/".join(str(h) for h in r.get(f"{key}_runs", [])) + f" of {n:g}"
        n = next((r["people_events"]["mean"] for r in methods.values() if r.get("people_events")), 0)
        section("people_recall", "**Real people's keywords in running audio** (kws_okd/evaluate/long_audio.py, "
                f"`test_people`): the development set's report speakers, {n:g} keyword events (their few "
                "keyword clips, each several times) among their other words and real talk (held-out klettres "
                "recordings), 0.4-1.6 s apart, over the corpus's noise at 20 dB. Reported only: the thresholds "
                "were chosen on the same kind of recording of the select speakers (`valid_people`), among others.",
                ["stored thr.: recall %", "FA/h", "FRR @ 1 FA/h %"],
                lambda r: [ms(r["people_recall"]), ms(r["people_fa"], 1.0), ms(r["people_frr1"])])
        section("kw_frr_sent", "**Keywords inside sentences** (kws_okd/evaluate/sentences.py): short sentences "
                "spoken by voices of the held-out synthesiser families, half with a keyword inside "
                "a carrier phrase (\"i said stop again\"), half with none; same engine and stored "
                "thresholds as above.", ["FRR @ 1 FA/h %", "stored thr.: FRR %", "FA/h"],
                lambda r: [ms(r["frr1_sent"]), ms(r["kw_frr_sent"]), ms(r["kw_fa_sent"], 1.0)])
        n = next((r["real_events"]["mean"] for r in methods.values() if r.get("real_events")), 0)
        section("real_fa", "**Real people's sentences** (kws_okd/evaluate/real_prompts.py, evaluation only): "
                f"Asterisk's English telephone prompts read by one woman, with {n:g} command words inside "
                "them; the rest must not fire. Stored thresholds as above; hits are counted per seed.",
                ["stored thr.: hits (per seed)", "FA/h", "FRR @ 1 FA/h %"],
                lambda r: [per_seed(r, "real_hits", n),
                           ms(r["real_fa"], 1.0), ms(r["frr1_real"])])
        section("talk_fa", "**People talking** (kws_okd/evaluate/voice_lines.py): a game's voice lines acted "
                "by people (hedgewars-data: 15 voices, English and four other languages, 19 min), "
                "with no command word in them, so every detection is a false alarm. The thresholds "
                "are chosen on it (among others): not an independent figure.",
                ["FA/h"], lambda r: [ms(r["talk_fa"], 1.0)])
        n = next((r["kwline_events"]["mean"] for r in methods.values() if r.get("kwline_events")), 0)
        section("kwline_hits", "**People saying command words** (kws_okd/evaluate/voice_lines.py): the same "
                f"game's {n:g} lines named for one (\"yes sir\", \"nooo\", \"enemy down\", \"come on "
                "then\"; the packs in other languages say them in their own words). A validation recording "
                "that nothing is chosen on by default; stored thresholds as above, hits per seed. Without "
                "thresholds: the lines whose own command word scores highest of the ten over the line "
                "(kws_okd/evaluate/long_audio.py, `top_keyword`), per seed.",
                ["stored thr.: hits (per seed)", "FA/h", "no thresholds: keyword highest (per seed)"],
                lambda r: [per_seed(r, "kwline_hits", n),
                           ms(r["kwline_fa"], 1.0),
                           per_seed(r, "kwline_top", n)])
        dets = ", ".join(f"[det_{k}.png](det_{k}.png)" for k in TEST_RECORDINGS
                         if any(k in (r.get("long_audio") or {}) for r in report["models"].values()))
        lines += ["", f"DET curves: {dets}"]
    info = summary.get("real_audio")
    if info:
        lines += ["", f"Real audio for `okd_real`'s x_ood: {info.get('files', '?')} recordings "
                  f"({info.get('seconds', 0) / 60:.0f} min) of letters and syllables in "
                  f"{len(info.get('folders', []))} languages from the Debian package "
                  "klettres-data (GPL-2+), unlabelled; "
                  f"{info.get('train_windows', '?')} training windows, "
                  f"{info.get('heldout_windows', '?')} held-out windows (whole files) for the agreement columns."]
    if shift:
        lines += ["", "Shifted-suite details: [shift/severity.md](shift/severity.md)"]
    lines += ["", "Learning curves against optimiser steps: [curves.png](curves.png)",
              "", "Per-model details: [report.md](report.md)", ""]
    return "\n".join(lines)
