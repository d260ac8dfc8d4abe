"""Compare detectors on the recordings a run built, at thresholds each chooses the way
`make run` and `kws-okd keywords` do (per keyword, 1 false alarm per hour on the threshold
recordings), for one or more smoothing lengths.

Prints, per model: what chooses (the select speakers' keywords found, false alarms per
hour on people talking), then what is only reported (the report speakers, Asterisk's
prompts, synthetic test words).

    python tools/keyword_detection.py \\
        --long-audio data/keywords/marvin-sheila-happy-house_manifests/long_audio \\
        okd_talk=results/keywords_marvin-sheila-happy-house/bcresnet2-okd+talk+context0.5/seed0/model.pt
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from kws_okd.evaluate.long_audio import calibrate_traces, moving_average, score_at_thresholds, trace, traceable
from kws_okd.pipeline import THRESHOLD_FLOOR, THRESHOLD_RECORDINGS
from kws_okd.stream.engine import StreamConfig
from kws_okd.stream.longaudio import read_labels

REPORTED = ("test_people", "test_real_prompts", "test_clean")


def smoothed(traced, k: int):
    """A raw (one-window) trace averaged over the last ``k`` windows, as the engine does."""
    times, scores, keywords, dur = traced
    return times, moving_average(torch.from_numpy(np.asarray(scores, np.float64)), k).numpy(), keywords, dur


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--long-audio", required=True, help="a run's long_audio folder")
    p.add_argument("--smooth", default="5", help="comma-separated smoothing lengths in windows")
    p.add_argument("models", nargs="+", help="NAME=path/to/model.pt")
    a = p.parse_args(argv)
    folder = Path(a.long_audio)
    valid = [r for r in THRESHOLD_RECORDINGS if (folder / f"{r}.wav").exists()]
    reported = [r for r in REPORTED if (folder / f"{r}.wav").exists()]
    labels = {r: read_labels(folder / f"{r}.csv") for r in valid + reported}
    for spec in a.models:
        name, _, path = spec.partition("=")
        model, classes = traceable(path)
        raw = {r: trace(model, classes, folder / f"{r}.wav", StreamConfig(smooth=1)) for r in labels}
        for k in (int(s) for s in a.smooth.split(",")):
            cfg = StreamConfig(smooth=k)
            tr = {r: smoothed(raw[r], k) for r in raw}
            thr = calibrate_traces([(tr[r], labels[r]) for r in valid], cfg, 1.0, THRESHOLD_FLOOR)
            res = {r: score_at_thresholds(tr[r], labels[r], cfg, thr) for r in labels}

            def cell(r):
                if r not in res:
                    return "–"
                found = f"{res[r]['hits']}/{res[r]['n_events']} " if res[r]["n_events"] else ""
                return f"{found}{res[r]['fa_per_hour']:.1f} FA/h"
            print(f"{name} smooth {k}: chooses: select {cell('valid_people')}, people talking {cell('valid_real')} | "
                  f"reported: report {cell('test_people')}, Asterisk {cell('test_real_prompts')}, "
                  f"synthetic {cell('test_clean')} | thresholds {', '.join(f'{w}={v:.6f}' for w, v in thr.items())}",
                  flush=True)


if __name__ == "__main__":
    main()
