"""Training throughput with 1 process versus N DDP processes (same global batch).

    python tools/bench_ddp.py [--procs 2] [--epochs 3] [overrides...]

Trains the ERM BC-ResNet-1 student on the tiny TTS corpus with a global batch of 64,
once in one process and once under torchrun with N processes (gloo on CPU, one torch
thread each), and prints optimiser steps per second and clips per second for each.
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(cmd, env=None):
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        sys.exit(proc.stderr[-3000:])
    return time.time() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", default="results/bench_ddp")
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args()
    base = ["data.size=tiny", "distill=erm", f"epochs={a.epochs}", "progress=false",
            "ckpt_interval_minutes=0", *a.overrides]
    rows = []
    for n in (1, a.procs):
        out = f"{a.out}/p{n}"
        args = base + [f"results_dir={out}", f"batch_size={64 // n}", f"threads={max(1, 2 // n)}"]
        if n == 1:
            cmd = [sys.executable, "-m", "kws_okd.cli", "train", *args]
        else:
            cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n}",
                   "--master_port=29611", "-m", "kws_okd.train.hydra_app", *args]
        run(cmd)
        summary = json.loads(next(Path(ROOT / out).rglob("train_summary.json")).read_text())
        manifest = ROOT / "data/synth_tiny_manifests/task35/train.csv"
        clips = sum(1 for _ in open(manifest)) - 1
        steps = a.epochs * (clips // 64)
        secs = summary["train_seconds"]
        rows.append((n, steps / secs, a.epochs * clips / secs, summary["valid_acc"]))
    print("| processes | steps/s | clips/s | valid acc |\n|---|---|---|---|")
    for n, sps, cps, acc in rows:
        print(f"| {n} | {sps:.2f} | {cps:.0f} | {acc:.3f} |")


if __name__ == "__main__":
    main()
