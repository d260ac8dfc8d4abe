"""Learning curves from the trainer's ``train_log.txt``, against optimiser steps: whether
a student had converged when its budget ran out is read here, not guessed."""
from __future__ import annotations

import json
import re
from pathlib import Path

from kws_okd.utils.plots import save_figure

_FIELD = re.compile(r"(train|valid) (acc|loss): ([0-9.eE+-]+)")
_EPOCH = re.compile(r"epoch: (\d+)")


def read_curve(exp_dir) -> dict:
    """``{"step": [...], "train_acc": [...], "valid_acc": [...], ...}`` per epoch of a run."""
    exp_dir = Path(exp_dir)
    summary = json.loads((exp_dir / "train_summary.json").read_text())
    per_epoch = summary.get("steps", 0) // max(1, summary.get("epochs", 1))
    out: dict[str, list] = {"step": []}
    for line in (exp_dir / "train_log.txt").read_text().splitlines():
        m = _EPOCH.search(line)
        if not m:
            continue
        out["step"].append(int(m.group(1)) * per_epoch)
        for split, what, val in _FIELD.findall(line):
            out.setdefault(f"{split}_{what}", []).append(float(val))
    return out


def plot_curves(runs: dict, path, title: str = "learning curves") -> None:
    """``runs`` maps a name to a run folder; train (dashed) and validation accuracy."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (name, exp_dir) in enumerate(runs.items()):
        c = read_curve(exp_dir)
        colour = f"C{i % 10}"
        if "valid_acc" in c:
            ax.plot(c["step"], [100 * v for v in c["valid_acc"]], color=colour, label=f"{name} valid")
        if "train_acc" in c:
            ax.plot(c["step"], [100 * v for v in c["train_acc"]], color=colour, ls="--", alpha=0.6,
                    label=f"{name} train")
    ax.set_xlabel("optimiser steps")
    ax.set_ylabel("accuracy (%)")
    save_figure(fig, ax, path, title, legend_size=7)
