"""Benchmark the speech-embedding teacher: forward throughput and what it costs OKD.

    python tools/bench_teacher.py [--threads 2] [--batch 64] [--steps 10]

1. Teacher forward throughput (clips/s, batch 64) with the embedding cache off, and the
   TFLite runtime of pyopen-wakeword on the same clips, one window at a time, for scale.
2. Training cost per step of a BC-ResNet-1 student (forward, backward, AdamW step) with
   ERM, KD, OKD (disruptive x_ood) and OKD with real-audio x_ood, in a steady-state epoch:
   the clean clips (and pure real windows) were seen once, so the teacher's input cache
   holds them, as from the second epoch of a run on. Reported relative to KD.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def timed(fn, repeat):
    fn()
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    from kws_okd.augment import build_augmentation
    from kws_okd.distill import build_objective
    from kws_okd.models import build_model

    clips = 0.1 * torch.randn(a.batch * a.steps, 16000)
    labels = torch.randint(0, 35, (len(clips),))
    teacher = build_model("speech_embedding", num_classes=35).eval()
    cache = teacher.backbone.cache
    teacher.backbone.cache = None
    with torch.no_grad():
        per_batch = timed(lambda: teacher(clips[:a.batch]), 3)
    print(f"teacher forward, batch {a.batch}, {a.threads} threads: {a.batch / per_batch:.0f} clips/s "
          f"({1e3 * per_batch / a.batch:.2f} ms/clip)")
    try:
        from kws_okd.models.tflite_reference import ReferenceEmbedding
        ref = ReferenceEmbedding()
        pad = torch.nn.functional.pad(clips[:16], teacher.backbone.pad).numpy()
        t = timed(lambda: [ref(np.asarray(c)) for c in pad], 1)
        print(f"TFLite runtime (pyopen-wakeword, one window at a time), same padded clips: "
              f"{16 / t:.0f} clips/s")
    except Exception as e:  # the reference is optional here
        print(f"TFLite runtime not measured: {e}")
    teacher.backbone.cache = cache

    x_ood = {"okd": build_augmentation({"name": "one_of", "transforms": [
        {"name": "mixup"}, {"name": "span_mask"}, {"name": "gaussian_noise"}]})}
    try:
        from omegaconf import OmegaConf
        from kws_okd.train.config import RECIPES
        spec = OmegaConf.to_container(OmegaConf.load(RECIPES / "kws" / "augment" / "real_audio.yaml"))
        x_ood["okd_real"] = build_augmentation(spec)
    except Exception as e:
        print(f"okd_real not measured: {e}")
    # Steady state: clean clips and the pure real windows are in the teacher's cache.
    with torch.no_grad():
        teacher(clips)
        if "okd_real" in x_ood:
            teacher(x_ood["okd_real"].windows)
    results = {}
    for method in ["erm", "kd", *x_ood]:
        student = build_model("bcresnet1", num_classes=35)
        opt = torch.optim.AdamW(student.parameters(), lr=1e-3)
        objective = build_objective("okd" if method.startswith("okd") else method)
        aug = x_ood.get(method)

        def epoch():
            for i in range(0, len(clips), a.batch):
                loss, _, _ = objective(student, teacher, clips[i:i + a.batch], labels[i:i + a.batch], aug)
                opt.zero_grad()
                loss.backward()
                opt.step()
        results[method] = timed(epoch, 1) / a.steps
    print(f"\nseconds per training step (batch {a.batch}, BC-ResNet-1 student, steady state):")
    for m, s in results.items():
        print(f"  {m:9s} {s:.3f} s   {s / results['kd']:.2f}x KD")


if __name__ == "__main__":
    main()
