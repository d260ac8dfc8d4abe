"""Leave-one-domain-out runner for the image branch.

For each held-out domain: train the teacher (ERM) and ERM / KD / OKD students on
the other domains (``recipes/image``), evaluate them with
:func:`kws_okd.evaluate.report.evaluate` on the training domains' ID test and the
held-out domain, and write ``lodo.md`` / ``lodo.json`` with one table per held-out
domain, the average over domains and the teacher-student gap on ID and OOD.
Model selection is the trainer's: best training-domain validation accuracy.

Finished runs are reused when their ``config.yaml`` matches the recipe exactly;
use a separate ``results_dir`` for settings you want to keep apart (``--quick``
does so by default).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

import kws_okd.augment.image  # noqa: F401  (registration, before the lead's wiring)
import kws_okd.data.images  # noqa: F401
import kws_okd.models.image  # noqa: F401
from kws_okd.data.registry import prepare_data
from kws_okd.evaluate.report import evaluate
from kws_okd.train.config import RECIPES, load_recipe
from kws_okd.train.run import train
from kws_okd.utils.atomic import write_json, write_text

IMAGE_RECIPES = RECIPES / "image"

# A setting that runs in minutes on 2 (shared) CPU cores: four digit domains of 300
# digits each at 16 px (the source digits are 8 px), a small teacher, the small CNN
# student, 8 epochs of batch 32. Indicative only.
QUICK = ["data.domains=[clean,mnistm,inverted,degraded]", "data.per_domain=300",
         "data.image_size=16", "teacher=resnet_small", "epochs=8", "batch_size=32",
         "results_dir=results/image_quick",
         "data.root=data/digits_domains/quick_seed${data.seed}_${data.image_size}px",
         "data.manifest_dir=data/digits_manifests/quick_${data.heldout}"]
QUICK_STUDENT = "small_cnn"


def _train_or_reuse(cfg) -> Path:
    pt = Path(cfg.exp_dir) / "model.pt"
    saved = Path(cfg.exp_dir) / "config.yaml"
    if pt.exists() and saved.exists() and saved.read_text() == OmegaConf.to_yaml(cfg, resolve=True):
        return pt
    return train(cfg)


def _ms(vals):
    vals = [v for v in vals if v is not None]
    return dict(mean=float(np.mean(vals)), std=float(np.std(vals)), n=len(vals)) if vals else None


def run_lodo(overrides=(), domains=None, methods=("erm", "kd", "okd"), seeds=(0,),
             student="mobilenetv3_small", recipe_dir=IMAGE_RECIPES, out=None) -> dict:
    overrides = list(overrides)
    base = load_recipe("teacher", overrides, recipe_dir)
    domains = list(domains or base.data.get("domains") or [])
    if not domains:
        from kws_okd.data.images import scan_domains
        domains = sorted(scan_domains(base.data.root))
    out = Path(out or Path(base.results_dir) / f"lodo_{base.data.kind}")
    per_domain = {}
    for d in domains:
        ov = overrides + [f"data.heldout={d}"]
        tcfg = load_recipe("teacher", ov, recipe_dir)
        manifests = prepare_data(tcfg.data, progress=tcfg.progress)
        models = {"teacher": _train_or_reuse(tcfg)}
        for seed in seeds:
            for m in methods:
                scfg = load_recipe("student", ov + [f"distill={m}", f"student={student}",
                                                    f"seed={seed}"], recipe_dir)
                models[f"{m}/seed{seed}"] = _train_or_reuse(scfg)
        report = evaluate(models, manifests, out / d, teacher="teacher", plots=False)
        per_domain[d] = summarize_domain(report, methods, seeds)
    result = dict(student=student, methods=list(methods), seeds=list(seeds),
                  epochs=int(base.epochs), overrides=overrides, domains=per_domain,
                  average=average(per_domain, methods),
                  selection="best training-domain validation accuracy")
    write_json(out / "lodo.json", result)
    write_text(out / "lodo.md", render(result))
    return result


def summarize_domain(report, methods, seeds) -> dict:
    models = report["models"]
    t = models["teacher"]
    rows = {"teacher": {k: _ms([t[k]]) for k in ("id_acc", "ood_acc")}}
    rows["teacher"].update(params=t["params"], macs=t["macs"])
    for m in methods:
        runs = [models[f"{m}/seed{s}"] for s in seeds]
        rows[m] = {k: _ms([r.get(k) for r in runs]) for k in ("id_acc", "ood_acc", "gap_id", "gap_ood")}
        rows[m].update(params=runs[0]["params"], macs=runs[0]["macs"],
                       valid_acc=_ms([r.get("valid_acc") for r in runs]))
    return rows


def average(per_domain, methods) -> dict:
    """Mean over held-out domains of each method's per-domain mean."""
    out = {}
    for m in ("teacher", *methods):
        out[m] = {}
        for k in ("id_acc", "ood_acc", "gap_id", "gap_ood"):
            vals = [rows[m][k]["mean"] for rows in per_domain.values() if rows[m].get(k)]
            out[m][k] = _ms(vals)
    return out


def _pct(x):
    if x is None:
        return "–"
    return f"{100 * x['mean']:.1f}" + (f" ± {100 * x['std']:.1f}" if x["n"] > 1 else "")


def _table(rows) -> list[str]:
    lines = ["| model | ID acc % | OOD acc % | gap ID | gap OOD |", "|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {_pct(r.get('id_acc'))} | {_pct(r.get('ood_acc'))} | "
                     f"{_pct(r.get('gap_id'))} | {_pct(r.get('gap_ood'))} |")
    return lines


def render(result) -> str:
    lines = ["# Image leave-one-domain-out", "",
             f"Student `{result['student']}`; seeds {result['seeds']} (per-domain cells: mean ± std "
             f"over seeds); {result['epochs']} epochs; selection: {result['selection']}. "
             "ID = the training domains' held-back test images; OOD = every image of the "
             "held-out domain, never used for training, selection or tuning. "
             "Gap = teacher minus student (percentage points).", "",
             f"Overrides: `{' '.join(result['overrides']) or '(recipe defaults)'}`", "",
             "## Average over held-out domains", ""]
    lines += _table(result["average"])
    for d, rows in result["domains"].items():
        lines += ["", f"## Held out: {d}", ""] + _table(rows)
    return "\n".join(lines) + "\n"
