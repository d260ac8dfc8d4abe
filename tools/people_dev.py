"""Score model files on the real development set (kws_okd/data/people.py), speakers by role.

    python tools/people_dev.py --model teacher=results/.../model.pt --model okd=.../model.pt [--out DIR]

For each model and each role (``select``: what the ``_unknown_`` offset is chosen on;
``report``: never used for anything), the class-balanced accuracy as stored (with the
model's own offset, if it has one) and with that offset taken back out (``raw``), and
the share of keyword clips called ``_unknown_``. With ``--out``, the table is written to
``DIR/people_dev.md`` and the figures to ``DIR/people_dev.json``. The ``train`` speakers are
not scored: the default corpus trains on them.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def score(path, datasets: dict) -> dict:
    import numpy as np

    from kws_okd.train.calibrate import balanced_accuracy, logits_of
    from kws_okd.train.checkpoint import load_model
    model, blob = load_model(path)
    classes = blob["classes"]
    unk = classes.index("_unknown_")
    offset = blob.get("info", {}).get("calibration", {}).get("unknown_offset", 0.0)
    out = {"offset": offset}
    for role, ds in datasets.items():
        z = logits_of(model, ds.inputs).numpy()
        y = ds.labels.numpy()
        raw = z.copy()
        raw[:, unk] += offset
        kw = y != unk
        out[role] = dict(balanced=balanced_accuracy(z.argmax(1), y), raw=balanced_accuracy(raw.argmax(1), y),
                         kw_as_unknown=float(np.mean(z.argmax(1)[kw] == unk)), clips=int(len(y)))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", required=True, help="NAME=path/model.pt (repeatable)")
    ap.add_argument("--out", type=Path, help="folder for people_dev.md and people_dev.json")
    a = ap.parse_args(argv)
    import tempfile

    from kws_okd.data.dataset import ManifestDataset
    from kws_okd.data.people import write_people_manifest
    from kws_okd.errors import KWSError
    from kws_okd.train.checkpoint import load_model, named_model_paths
    from kws_okd.utils.atomic import write_json, write_text
    models = named_model_paths(a.model)
    try:
        classes = load_model(next(iter(models.values())))[1]["classes"]
        if "_unknown_" not in classes:
            raise KWSError(f"{next(iter(models.values()))}: the development set scores 12-class models "
                           f"(with an _unknown_ class); this one has {classes}")
        with tempfile.TemporaryDirectory() as tmp:
            datasets = {r: ManifestDataset(write_people_manifest(Path(tmp) / f"{r}.csv", classes, r))
                        for r in ("select", "report")}
            results = {name: score(path, datasets) for name, path in models.items()}
    except KWSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    lines = ["| model | offset | select % | select raw % | report % | report raw % | report kw→unk % |",
             "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        s, p = r["select"], r["report"]
        lines.append(f"| {name} | {r['offset']:.2f} | {100 * s['balanced']:.1f} | {100 * s['raw']:.1f} | "
                     f"{100 * p['balanced']:.1f} | {100 * p['raw']:.1f} | {100 * p['kw_as_unknown']:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        write_text(a.out / "people_dev.md", text)
        write_json(a.out / "people_dev.json", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
