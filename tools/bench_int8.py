#!/usr/bin/env python
"""Float against int8 ONNX exports of trained students: accuracy on a test manifest,
single-thread latency per clip at batch 1 and 32 (ONNX Runtime, all variants timed in
turns so load from other jobs hits each alike), and file size.

    python tools/bench_int8.py --model kd=results/synth_default/bcresnet1-kd+lr01/seed0/model.pt
    python tools/bench_int8.py --model a.pt --model b.pt --test data/.../test_ood_flite.csv --out int8.json

Variants (``--variants``, default all):

- ``fp32``: ``model.onnx`` as ``kws-okd export`` writes it (the reference);
- ``int8``: what ``kws-okd export`` ships as ``model.int8.onnx``: int8 DFT front-end
  (per-frame pre-emphasised, peak-scaled frames times the int8 de-emphasising DFT basis),
  float backbone;
- ``int8x2``: the same with each frame cut into two int8 planes (``kws-okd export
  --int8-frame-planes 2``): its rounding error about tenfold smaller, one integer product
  of twice the rows;
- ``int8+backbone``: the same plus the backbone convolutions quantised by ORT static
  QDQ (99.99th-percentile calibration on ``--calib-clips`` clips of ``--calib``);
- ``backbone-only``: the previous scheme: float front-end, ORT-quantised backbone.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from kws_okd.data.dataset import ManifestDataset
from kws_okd.export.compare import accuracy, latency_by_batch
from kws_okd.export.frontend import ExportNet
from kws_okd.export.onnx_io import export_onnx, session
from kws_okd.export.quantize import export_int8_frontend, quantize_backbone
from kws_okd.stream.features import frame_spec
from kws_okd.train.checkpoint import load_model, named_model_paths
from kws_okd.utils.atomic import write_json

SR = 16000
MANIFESTS = Path("data/synth_default_manifests/task12")
VARIANTS = ("fp32", "int8", "int8x2", "int8+backbone", "backbone-only")


def build(model, tmp: Path, variants, calib_waves) -> dict[str, Path]:
    spec = frame_spec(model.frontend)
    files = {"fp32": tmp / "fp32.onnx"}
    export_onnx(ExportNet(model).eval(), torch.randn(1, SR) * 0.1, files["fp32"], "wav")
    if spec is not None and ("int8" in variants or "int8+backbone" in variants):
        files["int8"] = tmp / "int8.onnx"
        export_int8_frontend(model, spec, files["int8"])
        if "int8+backbone" in variants:
            files["int8+backbone"] = tmp / "int8_backbone.onnx"
            quantize_backbone(files["int8"], files["int8+backbone"], calib_waves)
    if spec is not None and "int8x2" in variants:
        files["int8x2"] = tmp / "int8x2.onnx"
        export_int8_frontend(model, spec, files["int8x2"], planes=2)
    if "backbone-only" in variants:
        files["backbone-only"] = tmp / "backbone_only.onnx"
        quantize_backbone(files["fp32"], files["backbone-only"], calib_waves)
    return {k: v for k, v in files.items() if k in variants or k == "fp32"}


def bench(name, path, test, calib_waves, variants, runs, rounds) -> dict:
    model, _ = load_model(path)
    with tempfile.TemporaryDirectory() as tmp:
        files = build(model, Path(tmp), variants, calib_waves)
        sessions = {k: session(f) for k, f in files.items()}
        rows = {k: dict(size_bytes=f.stat().st_size) for k, f in files.items()}
        ref = None
        for k, s in sessions.items():
            acc, logits = accuracy(s, test.waves.numpy(), test.labels.numpy())
            ref = logits.argmax(-1) if ref is None else ref
            rows[k].update(acc=acc, top1_agreement_with_fp32=float((logits.argmax(-1) == ref).mean()))
        lat = latency_by_batch(sessions, (1, 32), runs=runs, rounds=rounds)
    for k, r in rows.items():
        r["ms_per_clip"] = {b: v[k] for b, v in lat.items()}
        r["acc_change_vs_fp32"] = r["acc"] - rows["fp32"]["acc"]
        r["speedup_vs_fp32"] = {b: v["fp32"] / v[k] for b, v in lat.items()}
    return dict(name=name, model=str(path), test=test.path, n_test=len(test), variants=rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", required=True, help="[name=]path/to/model.pt (repeatable)")
    p.add_argument("--test", default=str(MANIFESTS / "test_id.csv"), help="manifest to measure accuracy on")
    p.add_argument("--calib", default=str(MANIFESTS / "train.csv"),
                   help="calibration manifest (training data) for the variants with an int8 backbone")
    p.add_argument("--calib-clips", type=int, default=256)
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {VARIANTS}")
    p.add_argument("--runs", type=int, default=100, help="calls per timing round at batch 1 (runs // batch at larger)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", help="also write the results as JSON here")
    a = p.parse_args(argv)
    variants = [v for v in a.variants.split(",") if v]
    if unknown := set(variants) - set(VARIANTS):
        p.error(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
    torch.set_num_threads(1)
    test = ManifestDataset(a.test)
    calib_waves = None
    if {"int8+backbone", "backbone-only"} & set(variants):
        cal = ManifestDataset(a.calib)
        idx = np.sort(np.random.default_rng(0).permutation(len(cal))[:a.calib_clips])
        calib_waves = cal.waves[idx].numpy()
    load = os.getloadavg()[0]
    results = [bench(name, path, test, calib_waves, variants, a.runs, a.rounds)
               for name, path in named_model_paths(a.model).items()]
    print(f"# float against int8 (ONNX Runtime, single thread)\n\nAccuracy on `{a.test}` ({len(test)} clips); "
          f"latency: median ms per clip, variants timed in turns ({a.rounds} rounds of {a.runs} calls at batch 1, "
          f"{max(3, a.runs // 32)} at batch 32). Shared machine: {os.cpu_count()} cores, 1-min load average "
          f"{load:.1f} at the start.\n")
    print("| model | variant | accuracy % | vs float (points) | top-1 agreement with float % | ms/clip batch 1 "
          "| ms/clip batch 32 | speed-up vs float (batch 1 / 32) | file KiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        for k, v in r["variants"].items():
            ms, su = v["ms_per_clip"], v["speedup_vs_fp32"]
            print(f"| {r['name']} | {k} | {100 * v['acc']:.2f} | {100 * v['acc_change_vs_fp32']:+.2f} | "
                  f"{100 * v['top1_agreement_with_fp32']:.1f} | {ms['batch_1']:.3f} | {ms['batch_32']:.3f} | "
                  f"{su['batch_1']:.2f}x / {su['batch_32']:.2f}x | {v['size_bytes'] / 1024:.0f} |")
    if a.out:
        write_json(a.out, dict(load_average=load, runs=a.runs, rounds=a.rounds, test=a.test, results=results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
