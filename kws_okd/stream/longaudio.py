"""Long test recordings with known keyword times, and their streaming evaluation.

:func:`compose_long_audio` lays test-set words one after another with random gaps
over looped background noise at a chosen SNR, and writes the WAV plus a label CSV
(``start_s,end_s,word,kind,source``) where ``kind`` is ``keyword`` or ``filler``
(a non-keyword word). :func:`evaluate_stream` runs the streaming engine once,
records the smoothed keyword scores, and sweeps the threshold to trace the DET
curve (false rejection rate vs false alarms per hour); it reports the FRR at a
fixed false-alarm rate and the detection latency.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from kws_okd.audio.activity import speech_spans
from kws_okd.audio.io import read_audio, write_audio
from kws_okd.data.manifest import read_manifest
from kws_okd.errors import ConfigError, DataError
from kws_okd.stream.backends import window_of
from kws_okd.stream.engine import Detection, StreamConfig, StreamEngine, default_keywords, detect_trace
from kws_okd.utils.atomic import write_json, write_text
from kws_okd.utils.csvfile import read_csv, write_csv
from kws_okd.utils.plots import save_figure

LABEL_COLUMNS = ("start_s", "end_s", "word", "kind", "source", "domain")


def speech_span(x: np.ndarray, sr: int, floor_db: float = 35.0) -> tuple[int, int]:
    """Sample range of a clip's speech: 10 ms frames within ``floor_db`` of the loudest
    (:func:`kws_okd.audio.activity.speech_spans`)."""
    a, b = speech_spans(x, sr, floor_db)[0]
    return int(a), int(b)


def _noise_track(noise_dir, n: int, sr: int, rng) -> np.ndarray:
    files = sorted(Path(noise_dir).glob("*.wav")) + sorted(Path(noise_dir).glob("*.flac"))
    if not files:
        raise DataError(f"{noise_dir}: no background noise files (*.wav, *.flac)")
    noises = [read_audio(f, sr, warn=False) for f in files]
    out, pos, fade = np.zeros(n, dtype=np.float32), 0, sr // 100
    ramp = np.linspace(0, 1, fade, dtype=np.float32)
    while pos < n:  # random 2-6 s pieces of random files, with short fades against clicks
        src = noises[rng.integers(len(noises))]
        seg = int(rng.uniform(2, 6) * sr)
        seg = min(seg, len(src), n - pos)
        start = rng.integers(0, len(src) - seg + 1)
        piece = src[start:start + seg].copy()
        piece /= np.sqrt(np.mean(piece ** 2)) + 1e-9
        if len(piece) > 2 * fade:
            piece[:fade] *= ramp
            piece[-fade:] *= ramp[::-1]
        out[pos:pos + seg] = piece
        pos += seg
    return out


def compose_long_audio(manifest, out_wav, minutes: float = 10.0, keywords=None, noise_dir=None,
                       snr_db: float | None = None, seed: int = 0, keyword_share: float = 0.5,
                       gap_s=(0.5, 2.5), sample_rate: int = 16000) -> dict:
    """Write ``out_wav`` and ``<out_wav stem>.csv``; deterministic for ``seed``.

    ``snr_db=None`` gives a clean recording (a faint dither only); otherwise noise
    from ``noise_dir`` is mixed at that SNR relative to the speech's active level.
    """
    rows = read_manifest(manifest)
    words = sorted({r["word"] for r in rows})
    keywords = list(keywords or default_keywords(words))
    missing = [k for k in keywords if k not in words]
    if missing:
        raise DataError(f"{manifest}: no clips of keyword(s) {missing}")
    kw_rows = [r for r in rows if r["word"] in keywords]
    filler_rows = [r for r in rows if r["word"] not in keywords]
    if snr_db is not None and noise_dir is None:
        raise DataError("a noisy recording (snr_db given) needs noise_dir")
    rng = np.random.default_rng(seed)
    total = int(minutes * 60 * sample_rate)
    speech = np.zeros(total, dtype=np.float32)
    labels, t, active = [], int(rng.uniform(*gap_s) * sample_rate), []
    while True:
        pool = kw_rows if (not filler_rows or rng.random() < keyword_share) else filler_rows
        r = pool[rng.integers(len(pool))]
        x = read_audio(r["wav"], sample_rate, warn=False)
        a, b = speech_span(x, sample_rate)
        seg = x[a:b]
        if t + len(seg) > total - sample_rate // 2:
            break
        seg = seg / (np.abs(seg).max() + 1e-9) * rng.uniform(0.3, 0.7)  # varied loudness
        speech[t:t + len(seg)] = seg
        active.append(seg)
        labels.append(dict(start_s=round(t / sample_rate, 4), end_s=round((t + len(seg)) / sample_rate, 4),
                           word=r["word"], kind="keyword" if r["word"] in keywords else "filler",
                           source=r["ID"], domain=r.get("domain", "")))
        t += len(seg) + int(rng.uniform(*gap_s) * sample_rate)
    if not labels:
        raise DataError(f"{minutes} min is too short for even one word")
    level = float(np.sqrt(np.mean(np.concatenate(active) ** 2)))
    if snr_db is None:
        noise = rng.standard_normal(total).astype(np.float32) * level * 1e-3   # -60 dB dither
    else:
        noise = _noise_track(noise_dir, total, sample_rate, rng) * level * 10 ** (-snr_db / 20)
    mix = speech + noise
    peak = np.abs(mix).max()
    if peak > 0.99:
        mix *= 0.99 / peak
    out_wav = Path(out_wav)
    write_audio(out_wav, mix, sample_rate)
    write_labels(out_wav.with_suffix(".csv"), labels)
    info = dict(manifest=str(manifest), minutes=minutes, seed=seed, snr_db=snr_db,
                noise_dir=None if noise_dir is None else str(noise_dir), keywords=keywords,
                n_keywords=sum(lb["kind"] == "keyword" for lb in labels),
                n_fillers=sum(lb["kind"] == "filler" for lb in labels))
    write_json(out_wav.with_suffix(".json"), info)
    return info


def write_labels(path, labels) -> None:
    write_csv(path, labels, LABEL_COLUMNS)


def is_built(wav, settings: dict) -> bool:
    """Whether the recording ``wav`` is there with a ``.json`` that records the same
    ``settings`` (what its builder compares to reuse it)."""
    wav = Path(wav)
    info = wav.with_suffix(".json")
    return wav.exists() and info.exists() and json.loads(info.read_text()).get("settings") == settings


def read_labels(path) -> list[dict]:
    rows = read_csv(path, ("start_s", "end_s", "word"), "label file",
                    " (make it with `kws-okd make-long-audio`)")
    out = []
    for i, r in enumerate(rows, start=2):
        try:
            out.append(dict(r, start_s=float(r["start_s"]), end_s=float(r["end_s"])))
        except ValueError:
            raise DataError(f"{path}, line {i}: start_s/end_s must be numbers") from None
    return out


# -- scoring ------------------------------------------------------------------------

def label_domain(label: dict) -> str:
    """The domain of a labelled segment (its manifest row's ``domain``: a synthesiser
    family, ``real_...`` or ``music_...``); label files written before the column existed
    fall back to the first part of the segment's source ID."""
    return str(label.get("domain") or str(label.get("source", "?")).split("/", 1)[0])


