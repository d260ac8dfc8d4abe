"""Single-thread latency measurement shared by the export card and tools/bench_latency.py."""
from __future__ import annotations

import time

import numpy as np
import torch


def median_ms(fn, runs: int = 200, warmup: int = 20) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(ts))


def torch_window_ms(module, num_samples: int = 16000, runs: int = 200) -> float:
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    x = torch.randn(1, num_samples) * 0.1
    try:
        with torch.inference_mode():
            return median_ms(lambda: module(x), runs)
    finally:
        torch.set_num_threads(prev)


def ort_window_ms(sess, num_samples: int = 16000, runs: int = 200) -> float:
    name = sess.get_inputs()[0].name
    x = {name: (np.random.default_rng(0).standard_normal((1, num_samples)) * 0.1).astype(np.float32)}
    return median_ms(lambda: sess.run(None, x), runs)
