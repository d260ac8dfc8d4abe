"""Streaming speed, start-up time and detection agreement of the fast path (ONNX Runtime
classifier + NumPy frames) against PyTorch, on one thread. Trains nothing.

    .venv/bin/python tools/bench_stream.py --out results/bench_stream.json
    .venv/bin/python tools/bench_stream.py --model results/.../model.pt --out bench.json

Without --model it builds a BC-ResNet-1 student with random weights (batch-norm
statistics measured on the bench audio, so its posteriors move with the input) and
saves it as a model.pt in the work folder.

Measured:

- **RTF** (real-time factor: processing time / audio duration) of the streaming engine
  at a 20 ms hop on a synthetic 60 s WAV, read as ``kws-okd stream --wav`` reads it
  (1 s blocks; 0.1 s with ``--realtime``; ``stream --mic`` reads 80 ms blocks, four
  windows per ONNX Runtime call, and ``--block-ms 20`` makes each window its own call), with ``torch.set_num_threads(1)`` and ONNX
  Runtime ``intra_op_num_threads=1``; wall-clock and CPU time (the machine may be
  shared: CPU time is what the process itself spent). The median of ``--repeats`` runs.
  PyTorch runs on the first ``--torch-seconds`` of the file (it is slow); "onnx export"
  is the streaming export of ``kws-okd export`` (``stream --onnx``).
- **start-up**: wall time from launching ``kws-okd stream --model M --wav short.wav``
  (a 3 s WAV) as a subprocess until it prints ``first hop processed`` on stderr (it does
  with ``KWS_OKD_FIRST_HOP=1``, right after the first window is classified): interpreter
  start, imports, model loading and the first window. Warm = the fast path's cache entry
  exists; cold = it is built (export + check) in that run.
- **agreement**: detections of the fast path on the 60 s WAV against the PyTorch model
  run on every whole 1 s window (``model(window)``, batched), with the same smoothing,
  thresholds and refractory period ("equal": same times and keywords, scores within
  1e-4), and the largest posterior difference. The
  threshold is set where the random model fires a few times per minute, at a value no
  smoothed score comes within 1e-3 of, so the comparison is not decided by rounding.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # as `kws-okd stream` does, before NumPy loads
import numpy as np  # noqa: E402

SR = 16000
CLASSES = ["_silence_", "_unknown_", "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]


def random_student(path: Path, audio: np.ndarray, seed: int = 0) -> None:
    """A BC-ResNet-1 with random (He-normal) weights whose batch-norm statistics are
    measured on windows of ``audio`` (forward passes only, no gradient), so activations
    keep their scale through the layers and the posteriors follow the input; the last
    layer is scaled up so they move a lot."""
    import torch
    from torch import nn

    from kws_okd.models import build_model
    from kws_okd.train.checkpoint import save_model
    torch.manual_seed(seed)
    model = build_model("bcresnet1", len(CLASSES))
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            m.momentum = None   # cumulative average
            m.reset_running_stats()
    rng = np.random.default_rng(seed)
    model.train()
    with torch.no_grad():
        for _ in range(4):
            starts = rng.integers(0, len(audio) - SR, 32)
            model(torch.from_numpy(np.stack([audio[s:s + SR] for s in starts])))
        model.backbone.head[-1].weight.mul_(10.0)
    model.eval()
    save_model(path, model, {"name": "bcresnet1"}, CLASSES,
               {"note": "random weights, batch-norm statistics measured on bench audio (bench_stream)"})


def synthetic_wav(path: Path, seconds: float, seed: int = 0) -> np.ndarray:
    """Noise at a level drifting between -55 and -25 dBFS, with 0.3-0.6 s chirps and
    tone bursts every 1-3 s (word-like events)."""
    import soundfile as sf
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    level = 10 ** (np.interp(np.arange(n), np.linspace(0, n, 12), rng.uniform(-55, -25, 12)) / 20)
    x = rng.standard_normal(n) * level
    t = rng.uniform(0.5, 2.0)
    while t < seconds - 1:
        d = rng.uniform(0.3, 0.6)
        tt = np.arange(int(d * SR)) / SR
        f0, f1 = rng.uniform(200, 3000, 2)
        burst = np.sin(2 * np.pi * (f0 * tt + 0.5 * (f1 - f0) / d * tt ** 2)) * np.hanning(len(tt))
        i = int(t * SR)
        x[i:i + len(tt)] += burst * rng.uniform(0.05, 0.5)
        t += d + rng.uniform(1.0, 3.0)
    x = (x / max(1.0, np.abs(x).max() / 0.95)).astype(np.float32)
    sf.write(str(path), x, SR, subtype="FLOAT")
    return x


def rtf(make_model, classes, wav: Path, seconds: float, block_s: float, repeats: int) -> dict:
    from kws_okd.stream.engine import StreamConfig, StreamEngine
    from kws_okd.stream.sources import file_blocks
    blocks = [b for b in file_blocks(wav, SR, block_s=block_s)]
    n = int(seconds * SR)
    kept, total = [], 0
    for b in blocks:
        if total >= n:
            break
        kept.append(b[:n - total])
        total += len(kept[-1])
    model = make_model()
    walls, cpus = [], []
    for _ in range(repeats):
        eng = StreamEngine(model, classes, StreamConfig(hop_ms=20))
        w0, c0 = time.perf_counter(), time.process_time()
        for b in kept:
            eng.feed(b)
        walls.append((time.perf_counter() - w0) / (total / SR))
        cpus.append((time.process_time() - c0) / (total / SR))
    return dict(rtf_wall=statistics.median(walls), rtf_cpu=statistics.median(cpus),
                rtf_wall_min=min(walls), audio_s=total / SR, block_s=block_s, windows=eng.windows,
                repeats=repeats)


def agreement(model_path: Path, audio: np.ndarray, cache_dir: Path) -> dict:
    import torch

    from kws_okd.stream.engine import StreamConfig, StreamEngine, detect_trace
    from kws_okd.stream.fast import load_fast_model
    from kws_okd.train.checkpoint import load_model
    torch_model, blob = load_model(model_path)
    classes = blob["classes"]
    fast = load_fast_model(model_path, cache_dir)
    keywords = [c for c in classes if not c.startswith("_")]
    probe = StreamConfig(hop_ms=20, smooth=5, keywords=keywords, threshold=2.0, refractory_s=1.0)
    eng = StreamEngine(fast, classes, probe, record=True)
    eng.feed(audio)
    times, fast_scores = eng.trace()
    # PyTorch on every whole window, smoothed the same way.
    hop = SR // 50
    starts = np.arange(len(times)) * hop
    with torch.no_grad():
        post = np.concatenate([torch.softmax(torch_model(torch.from_numpy(
            np.stack([audio[s:s + SR] for s in starts[i:i + 64]]))), -1).numpy()
            for i in range(0, len(starts), 64)]).astype(np.float64)
    kw = [classes.index(k) for k in keywords]
    smoothed = np.stack([post[max(0, i - 4):i + 1].mean(0) for i in range(len(post))])[:, kw]
    # A threshold a few detections per minute fire at, far from every score.
    peak = smoothed.max(axis=1)
    cands = np.quantile(peak, np.linspace(0.95, 0.995, 40))
    gaps = [np.abs(smoothed - c).min() for c in cands]
    thr = float(cands[int(np.argmax(gaps))])
    args = (keywords, [thr] * len(keywords), 1.0)
    ref = detect_trace(times, smoothed, *args)
    cfg = StreamConfig(hop_ms=20, smooth=5, keywords=keywords, threshold=thr, refractory_s=1.0)
    got = StreamEngine(fast, classes, cfg).run([audio[i:i + SR // 10] for i in range(0, len(audio), SR // 10)])
    same = (len(got) == len(ref) and all(g.time_s == r.time_s and g.keyword == r.keyword
                                         and abs(g.score - r.score) <= 1e-4 for g, r in zip(got, ref)))
    return dict(threshold=thr, threshold_margin=float(max(gaps)), detections_fast=len(got),
                detections_torch_full_window=len(ref), equal=same,
                posterior_max_abs_diff=float(np.abs(fast_scores - smoothed).max()),
                first_detections=[tuple(d) for d in got[:5]])


def startup(model_path: Path, wav: Path, runtime: str, cache_dir: Path | None, cold: bool) -> float:
    exe = Path(sys.executable).with_name("kws-okd")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "kws_okd.cli"]
    cmd += ["stream", "--model", str(model_path), "--wav", str(wav), "--runtime", runtime]
    if cache_dir is not None:
        cmd += ["--cache-dir", str(cache_dir)]
        if cold:
            shutil.rmtree(cache_dir, ignore_errors=True)
    env = dict(os.environ, KWS_OKD_FIRST_HOP="1")
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    elapsed = None
    for line in p.stderr:
        if line.strip() == "first hop processed" and elapsed is None:
            elapsed = time.perf_counter() - t0
    if p.wait() != 0 or elapsed is None:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {p.returncode})")
    return elapsed


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="a model.pt (default: a random BC-ResNet-1 student)")
    ap.add_argument("--out", required=True, help="JSON results")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the WAV (default 60)")
    ap.add_argument("--torch-seconds", type=float, default=10.0, help="audio the PyTorch path runs on")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--startup-runs", type=int, default=3)
    ap.add_argument("--workdir", help="keep the WAVs, model and cache here (default: a temp folder)")
    a = ap.parse_args(argv)

    import onnxruntime
    import torch
    torch.set_num_threads(1)
    from kws_okd.stream.fast import embedded_entry, load_fast_model
    from kws_okd.train.checkpoint import load_model

    work = Path(a.workdir or tempfile.mkdtemp(prefix="bench_stream_"))
    work.mkdir(parents=True, exist_ok=True)
    wav, short = work / "long.wav", work / "short.wav"
    audio = synthetic_wav(wav, a.seconds)
    synthetic_wav(short, 3.0, seed=1)
    model_path = Path(a.model) if a.model else work / "model.pt"
    if not a.model:
        random_student(model_path, audio)
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)

    res = dict(machine=dict(cpu_count=os.cpu_count(), processor=platform.processor() or platform.machine(),
                            load_average=list(os.getloadavg()), python=platform.python_version(),
                            torch=torch.__version__, onnxruntime=onnxruntime.__version__, threads=1),
               model=str(model_path) if a.model else "random BC-ResNet-1 (bench_stream)",
               wav_seconds=a.seconds, hop_ms=20)
    t0 = time.perf_counter()
    fast = load_fast_model(model_path, cache)
    res["cache_build_s"] = time.perf_counter() - t0
    res["fast_check"] = {k: fast.meta[k] for k in ("posterior_max_abs_diff", "windows_checked")}
    torch_model, blob = load_model(model_path)
    classes = blob["classes"]
    res["params"] = sum(p.numel() for p in torch_model.parameters())

    from kws_okd.export.pipeline import export_streaming
    from kws_okd.stream.backends import OnnxStreamModel
    export_streaming(torch_model, classes, work / "export")
    res["rtf"] = {
        "torch (--runtime torch)": rtf(lambda: torch_model, classes, wav, a.torch_seconds, 1.0, 1),
        "onnx export (--onnx)": rtf(lambda: OnnxStreamModel(work / "export"), classes, wav, a.seconds, 1.0, 1),
        "fast (default)": rtf(lambda: fast, classes, wav, a.seconds, 1.0, a.repeats),
        "fast, --realtime blocks": rtf(lambda: fast, classes, wav, a.seconds, 0.1, a.repeats),
        "fast, microphone blocks (stream --mic default)": rtf(lambda: fast, classes, wav, a.seconds, 0.08,
                                                              a.repeats),
        "fast, one-hop microphone blocks (--block-ms 20)": rtf(lambda: fast, classes, wav, a.seconds, 0.02,
                                                               a.repeats),
    }
    res["agreement"] = agreement(model_path, audio, cache)
    # A copy of model.pt alone that carries its checked entry, as `make run` leaves each
    # student: a cold cache, but no PyTorch and no export.
    carrying = work / "carrying" / "model.pt"
    carrying.parent.mkdir(exist_ok=True)
    shutil.copyfile(model_path, carrying)
    if embedded_entry(carrying) is None:
        load_fast_model(carrying, work / "carrying_build", embed=True)
    res["startup_s"] = {
        "fast, cold cache": startup(model_path, short, "fast", cache, cold=True),
        "fast, cold cache, model.pt carries its entry": statistics.median(
            startup(carrying, short, "fast", work / "carrying_cache", cold=True) for _ in range(a.startup_runs)),
        "fast, warm cache": statistics.median(startup(model_path, short, "fast", cache, False)
                                              for _ in range(a.startup_runs)),
        "torch": statistics.median(startup(model_path, short, "torch", None, False)
                                   for _ in range(max(1, a.startup_runs // 2))),
    }
    res["machine"]["load_average_end"] = list(os.getloadavg())
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")

    print(f"\nStreaming bench: {res['model']} ({res['params']:,} params), hop 20 ms, one thread, "
          f"{res['machine']['cpu_count']} CPUs, load average {res['machine']['load_average'][0]:.1f}\n")
    print("| path | blocks | audio (s) | RTF wall (median) | RTF wall (best) | RTF CPU |")
    print("|---|---|---|---|---|---|")
    for name, r in res["rtf"].items():
        print(f"| {name} | {1000 * r['block_s']:.0f} ms | {r['audio_s']:.0f} | {r['rtf_wall']:.4f} | "
              f"{r['rtf_wall_min']:.4f} | {r['rtf_cpu']:.4f} |")
    print("\n| start-up (process start to first hop) | s |\n|---|---|")
    for name, s in res["startup_s"].items():
        print(f"| {name} | {s:.2f} |")
    ag = res["agreement"]
    print(f"\nDetections on the {a.seconds:g} s WAV at threshold {ag['threshold']:.4f}: fast "
          f"{ag['detections_fast']}, PyTorch full-window {ag['detections_torch_full_window']}, "
          f"equal: {ag['equal']}; max posterior difference {ag['posterior_max_abs_diff']:.2g}. "
          f"Cache build {res['cache_build_s']:.1f} s (check: {res['fast_check']['posterior_max_abs_diff']:.2g} "
          f"over {res['fast_check']['windows_checked']} windows).")
    print(f"\nwrote {a.out}")
    return 0 if ag["equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
