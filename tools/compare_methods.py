"""Compare distillation methods on the default corpus: train, collect, tabulate.

    python tools/compare_methods.py --epochs 20 --seeds 0,1,2 --jobs 2   # full comparison
    python tools/compare_methods.py --epochs 5 --seeds 0 --methods kd,okd  # quick look
    python tools/compare_methods.py --collect-only                       # table of finished runs

Each run is the ``compare`` recipe (recipes/kws/compare.yaml) with ``method=<m>
seed=<s>``, so the same 21 runs can come from one Hydra multirun instead:
``python -m kws_okd.train.hydra_app -m --config-name compare``; this tool then only
collects. Runs land in ``results/compare/<data>/e<epochs>/<method>/seed<N>/``;
finished ones (``model.pt``) are reused, unfinished ones resume from their checkpoint,
and a run another process is training (its ``.lock``) is left alone
(kws_okd.train.sweep). ``--jobs N``
trains N runs at a time, one thread each, seed by seed, dearest method first.

Collecting evaluates every finished run once (cached next to its ``model.pt``) on the
ID / OOD test sets and on the compact shifted suite, and writes ``compare.md``,
``compare.json`` and ``compare.png``: mean ± std over seeds, the difference from KD
with Welch's p and whether it exceeds the seed spread, and training cost relative to KD.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kws_okd.evaluate.compare import (MethodRuns, compare_table, plot_comparison, render_conditions,  # noqa: E402
                                      render_markdown)
from kws_okd.train.config import RECIPES  # noqa: E402
from kws_okd.utils.atomic import write_json, write_text  # noqa: E402

LABELS = {"erm": "ERM", "kd": "KD", "okd": "OKD", "wakd": "WAKD", "okd_wa": "OKD + WAKD averaging",
          "hard": "HARD", "hard_okd": "HARD + OKD", "okd_rnc": "OKD (room/noise/channel)"}
# Rough cost relative to KD, only to start the dearest runs first.
COST_HINT = {"hard": 3.1, "hard_okd": 2.6, "okd": 1.8, "okd_wa": 1.8, "okd_rnc": 2.0}


def known_methods() -> list[str]:
    return sorted(p.stem for p in (RECIPES / "kws" / "method").glob("*.yaml"))


def default_methods() -> list[str]:
    """The methods of the compare recipe's Hydra sweep, in its order."""
    from omegaconf import OmegaConf
    cfg = OmegaConf.load(RECIPES / "kws" / "compare.yaml")
    return [m.strip() for m in str(cfg.hydra.sweeper.params.method).split(",")]


def recipe(method, seed, epochs, extra):
    from kws_okd.train.config import load_recipe
    return load_recipe("compare", [f"method={method}", f"seed={seed}", f"epochs={epochs}", *extra])


def train_all(methods, seeds, epochs, extra, jobs: int = 1) -> None:
    """Seed by seed (complete seeds come first), dearest method first within a seed."""
    from kws_okd.train.sweep import train_runs
    order = [(m, s) for s in seeds for m in sorted(methods, key=lambda m: -COST_HINT.get(m, 1.0))]
    train_runs("compare", [[f"method={m}", f"seed={s}", f"epochs={epochs}", *extra] for m, s in order],
               jobs=jobs)


def evaluate_cached(name: str, model_pt: Path, data, out_dir: Path) -> dict:
    """``evaluate()`` of one model, reused while its report is newer than the model file."""
    from kws_okd.evaluate.report import evaluate
    report = out_dir / "report.json"
    if report.exists() and report.stat().st_mtime >= model_pt.stat().st_mtime:
        cached = json.loads(report.read_text())
        if cached.get("data") == str(data):
            return cached
    return evaluate({name: model_pt}, data, out_dir, plots=False)


