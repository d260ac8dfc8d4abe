"""False alarms per hour on real running speech that contains no keyword.

    python tools/real_false_alarms.py --model erm=results/.../model.pt --model kd=... [--hop-ms 50]

The audio is the held-out part of the default real-audio windows (klettres-data files
that no `okd_real` student trained on), played back to back: people saying letters and
syllables in about 20 languages. Each model scores a 1-s window every ``hop`` (in
batches, the same full-window model the streaming engine runs); posteriors are averaged
over ``smooth`` windows and detected with the streaming detector (threshold, refractory
period) on the ten command words (or every word with ``--all-words``). Every detection
is a false alarm. Reports FA/h per model at the given threshold and at 0.5 / 0.9.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch


@torch.no_grad()
def window_scores(model, audio: torch.Tensor, hop: int, win: int = 16000, batch: int = 256):
    starts = torch.arange(0, len(audio) - win + 1, hop)
    probs = []
    for i in range(0, len(starts), batch):
        x = torch.stack([audio[s:s + win] for s in starts[i:i + batch].tolist()])
        probs.append(model(x).softmax(-1))
    return (starts + win).numpy() / 16000.0, torch.cat(probs).numpy()


def smooth(p: np.ndarray, k: int) -> np.ndarray:
    if k <= 1:
        return p
    c = np.cumsum(np.vstack([np.zeros((1, p.shape[1])), p]), axis=0)
    out = np.empty_like(p)
    for i in range(len(p)):
        lo = max(0, i + 1 - k)
        out[i] = (c[i + 1] - c[lo]) / (i + 1 - lo)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True, help="[name=]path/to/model.pt")
    ap.add_argument("--hop-ms", type=float, default=50.0)
    ap.add_argument("--smooth", type=int, default=2, help="windows averaged (2 x 50 ms = the engine's 5 x 20 ms)")
    ap.add_argument("--threshold", type=float, default=0.7)
    ap.add_argument("--refractory", type=float, default=1.0)
    ap.add_argument("--all-words", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from kws_okd.pipeline import heldout_real_windows
    from kws_okd.stream.engine import default_keywords, detect_trace
    from kws_okd.train.checkpoint import load_model, named_model_paths
    held, info = heldout_real_windows()
    if held is None:
        raise SystemExit("no real-audio windows (install klettres-data)")
    audio = held.reshape(-1)
    hours = len(audio) / 16000 / 3600
    print(f"{len(held)} held-out windows of real speech from {info['heldout_files']} files "
          f"({60 * hours:.1f} min), hop {a.hop_ms:g} ms, smoothing {a.smooth}, refractory {a.refractory:g} s")
    thresholds = sorted({0.5, a.threshold, 0.9})
    print("| model | " + " | ".join(f"FA/h @ {t:g}" for t in thresholds) + " |")
    print("|---|" + "---|" * len(thresholds))
    for name, path in named_model_paths(a.model).items():
        model, blob = load_model(path)
        classes = blob["classes"]
        keywords = [c for c in classes if not c.startswith("_")] if a.all_words else default_keywords(classes)
        idx = [classes.index(k) for k in keywords]
        times, probs = window_scores(model, audio, int(16000 * a.hop_ms / 1000))
        scores = smooth(probs, a.smooth)[:, idx]
        fa = [len(detect_trace(times, scores, keywords, [t] * len(keywords), a.refractory)) / hours
              for t in thresholds]
        print(f"| {name} | " + " | ".join(f"{f:.0f}" for f in fa) + " |", flush=True)


if __name__ == "__main__":
    main()