# A detection counts for a keyword event from this long before its start to this long after
# its end (also the span kws_okd.evaluate.long_audio.top_keyword scores).
EARLY_S, LATE_S = 0.1, 0.75


def match(detections: list[Detection], labels: list[dict], keywords, early_s: float = EARLY_S,
          late_s: float = LATE_S) -> dict:
    """A detection hits an unmatched occurrence of the same keyword when it fires between
    ``early_s`` before its start and ``late_s`` after its end; every other detection
    (wrong word, filler, noise, a second firing) is a false alarm.

    ``false_alarms_by`` says what each false alarm fired on (the labelled segment whose
    span, widened as for a hit, holds it: its category, ``other keyword``, ``repeat`` of a
    hit keyword, or ``no word`` for noise and silence); ``misses_by`` counts the missed
    keywords by domain."""
    events = [lb for lb in labels if lb["word"] in keywords]
    hit = [False] * len(events)
    latencies, fa = [], 0
    starts = np.array([e["start_s"] for e in events])
    all_starts = np.array([lb["start_s"] for lb in labels])
    fa_by: Counter = Counter()
    for d in detections:
        ok = False
        for j in np.nonzero((starts - early_s <= d.time_s))[0][::-1]:
            e = events[j]
            if not hit[j] and e["word"] == d.keyword and d.time_s <= e["end_s"] + late_s:
                hit[j], ok = True, True
                latencies.append(d.time_s - e["end_s"])
                break
            if d.time_s > e["end_s"] + late_s + 5:  # events further back cannot match
                break
        if not ok:
            fa += 1
            cause = "no word"
            for j in np.nonzero(all_starts - early_s <= d.time_s)[0][::-1][:3]:
                lb = labels[j]
                if d.time_s <= lb["end_s"] + late_s:
                    cause = (("repeat" if lb["word"] == d.keyword else "other keyword")
                             if lb["word"] in keywords else label_domain(lb))
                    break
            fa_by[cause] += 1
    misses_by = Counter(label_domain(e) for e, h in zip(events, hit) if not h)
    return dict(n_events=len(events), hits=int(sum(hit)), false_alarms=fa, latencies=latencies,
                false_alarms_by=dict(fa_by), misses_by=dict(misses_by))