def collect(methods, seeds, epochs, extra, suite: str | None = "compact"):
    from kws_okd.data.registry import prepare_data
    from kws_okd.evaluate.severity import severity_table
    base = recipe(methods[0], seeds[0], epochs, extra)
    manifests = prepare_data(base.data, progress=False)
    suite_dir = None
    if suite:
        from kws_okd.data.shift import build_suite
        suite_dir = build_suite(manifests, Path(manifests).parent / f"shift_{suite}", suite, seed=0)

    def scores(name, pt: Path, out: Path) -> dict:
        r = evaluate_cached(name, pt, manifests, out / "eval")["models"][name]
        s = dict(id_acc=r["id_acc"], ood_acc=r["ood_acc"])
        if suite_dir is not None:
            rep = evaluate_cached(name, pt, suite_dir, out / f"eval_shift_{suite}")
            sev = severity_table(rep, suite_dir)["models"][name]
            s["suite_acc"] = sev["mean_ood"]
            s.update({f"suite:{c}": a for c, a in sev["acc"].items()})
        return s

    teacher_pt = Path(base.teacher_ckpt)
    teacher = scores("teacher", teacher_pt, teacher_pt.parent)
    runs = {}
    for m in methods:
        for s in seeds:
            d = Path(recipe(m, s, epochs, extra).exp_dir)
            if not ((d / "model.pt").exists() and (d / "train_summary.json").exists()):
                print(f"[compare] skipping unfinished run {d}", file=sys.stderr)
                continue
            summary = json.loads((d / "train_summary.json").read_text())
            sc = scores(f"{m}/seed{s}", d / "model.pt", d)
            r = runs.setdefault(m, MethodRuns(m, [], {}))
            r.seeds.append(s)
            for k, v in sc.items():
                r.scores.setdefault(k, []).append(v)
            r.train_seconds.append(float(summary["train_seconds"]))
            r.selection.append(summary["selection"])
    out = Path(base.exp_dir).parents[1]  # results/compare/<data>/e<epochs>
    return runs, teacher, out


def preamble(teacher, epochs, seeds, runs, suite) -> str:
    names = dict(id_acc="ID", ood_acc="OOD families", suite_acc="shifted suite")
    t = ", ".join(f"{h} {100 * teacher[k]:.1f} %" for k, h in names.items() if teacher.get(k) is not None)
    sel = "; ".join(f"{LABELS.get(m, m)}: {r.selection[0]}" for m, r in runs.items())
    return (f"BC-ResNet-1 students on the default synthetic corpus, {epochs} epochs, seeds {list(seeds)} "
            f"(each row says how many finished). ID = unseen speakers of the training synthesiser "
            f"families; OOD families = held-out synthesisers (espeak Klatt, flite); shifted suite = "
            f"mean over the {suite} suite's noise / room / channel conditions, made by generators "
            f"held out from training (docs/shift_suite.md). Selection uses training-domain validation "
            f"only; the OOD sets were never used for training, selection or tuning. Cost = mean "
            f"training wall-clock relative to KD on the same machine.\n\nTeacher: {t}.\n\n"
            f"Selection per method: {sel}.")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", default=",".join(default_methods()),
                    help=f"comma list from recipes/kws/method: {','.join(known_methods())}")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=1, help="runs trained at once (one thread each)")
    ap.add_argument("--suite", default="compact", help="shifted suite to score (compact|full|none)")
    ap.add_argument("--collect-only", action="store_true")
    ap.add_argument("overrides", nargs="*", help="extra recipe overrides, e.g. data.size=tiny")
    args = ap.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in known_methods()]
    if unknown:
        ap.error(f"unknown methods {unknown}; known: {known_methods()}")
    seeds = [int(s) for s in args.seeds.split(",") if s != ""]
    extra = ["progress=false", *args.overrides]
    teacher_pt = Path(recipe(methods[0], seeds[0], args.epochs, extra).teacher_ckpt)
    if not teacher_pt.exists():
        print(f"kws-okd: error: {teacher_pt}: teacher missing (kws-okd train-teacher)", file=sys.stderr)
        return 2
    if not args.collect_only:
        train_all(methods, seeds, args.epochs, extra, jobs=args.jobs)
    suite = None if args.suite == "none" else args.suite
    runs, teacher, out = collect(methods, seeds, args.epochs, extra, suite)
    table = compare_table(runs, reference="kd")
    table.update(epochs=args.epochs, seeds=seeds, teacher=teacher)
    text = render_markdown(table, f"Method comparison ({args.epochs} epochs)",
                           preamble(teacher, args.epochs, seeds, runs, suite), LABELS)
    conditions = sorted({k[len("suite:"):] for r in runs.values() for k in r.scores if k.startswith("suite:")},
                        key=lambda c: (c != "clean", c))
    if conditions:
        text += (f"\nShifted suite per condition (accuracy %, mean ± std over seeds; teacher: "
                 + ", ".join(f"{c} {100 * teacher[f'suite:{c}']:.1f}" for c in conditions) + "):\n\n"
                 + render_conditions(runs, conditions, LABELS))
    text += "\n![accuracy per method](compare.png)\n"
    write_json(out / "compare.json", table)
    plot_comparison(table, out / "compare.png", LABELS, teacher)
    write_text(out / "compare.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
