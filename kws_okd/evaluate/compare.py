"""Tabulate a method comparison: mean ± std over seeds, differences against a reference
method and whether they exceed the seed spread.

Input is one row of per-seed scores per method (``MethodRuns``); nothing here trains or
evaluates a model, so the statistics are tested on hand-made numbers.

Two rules are reported for each difference, because with three seeds neither is strong:

- *beyond spread*: the mean ± std intervals of the two methods do not overlap,
  ``|mean_a - mean_b| > std_a + std_b`` (population std, as in the table); undecided
  when either method has a single seed;
- Welch's t-test p-value (unequal variances), two-sided.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

METRICS = (("id_acc", "ID"), ("ood_acc", "OOD families"), ("suite_acc", "shifted suite"),
           ("real_acc", "real speech"), ("frr_1fa", "FRR @1 FA/h"))   # FRR: lower is better


@dataclass
class MethodRuns:
    """Per-seed results of one method; each metric list is aligned with ``seeds``."""

    method: str
    seeds: list[int]
    scores: dict[str, list[float]]            # metric -> one value per seed
    train_seconds: list[float] = field(default_factory=list)
    selection: list[str] = field(default_factory=list)


def mean_std(values) -> tuple[float, float] | None:
    """Mean and population standard deviation (``ddof=0``); None for no values."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0:
        return None
    return float(v.mean()), float(v.std())


def welch_p(a, b) -> float | None:
    """Two-sided Welch t-test p-value; None when either side has fewer than 2 values or
    both have zero variance (the test is undefined there)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size < 2 or b.size < 2:
        return None
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    if va + vb < 1e-12:  # accuracies agree to rounding on every seed
        return None
    from scipy import stats
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))  # Welch-Satterthwaite
    return float(2 * stats.t.sf(abs(t), dof))


def difference(a, b) -> dict | None:
    """``a`` minus ``b`` (per-seed lists): the difference of means, both spreads, whether it
    exceeds them and Welch's p."""
    ma, mb = mean_std(a), mean_std(b)
    if ma is None or mb is None:
        return None
    delta = ma[0] - mb[0]
    # With one seed on either side there is no spread to exceed: undecided (None).
    beyond = bool(abs(delta) > ma[1] + mb[1]) if min(len(a), len(b)) >= 2 else None
    return dict(delta=delta, spread=ma[1] + mb[1], beyond_spread=beyond, p=welch_p(a, b),
                n=(len(a), len(b)))


def compare_table(runs: dict[str, MethodRuns], reference: str = "kd") -> dict:
    """Summary rows per method, and each method's differences against ``reference``."""
    ref = runs.get(reference)
    ref_secs = float(np.mean(ref.train_seconds)) if ref and ref.train_seconds else None
    rows = {}
    for name, r in runs.items():
        row = dict(seeds=list(r.seeds), metrics={}, vs_reference={},
                   train_seconds=float(np.mean(r.train_seconds)) if r.train_seconds else None,
                   selection=list(r.selection))
        row["cost_vs_reference"] = (row["train_seconds"] / ref_secs
                                    if row["train_seconds"] and ref_secs else None)
        for key, _ in METRICS:
            vals = r.scores.get(key) or []
            ms = mean_std(vals)
            row["metrics"][key] = None if ms is None else dict(mean=ms[0], std=ms[1], values=list(vals))
            if ref is not None and name != reference:
                row["vs_reference"][key] = difference(vals, ref.scores.get(key) or [])
        rows[name] = row
    return dict(reference=reference, methods=rows)


def _ms(m) -> str:
    return "–" if m is None else f"{100 * m['mean']:.1f} ± {100 * m['std']:.1f}"


def _diff(d) -> str:
    if d is None:
        return "–"
    p = "" if d["p"] is None else f", p={d['p']:.2f}"
    mark = {True: " **beyond spread**", False: "", None: " (one seed)"}[d["beyond_spread"]]
    return f"{100 * d['delta']:+.1f}{p}{mark}"


