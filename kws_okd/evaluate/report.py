"""Evaluate models on ID and OOD sets: per-domain accuracy, macro averages,
teacher-student gaps, confusion matrices, and report.md / report.json."""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch

from kws_okd.data.registry import load_dataset
from kws_okd.data.manifest import read_classes
from kws_okd.errors import DataError
from kws_okd.train.calibrate import balanced_accuracy
from kws_okd.train.checkpoint import load_model
from kws_okd.utils.atomic import atomic_path, write_json, write_text


@torch.no_grad()
def predict(model, dataset, batch_size: int = 256) -> np.ndarray:
    model.eval()
    out = []
    for i in range(0, len(dataset), batch_size):
        out.append(model(dataset.inputs[i:i + batch_size]).argmax(-1))
    return torch.cat(out).numpy()


def find_eval_sets(path, tag: str | None = None) -> dict[str, tuple[Path, str]]:
    """Map set name -> (manifest, 'id'|'ood') for a manifest folder or a single CSV."""
    path = Path(path)
    if path.is_file():
        return {path.stem: (path, tag or _tag_of(path.stem))}
    if not path.is_dir():
        raise DataError(f"{path}: evaluation data does not exist")
    proto = path / "protocol.json"
    if proto.exists():
        tags = json.loads(proto.read_text())["eval_sets"]
        return {name: (path / f"{name}.csv", t) for name, t in sorted(tags.items())}
    csvs = sorted(path.glob("test*.csv"))
    if not csvs:
        raise DataError(f"{path}: no protocol.json or test*.csv manifests to evaluate on "
                        f"(for a GSC-layout folder run `kws-okd prepare` first)")
    return {c.stem: (c, tag or _tag_of(c.stem)) for c in csvs}


def _tag_of(stem: str) -> str:
    """A set's tag from its name: ``*ood*`` -> ood, ``real*`` -> real, else id."""
    return "ood" if "ood" in stem else "real" if stem.startswith("real") else "id"


def accuracy_by_domain(pred, labels, domains) -> dict[str, float]:
    acc = defaultdict(list)
    for p, y, d in zip(pred, labels, domains):
        acc[d].append(p == y)
    return {d: float(np.mean(v)) for d, v in sorted(acc.items())}


def confusion(pred, labels, n) -> np.ndarray:
    m = np.zeros((n, n), dtype=np.int64)
    np.add.at(m, (labels, pred), 1)
    return m


def plot_confusion(matrix, classes, title, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    norm = matrix / np.maximum(1, matrix.sum(1, keepdims=True))
    size = max(5, 0.25 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def plot_bars(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(results)
    sets = list(next(iter(results.values()))["sets"])
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(names) * len(sets) / 2), 4))
    w = 0.8 / len(sets)
    for j, s in enumerate(sets):
        ax.bar(np.arange(len(names)) + j * w, [results[n]["sets"][s]["acc"] for n in names], w, label=s)
    ax.set_xticks(np.arange(len(names)) + 0.4 - w / 2, names, rotation=20, fontsize=8)
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


# real: the development set's report speakers (kws_okd/data/people.py); select: its
# speakers the _unknown_ calibration is chosen on; real43: the older 43 clips of the
# alsa-utils voice and the Asterisk prompts.
TAGS = ("id", "ood", "real", "select", "real43")
BALANCED_TAGS = ("real", "select")


def per_class(pred, labels, classes) -> dict:
    """Per class present: clips, right, and what its misses were called (counts)."""
    out = {}
    for c in np.unique(labels):
        mine = pred[labels == c]
        wrong = Counter(classes[p] for p in mine if p != c)
        out[classes[c]] = dict(n=int(len(mine)), right=int((mine == c).sum()), called=dict(wrong.most_common()))
    return out


