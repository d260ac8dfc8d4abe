"""The default end-to-end job: corpus -> teacher -> ERM/KD/OKD students -> report."""
from __future__ import annotations

from pathlib import Path

from kws_okd.data.registry import prepare_data
from kws_okd.evaluate.compare import mean_std
from kws_okd.evaluate.report import evaluate
from kws_okd.train.config import RECIPES, load_recipe
from kws_okd.train.run import train
from kws_okd.utils.atomic import write_json, write_text


def method_overrides(method: str) -> list[str]:
    """A method with a file in recipes/kws/method (e.g. ``okd_rnc``: OKD whose x_ood comes
    from the room / noise / channel policy) brings its own groups; any other name is a
    distillation objective (``distill=<name>``)."""
    if (RECIPES / "kws" / "method" / f"{method}.yaml").exists():
        return [f"+method={method}"]
    return [f"distill={method}"]


def run_pipeline(overrides=(), methods=("erm", "kd", "okd"), seeds=(0,), student="bcresnet1",
                 teacher_overrides=(), out=None, shift_suite: str | None = "compact") -> dict:
    overrides = list(overrides)
    tcfg = load_recipe("teacher", overrides + list(teacher_overrides))
    manifests = prepare_data(tcfg.data, progress=tcfg.progress)
    teacher_pt = Path(tcfg.exp_dir) / "model.pt"
    if not teacher_pt.exists():  # finished runs are reused; unfinished ones resume
        train(tcfg)
    models = {"teacher": teacher_pt}
    for seed in seeds:
        for m in methods:
            scfg = load_recipe("student", overrides + method_overrides(m)
                               + [f"student={student}", f"seed={seed}"])
            pt = Path(scfg.exp_dir) / "model.pt"
            if not pt.exists():
                train(scfg)
            models[f"{student}-{m}/seed{seed}"] = pt
    out = Path(out or Path(tcfg.results_dir) / tcfg.data.name / "report")
    report = evaluate(models, manifests, out, teacher="teacher")
    summary = summarize(report, student, methods, seeds)
    if shift_suite:
        # Shifted copies of the ID test set made by generators held out from training
        # (docs/shift_suite.md); accuracy per condition and severity.
        from kws_okd.data.shift import build_suite
        from kws_okd.evaluate.severity import severity_report
        suite = build_suite(manifests, Path(manifests).parent / f"shift_{shift_suite}", shift_suite, seed=0)
        shift_report = evaluate(models, suite, out / "shift", teacher="teacher", plots=False)
        severity_report(shift_report, suite, out / "shift")
        summary["shift"] = {name: r["ood_acc"] for name, r in shift_report["models"].items()}
    write_json(out / "summary.json", summary)
    write_text(out / "summary.md", render_summary(summary, report))
    return report


def summarize(report, student, methods, seeds) -> dict:
    rows = {}
    for m in methods:
        runs = [report["models"][f"{student}-{m}/seed{s}"] for s in seeds]
        row = {}
        for key in ("id_acc", "ood_acc", "gap_id", "gap_ood"):
            vals = [r[key] for r in runs if r.get(key) is not None]
            ms = mean_std(vals)
            row[key] = None if ms is None else dict(mean=ms[0], std=ms[1], n=len(vals))
        rows[m] = row
    t = report["models"]["teacher"]
    return dict(student=student, seeds=list(seeds), methods=rows,
                teacher=dict(id_acc=t["id_acc"], ood_acc=t["ood_acc"]))


def render_summary(summary, report) -> str:
    def ms(x):
        return "–" if x is None else f"{100 * x['mean']:.1f} ± {100 * x['std']:.1f}"
    lines = ["# kws-okd default run", "",
             f"Student: {summary['student']}; seeds {summary['seeds']} (mean ± std over seeds). "
             "Each run's checkpoint is the one with the best training-domain validation accuracy; "
             "the OOD sets were never used for training, selection or tuning.", "",
             f"Teacher: ID {100 * summary['teacher']['id_acc']:.1f} %, OOD "
             f"{100 * summary['teacher']['ood_acc']:.1f} %", "",
             "| method | ID acc % | OOD acc % | gap ID | gap OOD |", "|---|---|---|---|---|"]
    for m, r in summary["methods"].items():
        lines.append(f"| {m} | {ms(r['id_acc'])} | {ms(r['ood_acc'])} | {ms(r['gap_id'])} | {ms(r['gap_ood'])} |")
    if "shift" in summary:
        lines += ["", "Mean accuracy % over the shifted-speech suite (noise, rooms, channels held out "
                  "from training; [details](shift/severity.md)):", "",
                  "| model | shifted suite |", "|---|---|"]
        lines += [f"| {n} | {100 * a:.1f} |" for n, a in summary["shift"].items()]
    lines += ["", "Per-model details: [report.md](report.md)", ""]
    return "\n".join(lines)
