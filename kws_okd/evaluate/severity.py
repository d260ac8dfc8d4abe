"""Accuracy versus shift severity, from ``evaluate()``'s report.json and a suite's suite.json.

Writes ``severity.json``, ``severity.md`` (one table: models x conditions, plus mean
OOD accuracy over the suite) and one ``severity_<model>.png`` per model: accuracy
against SNR per noise type, against RT60 for rooms, and bars for channel and
combined conditions, each with the clean accuracy as a reference line.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from kws_okd.errors import DataError
from kws_okd.utils.atomic import atomic_path, write_json, write_text


def _load(obj, name):
    if isinstance(obj, dict):
        return obj
    path = Path(obj)
    if path.is_dir():
        path = path / name
    if not path.exists():
        raise DataError(f"{path}: {name} does not exist")
    return json.loads(path.read_text())


def severity_table(report, suite) -> dict:
    """Per model: accuracy per condition, grouped by family with severities, and the suite mean."""
    report, suite = _load(report, "report.json"), _load(suite, "suite.json")
    conds = suite["conditions"]
    out = {}
    for model, r in report["models"].items():
        sets = r["sets"]
        missing = [c["name"] for c in conds if f"test_shift_{c['name']}" not in sets]
        if missing:
            raise DataError(f"report for model {model!r} lacks suite condition(s) {missing}; "
                            f"evaluate it on the suite folder")
        acc = {c["name"]: sets[f"test_shift_{c['name']}"]["acc"] for c in conds}
        families = defaultdict(list)
        for c in conds:
            families[c["family"]].append(dict(condition=c["name"], severity=c["severity"],
                                              acc=acc[c["name"]]))
        shifted = [acc[c["name"]] for c in conds if c["family"] != "clean"]
        out[model] = dict(acc=acc, families=dict(families), clean=acc.get("clean"),
                          mean_ood=float(np.mean(shifted)) if shifted else None,
                          drop=None if acc.get("clean") is None or not shifted
                          else float(acc["clean"] - np.mean(shifted)))
    return dict(suite=suite.get("suite"), conditions=[c["name"] for c in conds], models=out)


def _pct(x):
    return "–" if x is None else f"{100 * x:.1f}"


def render_markdown(table) -> str:
    conds = table["conditions"]
    lines = [f"# Accuracy under shift ({table['suite']} suite)", "",
             "Accuracy (%) per shifted condition. Mean OOD = mean over every condition except "
             "`clean`; drop = clean minus mean OOD. Generators are held out from training "
             "(docs/shift_suite.md).", ""]
    head = ["model"] + conds + ["mean OOD", "drop"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m, r in table["models"].items():
        lines.append("| " + " | ".join([m] + [_pct(r["acc"][c]) for c in conds]
                                       + [_pct(r["mean_ood"]), _pct(r["drop"])]) + " |")
    lines += [""] + [f"![{m}]({_png_name(m)})" for m in table["models"]] + [""]
    return "\n".join(lines)


def _png_name(model: str) -> str:
    return "severity_" + "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in model) + ".png"


def plot_model(model: str, r: dict, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fams = r["families"]
    noise = {f: v for f, v in fams.items() if f.startswith("noise_")}
    rooms = fams.get("room", [])
    cats = [e for f, v in fams.items() if f not in noise and f not in ("room", "clean") for e in v]
    panels = [p for p in ("noise", "room", "other") if {"noise": noise, "room": rooms, "other": cats}[p]]
    ncol = max(1, len(panels))
    fig, axes = plt.subplots(1, ncol, figsize=(4.5 * ncol, 3.6), squeeze=False)
    clean = r.get("clean")
    for ax, panel in zip(axes[0], panels):
        if panel == "noise":
            for f, v in sorted(noise.items()):
                v = sorted(v, key=lambda e: -e["severity"])
                ax.plot([e["severity"] for e in v], [e["acc"] for e in v], "o-", label=f[len("noise_"):])
            ax.invert_xaxis()
            ax.set_xlabel("SNR (dB)")
            ax.legend(fontsize=7)
        elif panel == "room":
            v = sorted(rooms, key=lambda e: e["severity"])
            xs, ys = [e["severity"] for e in v], [e["acc"] for e in v]
            if clean is not None:  # a dry room: RT60 0
                xs, ys = [0.0] + xs, [clean] + ys
            ax.plot(xs, ys, "o-")
            ax.set_xlabel("RT60 (s)")
        else:
            ax.bar(range(len(cats)), [e["acc"] for e in cats])
            ax.set_xticks(range(len(cats)), [e["condition"] for e in cats], rotation=45, ha="right", fontsize=7)
        if clean is not None:
            ax.axhline(clean, color="grey", ls="--", lw=1)
            ax.text(0.02, clean, " clean", transform=ax.get_yaxis_transform(), va="bottom",
                    fontsize=7, color="grey")
        ax.set_ylim(0, 1)
        ax.set_ylabel("accuracy")
    fig.suptitle(f"{model}: accuracy vs shift (mean OOD {_pct(r['mean_ood'])} %)", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def severity_report(report, suite, out_dir, plots: bool = True) -> dict:
    """``report``: report.json (or its folder or dict); ``suite``: suite.json (or the suite folder)."""
    out_dir = Path(out_dir)
    table = severity_table(report, suite)
    write_json(out_dir / "severity.json", table)
    write_text(out_dir / "severity.md", render_markdown(table))
    if plots:
        for m, r in table["models"].items():
            plot_model(m, r, out_dir / _png_name(m))
    return table