def evaluate(models: dict[str, str | Path], data, out_dir, teacher: str | None = None,
             plots: bool = True, extra_sets: dict | None = None) -> dict:
    """``models`` maps a display name to a ``model.pt``; ``data`` is a manifest folder or CSV.

    ``teacher`` names the entry the teacher-student gaps are measured against
    (default: the first model whose role is ``teacher``). ``extra_sets`` adds
    ``{name: (manifest, tag)}``, e.g. the real-speech development set tagged ``real``.
    """
    out_dir = Path(out_dir)
    sets = {**find_eval_sets(data), **{k: (Path(p), t) for k, (p, t) in (extra_sets or {}).items()}}
    datasets = {name: load_dataset(path) for name, (path, _) in sets.items()}
    results = {}
    for name, path in models.items():
        model, blob = load_model(path)
        info = blob.get("info", {})
        res = dict(path=str(path), role=info.get("role"), method=info.get("method"),
                   params=info.get("params"), macs=info.get("macs"), seed=info.get("seed"),
                   valid_acc=info.get("valid_acc"), steps=info.get("steps"), sets={})
        for set_name, ds in datasets.items():
            mdir = Path(sets[set_name][0]).parent
            classes = read_classes(mdir / "classes.txt") if (mdir / "classes.txt").exists() else blob["classes"]
            if classes != blob["classes"]:
                raise DataError(f"{sets[set_name][0]}: its classes differ from model {path}'s")
            pred = predict(model, ds)
            labels = ds.labels.numpy()
            res["sets"][set_name] = dict(tag=sets[set_name][1], acc=float((pred == labels).mean()),
                                         balanced=balanced_accuracy(pred, labels),
                                         per_class=per_class(pred, labels, classes),
                                         n=len(ds), by_domain=accuracy_by_domain(pred, labels, ds.domains))
            if plots:
                safe = name.replace("/", "_").replace(" ", "_")
                plot_confusion(confusion(pred, labels, len(classes)), classes, f"{name} on {set_name}",
                               out_dir / f"confusion_{safe}_{set_name}.png")
        for tag in TAGS:   # people: class-balanced, as the balanced benchmark is
            key = "balanced" if tag in BALANCED_TAGS else "acc"
            accs = [s[key] for s in res["sets"].values() if s["tag"] == tag]
            res[f"{tag}_acc"] = float(np.mean(accs)) if accs else None
        results[name] = res
    teacher = teacher or next((n for n, r in results.items() if r["role"] == "teacher"), None)
    if teacher:
        for r in results.values():
            for tag in TAGS:
                t, s = results[teacher][f"{tag}_acc"], r[f"{tag}_acc"]
                r[f"gap_{tag}"] = None if t is None or s is None else t - s
    report = dict(data=str(data), sets={k: dict(manifest=str(v[0]), tag=v[1]) for k, v in sets.items()},
                  teacher=teacher, models=results)
    write_json(out_dir / "report.json", report)
    write_text(out_dir / "report.md", render_markdown(report))
    if plots:
        plot_bars(results, out_dir / "accuracy.png")
    return report


def _pct(x):
    return "–" if x is None else f"{100 * x:.1f}"


def render_markdown(report) -> str:
    models, sets = report["models"], report["sets"]
    has_real = any(v["tag"] == "real" for v in sets.values())
    lines = ["# Evaluation report", "", f"Data: `{report['data']}`", "",
             "Accuracy (%) per evaluation set; ID/OOD are macro-averages over the sets with that tag. "
             "Gap = teacher minus model. Models were selected by best training-domain validation accuracy. "
             "Sets tagged `real` are recordings of human speakers, used for evaluation only "
             "(never for training or selection).",
             ""]
    head = ["model", "method", "params", "MACs/1 s"] + [f"{s} ({v['tag']})" for s, v in sets.items()] \
        + ["ID", "OOD", "gap ID", "gap OOD"] + (["real", "gap real"] if has_real else [])
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in models.items():
        row = [name, str(r.get("method")), f"{r['params']:,}" if r["params"] else "–",
               f"{r['macs'] / 1e6:.2f} M" if r["macs"] else "–"]
        row += [_pct(r["sets"][s]["acc"]) for s in sets]
        row += [_pct(r["id_acc"]), _pct(r["ood_acc"]), _pct(r.get("gap_id")), _pct(r.get("gap_ood"))]
        if has_real:
            row += [_pct(r.get("real_acc")), _pct(r.get("gap_real"))]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "## Accuracy per domain", ""]
    for name, r in models.items():
        parts = [f"{s}: " + ", ".join(f"{d} {_pct(a)}" for d, a in v["by_domain"].items())
                 for s, v in r["sets"].items()]
        lines.append(f"- **{name}** — " + "; ".join(parts))
    lines += ["", "![accuracy](accuracy.png)", ""]
    return "\n".join(lines)
