"""Throughput of a disruptive policy + log-mel features on CPU.

    .venv/bin/python tools/bench_augment.py [--policy recipes/kws/augment/room_noise_channel.yaml]
        [--batch 128] [--reps 10] [--threads 2]

Prints clips/s for the whole policy plus LogMel, then the time of every transform on
the whole batch (the policy gives each clip one transform, so it costs roughly their
weighted mean), and the slowest one. The RIR bank is built first and not timed.

On a CPU shared with other jobs, OpenMP's default busy-waiting makes every parallel
torch op wait for a descheduled thread: the policy (many small ops on sub-batches)
measured ~10x slower with 2 threads than with 1 on this project's shared 2-core box.
So the bench sets OMP_WAIT_POLICY=PASSIVE unless you set it yourself.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when torch loads OpenMP: before the import

import torch  # noqa: E402
import yaml  # noqa: E402

from kws_okd.audio.features import LogMel  # noqa: E402
from kws_okd.augment import build_augmentation  # noqa: E402
from kws_okd.augment.room import RoomReverb  # noqa: E402


def timeit(fn, reps):
    fn()  # warm-up (lazy banks, FFT plans)
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


def leaves(module):
    kids = [m for m in module.children() if not isinstance(m, torch.nn.ModuleList)]
    kids += [m for ml in module.children() if isinstance(ml, torch.nn.ModuleList) for m in ml]
    if not kids:
        return [module]
    return [leaf for k in kids for leaf in leaves(k)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--policy", default=str(Path(__file__).resolve().parents[1]
                                           / "recipes/kws/augment/room_noise_channel.yaml"))
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    policy = build_augmentation(yaml.safe_load(Path(a.policy).read_text()))
    x = torch.randn(a.batch, 16000) * 0.1
    for m in policy.modules():
        if isinstance(m, RoomReverb):
            _ = m.bank  # generate/load the bank outside the timing
    logmel = LogMel()
    with torch.no_grad():
        total = timeit(lambda: logmel(policy(x)), a.reps)
        feats = timeit(lambda: logmel(x), a.reps)
        per = {}
        for leaf in leaves(policy):
            name = getattr(leaf, "registry_name", type(leaf).__name__)
            per[name] = timeit(lambda: leaf(x), max(2, a.reps // 2))
    ref = timeit(lambda: x * 2 + 1, a.reps)
    print(f"policy {a.policy}, batch {a.batch} x 1 s at 16 kHz, {a.threads} threads, "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}")
    print(f"load reference: x * 2 + 1 on the batch takes {1000 * ref:.1f} ms "
          f"(a few ms on an idle core; much more means the CPU is shared)")
    print(f"policy + logmel: {a.batch / total:8.0f} clips/s ({1000 * total:.1f} ms/batch)")
    print(f"logmel alone:    {a.batch / feats:8.0f} clips/s ({1000 * feats:.1f} ms/batch)")
    print("each transform on the whole batch:")
    for name, t in sorted(per.items(), key=lambda kv: -kv[1]):
        print(f"  {name:16s} {1000 * t:8.1f} ms  {a.batch / t:8.0f} clips/s")
    slow = max(per, key=per.get)
    print(f"slowest transform: {slow} ({1000 * per[slow]:.1f} ms/batch)")


if __name__ == "__main__":
    main()
