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

LABELS = {"erm": "ERM", "kd": "KD", "okd": "OKD", "okd_real": "OKD (real audio)", "wakd": "WAKD",
          "wakd_noavg": "WAKD objective, no averaging", "okd_wa": "OKD + WAKD averaging",
          "okd_swad": "OKD + SWAD", "okd_sma": "OKD + SMA", "hard": "HARD", "hard_okd": "HARD + OKD",
          "okd_rnc": "OKD (room/noise/channel)", "ctkd": "CTKD", "bdkd": "BD-KD"}
# Rough cost relative to KD, only to start the dearest runs first.
COST_HINT = {"hard": 3.1, "hard_okd": 2.6, "okd": 1.8, "okd_wa": 1.8, "okd_swad": 1.8, "okd_sma": 2.0,
             "okd_rnc": 2.0, "okd_real": 1.9}


def known_methods() -> list[str]:
    return sorted(p.stem for p in (RECIPES / "kws" / "method").glob("*.yaml"))


def default_methods() -> list[str]:
    """The methods of the compare recipe's Hydra sweep, in its order."""
    from omegaconf import OmegaConf
    cfg = OmegaConf.load(RECIPES / "kws" / "compare.yaml")
    return [m.strip() for m in str(cfg.hydra.sweeper.params.method).split(",")]


def budget_overrides(epochs: int, steps: int | None) -> list[str]:
    """A step budget trains ``steps`` optimiser steps; runs land under ``s<steps>`` then,
    not ``e<epochs>``, so the two budgets never share a folder."""
    return [f"epochs={epochs}"] if not steps else [f"steps={steps}", f"budget=s{steps}"]


def recipe(method, seed, epochs, extra):
    """``epochs`` is the budget: an epoch count or a list of budget overrides."""
    from kws_okd.train.config import load_recipe
    budget = epochs if isinstance(epochs, list) else [f"epochs={epochs}"]
    return load_recipe("compare", [f"method={method}", f"seed={seed}", *budget, *extra])


def train_all(methods, seeds, budget: list[str], extra, jobs: int = 1) -> None:
    """Seed by seed (complete seeds come first), dearest method first within a seed;
    ``budget`` is :func:`budget_overrides`' list."""
    from kws_okd.train.sweep import train_runs
    order = [(m, s) for s in seeds for m in sorted(methods, key=lambda m: -COST_HINT.get(m, 1.0))]
    train_runs("compare", [[f"method={m}", f"seed={s}", *budget, *extra] for m, s in order], jobs=jobs,
               progress=jobs > 1)


def evaluate_cached(runs: dict[str, tuple[Path, Path]], data, scratch: Path,
                    extra_sets: dict | None = None) -> dict:
    """``evaluate()`` of every run ``{name: (model.pt, report folder)}`` on ``data``, each
    reused while its ``report.json`` is newer than its model and covers the same sets. The
    runs to score are scored in one call, so the test sets are read once, not per run."""
    from kws_okd.evaluate.report import evaluate
    out, todo = {}, {}
    for name, (pt, folder) in runs.items():
        report = folder / "report.json"
        if report.exists() and report.stat().st_mtime >= pt.stat().st_mtime:
            cached = json.loads(report.read_text())
            if cached.get("data") == str(data) and set(extra_sets or {}) <= set(cached.get("sets", {})) \
                    and name in cached["models"]:
                out[name] = cached
                continue
        todo[name] = pt
    if todo:
        report = evaluate(todo, data, scratch, plots=False, extra_sets=extra_sets)
        for name in todo:
            one = {**report, "teacher": None, "models": {name: report["models"][name]}}
            write_json(runs[name][1] / "report.json", one)
            out[name] = one
    return out


def frr_cached(model_pt: Path, recording: Path, out_dir: Path) -> float:
    """FRR at 1 FA/h on ``recording`` (one threshold for every keyword, best of the sweep),
    through the streaming engine ``kws-okd stream`` uses; reused while newer than the
    model. A detector that cannot get down to 1 FA/h at any threshold counts as FRR 1."""
    from kws_okd.evaluate.long_audio import score_recording
    from kws_okd.stream.engine import StreamConfig
    from kws_okd.stream.fast import FastPathUnavailable, load_fast_model
    from kws_okd.train.checkpoint import load_model
    cache = out_dir / f"long_audio_{recording.stem}.json"
    if cache.exists() and cache.stat().st_mtime >= model_pt.stat().st_mtime:
        r = json.loads(cache.read_text())
    else:
        try:   # the path `kws-okd stream` takes; PyTorch only for models it cannot take
            model = load_fast_model(model_pt)
            classes = model.classes
        except FastPathUnavailable:
            model, blob = load_model(model_pt)
            classes = blob["classes"]
        r = score_recording(model, classes, recording, StreamConfig())
        r = {"recording": str(recording), "frr_at": r["frr_at"], "n_events": r["n_events"]}
        write_json(cache, r)
    op = r["frr_at"]["1.0"]
    return 1.0 if op is None else float(op["frr"])