def render_markdown(table: dict, title: str, preamble: str = "", labels: dict | None = None) -> str:
    labels = labels or {}
    ref = table["reference"]
    rows = table["methods"]
    present = [(k, h) for k, h in METRICS if any(r["metrics"].get(k) for r in rows.values())]
    lines = [f"# {title}", ""]
    if preamble:
        lines += [preamble, ""]
    lines += ["Accuracy % (FRR %: lower is better), mean ± std over seeds:", "",
              "| method | seeds | " + " | ".join(h for _, h in present)
              + f" | train s | cost vs {labels.get(ref, ref)} |",
              "|---|---|" + "---|" * len(present) + "---|---|"]
    for name, r in rows.items():
        cost = "–" if r["cost_vs_reference"] is None else f"{r['cost_vs_reference']:.2f}×"
        secs = "–" if r["train_seconds"] is None else f"{r['train_seconds']:.0f}"
        lines.append(f"| {labels.get(name, name)} | {len(r['seeds'])} | "
                     + " | ".join(_ms(r["metrics"].get(k)) for k, _ in present) + f" | {secs} | {cost} |")
    if ref in rows:
        lines += ["", f"Difference from {labels.get(ref, ref)} in points (Welch's p; **beyond spread** "
                  "when |Δ| exceeds the sum of the two standard deviations):", "",
                  "| method | " + " | ".join(h for _, h in present) + " |",
                  "|---|" + "---|" * len(present)]
        for name, r in rows.items():
            if name != ref:
                lines.append(f"| {labels.get(name, name)} | "
                             + " | ".join(_diff(r["vs_reference"].get(k)) for k, _ in present) + " |")
    return "\n".join(lines) + "\n"


def render_conditions(runs: dict[str, MethodRuns], conditions: list[str], labels: dict | None = None,
                      prefix: str = "suite:") -> str:
    """Mean ± std over seeds per shifted-suite condition (scores keyed ``suite:<condition>``)."""
    labels = labels or {}
    lines = ["| method | " + " | ".join(conditions) + " |", "|---|" + "---|" * len(conditions)]
    for name, r in runs.items():
        cells = []
        for c in conditions:
            ms = mean_std(r.scores.get(prefix + c) or [])
            cells.append("–" if ms is None else f"{100 * ms[0]:.1f} ± {100 * ms[1]:.1f}")
        lines.append(f"| {labels.get(name, name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_comparison(table: dict, path, labels: dict | None = None, teacher: dict | None = None) -> None:
    """Grouped bars (one group per metric, one bar per method) with ±std error bars, and
    the teacher's accuracy as a dashed line over each group when given."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kws_okd.utils.atomic import atomic_path
    labels = labels or {}
    rows = table["methods"]
    present = [(k, h) for k, h in METRICS if any(r["metrics"].get(k) for r in rows.values())]
    names = list(rows)
    width = 0.8 / max(1, len(names))
    fig, ax = plt.subplots(figsize=(2.2 + 2.2 * len(present), 4))
    for i, name in enumerate(names):
        ms = [rows[name]["metrics"].get(k) for k, _ in present]
        x = np.arange(len(present)) + (i - (len(names) - 1) / 2) * width
        ax.bar(x, [100 * m["mean"] if m else math.nan for m in ms], width,
               yerr=[100 * m["std"] if m else 0 for m in ms], capsize=2, label=labels.get(name, name))
    for i, (k, _) in enumerate(present):
        if teacher and teacher.get(k) is not None:
            ax.hlines(100 * teacher[k], i - 0.45, i + 0.45, colors="k", linestyles="--",
                      label="teacher" if i == 0 else None)
    ax.set_xticks(np.arange(len(present)), [h for _, h in present])
    ax.set_ylabel("% (mean ± std over seeds; FRR: lower is better)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
