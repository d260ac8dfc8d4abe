"""Compare distillation methods on the default corpus: train, collect, tabulate.

    python tools/compare_methods.py --epochs 20 --seeds 0,1,2            # full comparison
    python tools/compare_methods.py --epochs 5 --seeds 0 --methods kd,okd  # quick look
    python tools/compare_methods.py --collect-only                       # table of finished runs

Every run trains a BC-ResNet-1 student from the teacher at
``results/<data>/teacher-resnet/seed0/model.pt`` into
``<out>/e<epochs>/<method>/seed<N>/``; finished runs (``model.pt`` present) are reused,
unfinished ones resume from their checkpoint, and the collector skips runs without a
``model.pt``. The table gives mean ± std over seeds of ID and OOD accuracy
(kws_okd.evaluate.report.evaluate), each run's selection rule, and training wall-clock
relative to KD. Same thing as a Hydra sweep, per method:
``python -m kws_okd.train.hydra_app -m seed=0,1,2 distill=kd,okd,wakd,hard,hard_okd``
(plus ``distill=okd averaging=wakd exp_dir=...`` for OKD + weight averaging).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kws_okd.augment import learnable  # noqa: E402,F401  (HARD's augmenters)
from kws_okd.distill import hard  # noqa: E402,F401
from kws_okd.train import averaging  # noqa: E402,F401
from kws_okd.utils.atomic import write_json, write_text  # noqa: E402

# method -> recipe overrides
METHODS = {
    "erm": ["distill=erm"],
    "kd": ["distill=kd"],
    "okd": ["distill=okd"],
    "wakd": ["distill=wakd", "averaging=wakd"],
    "okd+wa": ["distill=okd", "averaging=wakd"],
    "hard": ["distill=hard"],
    "hard+okd": ["distill=hard_okd"],
}


def run_dir(out: Path, epochs: int, method: str, seed: int) -> Path:
    return out / f"e{epochs}" / method / f"seed{seed}"


def train_all(methods, seeds, epochs, out, student, extra):
    from kws_okd.train.config import load_recipe
    from kws_okd.train.run import train
    for seed in seeds:
        for m in methods:
            d = run_dir(out, epochs, m, seed)
            if (d / "model.pt").exists():
                continue
            cfg = load_recipe("student", METHODS[m] + [f"student={student}", f"seed={seed}",
                                                       f"epochs={epochs}", f"exp_dir={d}", *extra])
            t0 = time.time()
            train(cfg)
            print(f"[compare] {m} seed {seed}: {time.time() - t0:.0f} s", flush=True)


def collect(methods, seeds, epochs, out, manifests, teacher_pt):
    from kws_okd.evaluate.report import evaluate
    models, runs = {"teacher": teacher_pt}, {}
    for m in methods:
        for s in seeds:
            d = run_dir(out, epochs, m, s)
            if (d / "model.pt").exists() and (d / "train_summary.json").exists():
                models[f"{m}/seed{s}"] = d / "model.pt"
                runs.setdefault(m, []).append((s, json.loads((d / "train_summary.json").read_text())))
            else:
                print(f"[compare] skipping unfinished run {d}", file=sys.stderr)
    report = evaluate(models, manifests, out / f"e{epochs}" / "report", teacher="teacher", plots=False)
    return report, runs


def ms(vals, scale=100.0):
    if not vals:
        return "–"
    return f"{scale * np.mean(vals):.1f} ± {scale * np.std(vals):.1f}"


def render(report, runs, epochs, seeds) -> tuple[str, dict]:
    t = report["models"]["teacher"]
    kd_secs = [r["train_seconds"] for _, r in runs.get("kd", [])]
    rows, lines = {}, [
        f"# Method comparison ({epochs} epochs, seeds {list(seeds)})", "",
        "BC-ResNet-1 students on the default synthetic corpus; mean ± std over the finished seeds. "
        "Model selection uses training-domain validation only: the best-validation-accuracy "
        "checkpoint, or for weight averaging the averaged weights (BN re-estimated on training data). "
        "OOD sets (held-out synthesiser families) were never used for training or selection. "
        "Cost = mean training wall-clock relative to KD on the same machine (shared CPU: rough).", "",
        f"Teacher: ID {100 * t['id_acc']:.1f} %, OOD {100 * t['ood_acc']:.1f} %", "",
        "| method | seeds | ID acc % | OOD acc % | valid acc % | train s | cost vs KD | selection |",
        "|---|---|---|---|---|---|---|---|"]
    for m, rs in runs.items():
        names = [f"{m}/seed{s}" for s, _ in rs]
        ids = [report["models"][n]["id_acc"] for n in names]
        oods = [report["models"][n]["ood_acc"] for n in names]
        vals = [r["valid_acc"] for _, r in rs if r.get("valid_acc") is not None]
        secs = [r["train_seconds"] for _, r in rs]
        cost = np.mean(secs) / np.mean(kd_secs) if kd_secs else None
        sel = rs[0][1]["selection"].split(" over steps")[0].split(" (")[0]
        rows[m] = dict(seeds=[s for s, _ in rs], id_acc=ids, ood_acc=oods, valid_acc=vals,
                       train_seconds=secs, cost_vs_kd=cost, selection=[r["selection"] for _, r in rs])
        lines.append(f"| {m} | {len(rs)} | {ms(ids)} | {ms(oods)} | {ms(vals)} | {np.mean(secs):.0f} | "
                     f"{'–' if cost is None else f'{cost:.2f}×'} | {sel} |")
    lines += ["", "Per-run selection rules:", ""]
    for m, r in rows.items():
        lines.append(f"- {m}: {r['selection'][0]}")
    return "\n".join(lines) + "\n", rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--student", default="bcresnet1")
    ap.add_argument("--data", default="synth", help="data group (the teacher must exist)")
    ap.add_argument("--out", default="results/compare")
    ap.add_argument("--collect-only", action="store_true")
    ap.add_argument("overrides", nargs="*", help="extra recipe overrides, e.g. threads=1")
    args = ap.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        ap.error(f"unknown methods {unknown}; known: {list(METHODS)}")
    seeds = [int(s) for s in args.seeds.split(",") if s != ""]
    from kws_okd.data.registry import prepare_data
    from kws_okd.train.config import load_recipe
    base = load_recipe("student", [f"data={args.data}", "progress=false", *args.overrides])
    out = Path(args.out) / base.data.name
    teacher_pt = Path(base.teacher_ckpt)
    if not teacher_pt.exists():
        print(f"kws-okd: error: {teacher_pt}: teacher missing (kws-okd train-teacher data={args.data})",
              file=sys.stderr)
        return 2
    extra = [f"data={args.data}", "progress=false", *args.overrides]
    if not args.collect_only:
        train_all(methods, seeds, args.epochs, out, args.student, extra)
    manifests = prepare_data(base.data, progress=False)
    report, runs = collect(methods, seeds, args.epochs, out, manifests, teacher_pt)
    text, rows = render(report, runs, args.epochs, seeds)
    write_text(out / f"e{args.epochs}" / "compare.md", text)
    write_json(out / f"e{args.epochs}" / "compare.json", dict(epochs=args.epochs, seeds=seeds, methods=rows))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