def sweep(times, scores, labels, keywords, duration_s: float, refractory_s: float,
          thresholds=None) -> list[dict]:
    if thresholds is None:
        # Up to 1 - 1e-6: confident students put some negatives above 0.999, and a grid that
        # stops there cannot reach 1 FA/h although a higher threshold would.
        thresholds = np.unique(np.concatenate([np.linspace(0.02, 0.98, 49), np.linspace(0.98, 0.999, 20),
                                               1 - np.logspace(-3, -6, 13)]))
    hours = duration_s / 3600
    out = []
    for thr in thresholds:
        dets = detect_trace(times, scores, keywords, np.full(len(keywords), thr), refractory_s)
        m = match(dets, labels, keywords)
        out.append(dict(threshold=float(thr), frr=1 - m["hits"] / max(1, m["n_events"]),
                        fa_per_hour=m["false_alarms"] / hours, false_alarms=m["false_alarms"],
                        n_events=m["n_events"],
                        hits=m["hits"], latency_median_s=float(np.median(m["latencies"])) if m["latencies"] else None))
    return out


def operating_point(curve: list[dict], fa_per_hour: float) -> dict | None:
    """Lowest FRR among thresholds whose false-alarm rate is at most ``fa_per_hour``."""
    ok = [c for c in curve if c["fa_per_hour"] <= fa_per_hour]
    return min(ok, key=lambda c: (c["frr"], -c["threshold"])) if ok else None


def stream_scores(model, classes, wav, config: StreamConfig, sample_rate: int = 16000):
    """Run the engine over a file and return (times, keyword scores, keywords,
    duration_s). Block size does not change the scores; 1 s blocks let the fast path
    classify many windows per call."""
    from kws_okd.stream.sources import file_blocks
    eng = StreamEngine(model, classes, config, sample_rate=sample_rate, record=True)
    n = 0
    for blk in file_blocks(wav, sample_rate, block_s=1.0):
        n += len(blk)
        eng.feed(blk)
    times, scores = eng.trace()
    return times, scores, eng.keywords, n / sample_rate