def collect(methods, seeds, epochs, extra, suite: str | None = "compact", long_audio: bool = True):
    from kws_okd.data.manifest import read_classes
    from kws_okd.data.registry import prepare_data
    from kws_okd.evaluate.severity import severity_table
    from kws_okd.pipeline import corpus_noise_dir, heldout_real_windows, long_audio_recordings, real_dev_set
    from kws_okd.train.run import finished_run
    base = recipe(methods[0], seeds[0], epochs, extra)
    manifests = prepare_data(base.data, progress=False)
    suite_dir = None
    if suite:
        from kws_okd.data.shift import build_suite
        suite_dir = build_suite(manifests, Path(manifests).parent / f"shift_{suite}", suite, seed=0)
    real_dev = real_dev_set(manifests)   # evaluation only, like the OOD sets
    recording = None
    if long_audio and "_unknown_" in read_classes(Path(manifests) / "classes.txt"):
        held, _ = heldout_real_windows()
        recording = long_audio_recordings(manifests, corpus_noise_dir(base.data), held, real_dev)["test_clean"]

    teacher_pt = Path(base.teacher_ckpt)
    entries = {"teacher": (teacher_pt, teacher_pt.parent)}
    summaries = {}
    for m in methods:
        for s in seeds:
            cfg = recipe(m, s, epochs, extra)
            d = Path(cfg.exp_dir)
            if not (finished_run(cfg) and (d / "train_summary.json").exists()):
                print(f"[compare] skipping {d}: unfinished, or trained from another config, data or teacher",
                      file=sys.stderr)
                continue
            entries[f"{m}/seed{s}"] = (d / "model.pt", d)
            summaries[f"{m}/seed{s}"] = (m, s, json.loads((d / "train_summary.json").read_text()))
    out = Path(base.exp_dir).parents[1]  # results/compare/<data>/<budget>
    plain = evaluate_cached({n: (pt, d / "eval") for n, (pt, d) in entries.items()}, manifests,
                            out / "eval_all", real_dev)
    shifted = {} if suite_dir is None else evaluate_cached(
        {n: (pt, d / f"eval_shift_{suite}") for n, (pt, d) in entries.items()}, suite_dir,
        out / f"eval_all_shift_{suite}")

    def scores(name) -> dict:
        pt, d = entries[name]
        r = plain[name]["models"][name]
        s = dict(id_acc=r["id_acc"], ood_acc=r["ood_acc"], real_acc=r.get("real_acc"))
        if recording is not None and name != "teacher":   # the teacher: minutes on a CPU
            s["frr_1fa"] = frr_cached(pt, recording, d / "eval")
        if suite_dir is not None:
            sev = severity_table(shifted[name], suite_dir)["models"][name]
            s["suite_acc"] = sev["mean_ood"]
            s.update({f"suite:{c}": a for c, a in sev["acc"].items()})
        return s

    teacher = scores("teacher")
    runs = {}
    for name, (m, s, summary) in summaries.items():
        sc = scores(name)
        r = runs.setdefault(m, MethodRuns(m, [], {}))
        r.seeds.append(s)
        for k, v in sc.items():
            r.scores.setdefault(k, []).append(v)
        r.train_seconds.append(float(summary["train_seconds"]))
        r.selection.append(summary["selection"])
    return runs, teacher, out


def preamble(teacher, budget: str, seeds, runs, suite) -> str:
    names = dict(id_acc="ID", ood_acc="OOD families", suite_acc="shifted suite", real_acc="real speech")
    t = ", ".join(f"{h} {100 * teacher[k]:.1f} %" for k, h in names.items() if teacher.get(k) is not None)
    sel = "; ".join(f"{LABELS.get(m, m)}: {r.selection[0]}" for m, r in runs.items())
    return (f"BC-ResNet-1 students on the default synthetic corpus, {budget}, seeds {list(seeds)} "
            f"(each row says how many finished). ID = unseen speakers of the training synthesiser "
            f"families; OOD families = held-out synthesisers (espeak Klatt, flite); "
            + (f"shifted suite = mean over the {suite} suite's noise / room / channel conditions, made by "
               f"generators held out from training (docs/shift_suite.md); " if suite else "")
            + f"real speech = mean of the real-speech dev "
            f"set's keyword accuracy and non-keyword rejection (human recordings from Debian packages, "
            f"evaluation only); FRR @1 FA/h = false-rejection rate at 1 false alarm per hour on the clean "
            f"long test recording (held-out voices' keywords, real speech, music; one threshold for all "
            f"keywords, the best of a sweep; 100 % when no threshold gets down to 1 FA/h; lower is "
            f"better). Selection uses training-domain validation "
            f"only; the OOD sets were never used for training, selection or tuning. Cost = mean "
            f"training wall-clock relative to KD on the same machine.\n\nTeacher: {t}.\n\n"
            f"Selection per method: {sel}.")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", default=",".join(default_methods()),
                    help=f"comma list from recipes/kws/method: {','.join(known_methods())}")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--steps", type=int, default=None,
                    help="optimiser steps instead of epochs (runs go to <data>/s<steps>/)")
    ap.add_argument("--no-long-audio", action="store_true", help="skip the FRR @1 FA/h column")
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
    budget = budget_overrides(args.epochs, args.steps)
    words = f"{args.steps} optimiser steps" if args.steps else f"{args.epochs} epochs"
    teacher_pt = Path(recipe(methods[0], seeds[0], budget, extra).teacher_ckpt)
    if not teacher_pt.exists():
        print(f"kws-okd: error: {teacher_pt}: teacher missing (kws-okd train-teacher)", file=sys.stderr)
        return 2
    if not args.collect_only:
        train_all(methods, seeds, budget, extra, jobs=args.jobs)
    suite = None if args.suite == "none" else args.suite
    runs, teacher, out = collect(methods, seeds, budget, extra, suite, long_audio=not args.no_long_audio)
    table = compare_table(runs, reference="kd")
    table.update(epochs=args.epochs, steps=args.steps, seeds=seeds, teacher=teacher)
    text = render_markdown(table, f"Method comparison ({words})",
                           preamble(teacher, words, seeds, runs, suite), LABELS)
    conditions = sorted({k[len("suite:"):] for r in runs.values() for k in r.scores if k.startswith("suite:")},
                        key=lambda c: (c != "clean", c))
    if conditions:
        text += ("\nShifted suite per condition (accuracy %, mean ± std over seeds; teacher: "
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
