"""Float against int8 in ONNX Runtime: accuracy on a manifest's waveforms and single-thread
latency per clip at several batch sizes, measured *interleaved* (each round times every
model in turn), so that load from other jobs on a shared machine hits both alike.
Used by the export's model card and ``tools/bench_int8.py``."""
from __future__ import annotations

import time

import numpy as np

from kws_okd.export.onnx_io import run_onnx


def interleaved_ms(sessions: dict, batch: int = 1, num_samples: int = 16000, runs: int = 50,
                   rounds: int = 5, warmup: int = 5) -> dict[str, float]:
    """Median milliseconds *per clip* of ``sess.run`` on a (batch, num_samples) input, for
    each named session: the median over ``rounds`` of the median of ``runs`` calls, the
    sessions taking turns within each round."""
    x = (np.random.default_rng(0).standard_normal((batch, num_samples)) * 0.1).astype(np.float32)
    feeds = {k: {s.get_inputs()[0].name: x} for k, s in sessions.items()}
    for k, s in sessions.items():
        for _ in range(warmup):
            s.run(None, feeds[k])
    per_round = {k: [] for k in sessions}
    for _ in range(rounds):
        for k, s in sessions.items():
            ts = []
            for _ in range(max(1, runs)):
                t0 = time.perf_counter()
                s.run(None, feeds[k])
                ts.append(time.perf_counter() - t0)
            per_round[k].append(1e3 * float(np.median(ts)) / batch)
    return {k: float(np.median(v)) for k, v in per_round.items()}


def latency_by_batch(sessions: dict, batches=(1, 32), runs: int = 50, rounds: int = 5,
                     num_samples: int = 16000) -> dict:
    """``{"batch_1": {name: ms per clip, ...}, "batch_32": {...}}``; fewer calls at larger
    batches (``runs // batch``, at least 3) so each size takes about as long."""
    return {f"batch_{b}": interleaved_ms(sessions, b, num_samples, max(3, runs // b), rounds)
            for b in batches}


def speed_summary(lat: dict, fp32: str = "onnx_fp32", int8: str = "onnx_int8") -> dict:
    """Speed-ups (float time / int8 time) per batch size and which of the two is faster at
    every batch size measured ('int8', 'fp32' or 'mixed')."""
    speedup = {b: v[fp32] / v[int8] for b, v in lat.items()}
    faster = "int8" if all(s > 1 for s in speedup.values()) else \
        "fp32" if all(s < 1 for s in speedup.values()) else "mixed"
    return dict(int8_speedup=speedup, faster=faster)


def accuracy(sess, waves: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """(top-1 accuracy, logits) of an ORT session on waveforms."""
    logits = run_onnx(sess, waves)
    return float((logits.argmax(-1) == labels).mean()), logits
