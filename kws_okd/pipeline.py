"""The default end-to-end job: corpus -> teacher -> ERM/KD/OKD students -> report."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from kws_okd.data.manifest import read_classes
from kws_okd.data.registry import prepare_data
from kws_okd.errors import KWSError
from kws_okd.evaluate.compare import mean_std
from kws_okd.evaluate.report import evaluate
from kws_okd.train.config import RECIPES, load_recipe
from kws_okd.train.run import train
from kws_okd.utils.atomic import write_json, write_text

METRICS = ("id_acc", "ood_acc", "real_acc", "gap_id", "gap_ood", "gap_real", "agree_real", "kl_real")


def method_overrides(method: str) -> list[str]:
    """A method with a file in recipes/kws/method (e.g. ``okd_rnc``: OKD whose x_ood comes
    from the room / noise / channel policy) brings its own groups; any other name is a
    distillation objective (``distill=<name>``)."""
    if (RECIPES / "kws" / "method" / f"{method}.yaml").exists():
        return [f"+method={method}"]
    return [f"distill={method}"]


def real_dev_set(manifests) -> dict:
    """The real-speech development set (evaluation only), or nothing with a warning when
    its Debian packages are missing."""
    from kws_okd.data.real_speech import build_real_dev
    try:
        csv = build_real_dev(Path(manifests).parent / "real_dev", read_classes(Path(manifests) / "classes.txt"))
    except KWSError as e:
        warnings.warn(f"no real-speech column: {e}", stacklevel=2)
        return {}
    return {"real_dev": (csv, "real")}


@torch.no_grad()
def teacher_agreement(models: dict, teacher: str, windows: torch.Tensor, batch: int = 256) -> dict:
    """How closely each model hears held-out real recordings as the teacher does: top-1
    agreement with the teacher and ``KL(teacher || model)`` (T = 1, nats), per model."""
    from kws_okd.distill.losses import kl_per_sample
    from kws_okd.train.checkpoint import load_model

    def logits(path):
        model, _ = load_model(path)
        return torch.cat([model(windows[i:i + batch]) for i in range(0, len(windows), batch)])

    t = logits(models[teacher])
    log_pt = t.log_softmax(-1)
    out = {}
    for name, path in models.items():
        s = t if name == teacher else logits(path)
        out[name] = dict(agree=float((s.argmax(-1) == t.argmax(-1)).float().mean()),
                         kl=float(kl_per_sample(log_pt, s.log_softmax(-1)).mean()))
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


def run_pipeline(overrides=(), methods=("erm", "kd", "okd_real"), seeds=(0,), student="bcresnet1",
                 teacher_overrides=(), out=None, shift_suite: str | None = "compact",
                 reference_teachers=("resnet",)) -> dict:
    overrides = list(overrides)
    tcfg = load_recipe("teacher", overrides + list(teacher_overrides))
    manifests = prepare_data(tcfg.data, progress=tcfg.progress)
    teacher_pt = Path(tcfg.exp_dir) / "model.pt"
    if not teacher_pt.exists():  # finished runs are reused; unfinished ones resume
        train(tcfg)
    models = {"teacher": teacher_pt}
    # Other teachers, trained only to be compared with (no student learns from them).
    for name in reference_teachers:
        if name == tcfg.teacher.name:
            continue
        rcfg = load_recipe("teacher", overrides + [f"teacher={name}"])
        pt = Path(rcfg.exp_dir) / "model.pt"
        if not pt.exists():
            train(rcfg)
        models[f"teacher-{name}"] = pt
    for seed in seeds:
        for m in methods:
            scfg = load_recipe("student", overrides + method_overrides(m)
                               + [f"student={student}", f"seed={seed}"])
            pt = Path(scfg.exp_dir) / "model.pt"
            if not pt.exists():
                train(scfg)
            models[f"{student}-{m}/seed{seed}"] = pt
    out = Path(out or Path(tcfg.results_dir) / tcfg.data.name / "report")
    report = evaluate(models, manifests, out, teacher="teacher", extra_sets=real_dev_set(manifests))
    held, real_info = heldout_real_windows()
    if held is not None:
        for name, a in teacher_agreement(models, "teacher", held).items():
            report["models"][name].update(agree_real=a["agree"], kl_real=a["kl"])
        write_json(out / "report.json", report)
    summary = summarize(report, student, methods, seeds)
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
    return report


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
        rows[m] = row
    teachers = {name: {k: r.get(k) for k in ("id_acc", "ood_acc", "real_acc", "agree_real", "kl_real")}
                | {"params": r.get("params")}
                for name, r in report["models"].items() if r.get("role") == "teacher"}
    return dict(student=student, seeds=list(seeds), methods=rows, teacher=teachers["teacher"],
                teachers=teachers)


def render_summary(summary, report) -> str:
    def ms(x, scale=100.0, digits=1):
        return "–" if x is None else f"{scale * x['mean']:.{digits}f} ± {scale * x['std']:.{digits}f}"

    def pct(x):
        return "–" if x is None else f"{100 * x:.1f}"

    real_sets = [s for s, v in report["sets"].items() if v["tag"] == "real"]
    n_real = sum(report["models"]["teacher"]["sets"][s]["n"] for s in real_sets)
    lines = ["# kws-okd default run", "",
             f"Student: {summary['student']}; seeds {summary['seeds']} (mean ± std over seeds). "
             "Each run's checkpoint is the one with the best training-domain validation accuracy; "
             "the OOD sets and the real-speech set were never used for training, selection or tuning.", "",
             "Columns: **ID** unseen speakers of the training synthesisers; **OOD** held-out "
             "synthesiser families; **suite** the shifted-speech suite (noise, rooms, channels held "
             f"out from training); **real** the real-speech development set ({n_real} recordings of "
             "human speakers from alsa-utils and Asterisk prompts, evaluation only); **agree / KL** "
             "top-1 agreement with the teacher and KL(teacher ‖ model) on held-out real recordings "
             "(klettres-data files never used in training).", "",
             "| model | params | ID acc % | OOD acc % | suite % | real % (`real`) | agree % | KL |",
             "|---|---|---|---|---|---|---|---|"]
    shift = summary.get("shift", {})
    for name, t in summary["teachers"].items():
        kl = "–" if t.get("kl_real") is None else f"{t['kl_real']:.2f}"
        lines.append(f"| {name} ({report['models'][name]['method']}) | {t['params']:,} | {pct(t['id_acc'])} | "
                     f"{pct(t['ood_acc'])} | {pct(shift.get(name))} | {pct(t['real_acc'])} | "
                     f"{pct(t['agree_real'])} | {kl} |")
    for m, r in summary["methods"].items():
        lines.append(f"| {summary['student']}-{m} | {r['params']:,} | "
                     f"{ms(r['id_acc'])} | {ms(r['ood_acc'])} | {ms(r.get('suite_acc'))} | "
                     f"{ms(r['real_acc'])} | {ms(r['agree_real'])} | {ms(r['kl_real'], 1.0, 2)} |")
    lines += ["", "Gaps to the teacher (teacher minus student, points):", "",
              "| method | gap ID | gap OOD | gap real |", "|---|---|---|---|"]
    for m, r in summary["methods"].items():
        lines.append(f"| {m} | {ms(r['gap_id'])} | {ms(r['gap_ood'])} | {ms(r['gap_real'])} |")
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
    lines += ["", "Per-model details: [report.md](report.md)", ""]
    return "\n".join(lines)