def plot_det(curves: dict[str, list[dict]], path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for name, curve in curves.items():
        pts = sorted((c["fa_per_hour"], c["frr"]) for c in curve)
        ax.step([p[0] for p in pts], [100 * p[1] for p in pts], where="post", label=name)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("false alarms per hour")
    ax.set_ylabel("false rejection rate (%)")
    ax.set_ylim(0, 100)
    save_figure(fig, ax, path, title)


def _runner(path, runtime: str, tmp: Path, cache_dir=None):
    """(model to stream, classes) for ``path``: the fast path (ONNX Runtime classifier,
    cached per model file), the streaming ONNX export, or PyTorch. The ONNX paths are
    checked against PyTorch (posteriors within 1e-4) before they are used; a model
    without a frame-wise front-end streams with PyTorch."""
    from kws_okd.train.checkpoint import load_model
    if runtime == "fast":
        from kws_okd.stream.fast import FastPathUnavailable, default_log, load_fast_model
        try:
            m = load_fast_model(path, cache_dir, log=default_log)
            return m, m.classes
        except FastPathUnavailable:
            runtime = "torch"
    model, blob = load_model(path)
    if runtime == "torch":
        return model, blob["classes"]
    from kws_okd.export.pipeline import export_streaming
    from kws_okd.stream.backends import OnnxStreamModel
    info = export_streaming(model, blob["classes"], tmp)
    return (OnnxStreamModel(tmp) if info["available"] else model), blob["classes"]


def evaluate_stream(models: dict, wav, labels_path=None, out_dir=None, config: StreamConfig | None = None,
                    fa_per_hour: float = 1.0, runtime: str = "fast", cache_dir=None) -> dict:
    """``models`` maps a display name to a ``model.pt``. Writes ``stream_report.json``,
    ``stream_report.md`` and ``det.png`` into ``out_dir`` when given. ``runtime`` is
    ``fast`` (default), ``onnx`` or ``torch`` (see :func:`_runner`)."""
    import dataclasses
    import tempfile

    if runtime not in ("fast", "onnx", "torch"):
        raise ConfigError(f"runtime {runtime!r}: expected fast, onnx or torch")
    config = config or StreamConfig()
    wav = Path(wav)
    labels = read_labels(labels_path or wav.with_suffix(".csv"))
    results, curves = {}, {}
    for name, path in models.items():
        with tempfile.TemporaryDirectory() as tmp:
            runner, classes = _runner(path, runtime, Path(tmp), cache_dir)
            # the model's own window (1 s unless a phrase needed more)
            config = dataclasses.replace(config, window_s=window_of(runner))
            times, scores, keywords, duration = stream_scores(runner, classes, wav, config)
        curve = sweep(times, scores, labels, keywords, duration, config.refractory_s)
        op = operating_point(curve, fa_per_hour)
        fixed = next(c for c in sweep(times, scores, labels, keywords, duration, config.refractory_s,
                                      [config.threshold]))
        results[name] = dict(model=str(path), keywords=keywords, duration_s=duration,
                             at_fa_per_hour=op, at_threshold=fixed, curve=curve)
        curves[name] = curve
    report = dict(wav=str(wav), fa_per_hour=fa_per_hour, hop_ms=config.hop_ms, runtime=runtime, smooth=config.smooth,
                  refractory_s=config.refractory_s, models=results)
    if out_dir:
        out_dir = Path(out_dir)
        write_json(out_dir / "stream_report.json", report)
        write_text(out_dir / "stream_report.md", render_markdown(report))
        plot_det(curves, out_dir / "det.png", f"DET on {wav.name}")
    return report


def render_markdown(report) -> str:
    fa = report["fa_per_hour"]
    lines = [f"# Streaming evaluation on `{report['wav']}`", "",
             f"Runtime {report['runtime']}, hop {report['hop_ms']:g} ms, smoothing over {report['smooth']} windows, refractory "
             f"{report['refractory_s']:g} s. FRR at <= {fa:g} false alarms/hour is the best threshold "
             "of the sweep meeting that rate (on a short recording one false alarm is many per hour).", "",
             f"| model | minutes | keywords | FRR @ {fa:g} FA/h | threshold | median latency (s) |",
             "|---|---|---|---|---|---|"]
    for name, r in report["models"].items():
        op = r["at_fa_per_hour"]
        n_ev = r["curve"][0]["n_events"]
        if op:
            lat = op["latency_median_s"]
            lines.append(f"| {name} | {r['duration_s'] / 60:.1f} | {n_ev} | {100 * op['frr']:.1f} % | "
                         f"{op['threshold']:.3f} | {'–' if lat is None else f'{lat:.2f}'} |")
        else:
            lines.append(f"| {name} | {r['duration_s'] / 60:.1f} | {n_ev} | not reached | – | – |")
    lines += ["", "![DET](det.png)", ""]
    return "\n".join(lines)
