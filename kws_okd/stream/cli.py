"""``stream``, ``eval-stream`` and ``make-long-audio`` sub-commands (wired into
``kws_okd.cli`` with :func:`add_stream_commands`)."""
from __future__ import annotations

import argparse
import sys

from kws_okd.errors import ConfigError


def _config(a, keywords=None, stored: dict | None = None, window_s: float = 1.0):
    """The engine settings; with neither --threshold nor --kw-threshold given, the
    per-keyword thresholds stored in the model file (chosen for a target false-alarm rate
    on validation long audio by ``make run``) when it has them, else 0.7."""
    from kws_okd.stream.engine import StreamConfig
    thresholds = {}
    for spec in a.kw_threshold or []:
        word, sep, val = spec.partition("=")
        try:
            thresholds[word] = float(val)
        except ValueError:
            raise ConfigError(f"--kw-threshold {spec!r}: expected WORD=SCORE, e.g. yes=0.8") from None
        if not sep:
            raise ConfigError(f"--kw-threshold {spec!r}: expected WORD=SCORE, e.g. yes=0.8")
    threshold = 0.7 if a.threshold is None else a.threshold
    if stored and stored.get("thresholds") and a.threshold is None and not thresholds:
        thresholds = {k: v for k, v in stored["thresholds"].items() if keywords is None or k in keywords}
        print(f"per-keyword thresholds stored in the model (for {stored.get('target_fa_per_hour', '?')} "
              f"false alarms/hour on validation audio): "
              + ", ".join(f"{k}={v:.3f}" for k, v in thresholds.items()), file=sys.stderr)
    return StreamConfig(hop_ms=a.hop_ms, smooth=a.smooth, threshold=threshold, thresholds=thresholds,
                        refractory_s=a.refractory, keywords=keywords, window_s=window_s)


def _add_engine_args(c):
    c.add_argument("--hop-ms", type=float, default=20.0, help="window hop (default 20 ms)")
    c.add_argument("--smooth", type=int, default=5, help="windows in the posterior moving average")
    c.add_argument("--threshold", type=float, default=None,
                   help="detection threshold on the smoothed posterior for every keyword (default: the "
                        "per-keyword thresholds stored in the model file, else 0.7)")
    c.add_argument("--kw-threshold", action="append", metavar="WORD=SCORE", help="per-keyword threshold")
    c.add_argument("--refractory", type=float, default=1.0, help="seconds without detections after one")
    c.add_argument("--keywords", help="comma-separated keywords (default: the ten command words, "
                                      "else every class)")


SAMPLE_RATE = 16000   # every model of this project hears 16 kHz


def _one_blas_thread() -> None:
    """Streaming runs on one thread. Said before NumPy loads (the stream commands import
    it only after this): OpenBLAS otherwise spreads even the engine's tiny mel-filter
    products over every core, and its idle workers spin (measured: up to twice the CPU
    time for the same work). ``OPENBLAS_NUM_THREADS`` set by the user wins."""
    import os
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _load(a):
    """(model, classes) for ``stream``: the export folder (--onnx), the fast path (default)
    or PyTorch (--runtime torch, or models the fast path cannot run)."""
    if a.onnx:
        from kws_okd.stream.backends import OnnxStreamModel
        model = OnnxStreamModel(a.onnx)
        return model, model.classes
    if a.runtime == "fast":
        from kws_okd.stream.fast import FastPathUnavailable, default_log, load_fast_model
        try:
            model = load_fast_model(a.model, a.cache_dir, log=default_log)
            return model, model.classes
        except FastPathUnavailable as e:
            print(f"note: {e}; streaming with PyTorch", file=sys.stderr)
    from kws_okd.train.checkpoint import load_model
    model, blob = load_model(a.model)
    model.stored_stream = blob.get("stream")
    return model, blob["classes"]


def _stream(a):
    import os
    _one_blas_thread()

    from kws_okd.stream import sources
    from kws_okd.stream.backends import window_of
    from kws_okd.stream.engine import StreamEngine
    if sum(bool(x) for x in (a.mic, a.wav, a.stdin)) != 1:
        raise ConfigError("give exactly one source: --mic, --wav FILE or --stdin")
    sr = SAMPLE_RATE
    # The source first: a missing microphone is reported at once, before the model loads.
    if a.mic:
        # Blocks of several hops: the windows of a block share one classifier call (a
        # window per call costs a fifth more CPU; tools/bench_stream.py). Detections and
        # their times do not depend on the block size; a block adds up to its length
        # minus one hop to the latency.
        block_ms = a.block_ms if a.block_ms is not None else max(a.hop_ms, 80.0)
        if block_ms <= 0:
            raise ConfigError(f"--block-ms {block_ms:g}: must be positive")
        blocks = sources.mic_blocks(sr, block_ms / 1000, device=a.device, duration_s=a.seconds, rate=a.rate)
    elif a.wav:
        # Unpaced, 1 s blocks: several windows per ONNX Runtime call (same detections).
        blocks = sources.file_blocks(a.wav, sr, block_s=0.1 if a.realtime else 1.0, realtime=a.realtime)
    else:
        blocks = sources.stdin_blocks(a.rate or sr, sr)
    try:
        model, classes = _load(a)
        if getattr(model, "sample_rate", sr) != sr:
            raise ConfigError(f"the model expects {model.sample_rate} Hz audio; streaming runs at {sr} Hz")
        eng = StreamEngine(model, classes, _config(a, a.keywords.split(",") if a.keywords else None,
                                                   getattr(model, "stored_stream", None), window_of(model, sr)),
                           sample_rate=sr)
    except BaseException:
        if hasattr(blocks, "close"):
            blocks.close()
        raise
    meter = None
    if a.meter or (a.meter is None and a.mic and sys.stderr.isatty()):
        from kws_okd.stream.meter import LevelMeter
        meter = LevelMeter(sys.stderr)
    first_hop = os.environ.get("KWS_OKD_FIRST_HOP") == "1"
    runtime = "onnx export" if a.onnx else getattr(eng.model, "runtime", "torch")
    print(f"listening for {', '.join(eng.keywords)} (hop {a.hop_ms:g} ms, {runtime}; Ctrl-C to stop)",
          file=sys.stderr, flush=True)
    n = 0
    try:
        for blk in blocks:
            dets = eng.feed(blk)
            if first_hop and eng.windows:
                print("first hop processed", file=sys.stderr, flush=True)
                first_hop = False
            for d in dets:
                n += 1
                if meter:
                    meter.clear()
                print(f"{d.time_s:9.2f} s  {d.keyword:<10s} {d.score:.3f}", flush=True)
            if meter:
                meter.update(blk)
    except KeyboardInterrupt:
        if meter:
            meter.clear()
        print("stopped", file=sys.stderr)
    finally:
        if hasattr(blocks, "close"):
            blocks.close()   # releases the input device
    if meter:
        meter.clear()
    print(f"{n} detection(s) in {eng.ring.total / sr:.1f} s of audio", file=sys.stderr)
    return n


def _make_long_audio(a):
    from kws_okd.stream.longaudio import compose_long_audio
    info = compose_long_audio(a.manifest, a.out, minutes=a.minutes,
                              keywords=a.keywords.split(",") if a.keywords else None,
                              noise_dir=a.noise_dir, snr_db=a.snr, seed=a.seed)
    print(f"wrote {a.out} ({a.minutes:g} min, {info['n_keywords']} keywords, {info['n_fillers']} "
          f"other words, SNR {'clean' if a.snr is None else f'{a.snr:g} dB'}) and its labels "
          f"{a.out.rsplit('.', 1)[0]}.csv")
    return info


def _eval_stream(a):
    from pathlib import Path
    _one_blas_thread()

    from kws_okd.stream.longaudio import evaluate_stream
    from kws_okd.train.checkpoint import named_model_paths
    models = named_model_paths(a.model)
    rep = evaluate_stream(models, a.wav, a.labels, a.out,
                          _config(a, a.keywords.split(",") if a.keywords else None), fa_per_hour=a.fa_per_hour,
                          runtime=a.runtime, cache_dir=a.cache_dir)
    print(Path(a.out, "stream_report.md").read_text())
    return rep


def add_stream_commands(subparsers) -> None:
    c = subparsers.add_parser("stream", help="detect keywords live from a microphone, a file or stdin")
    src = c.add_mutually_exclusive_group(required=True)
    src.add_argument("--mic", action="store_true", help="the default (or --device) input device")
    src.add_argument("--wav", help="an audio file (WAV, FLAC, ...; any rate/channels)")
    src.add_argument("--stdin", action="store_true", help="raw 16-bit little-endian mono PCM on stdin")
    mdl = c.add_mutually_exclusive_group(required=True)
    mdl.add_argument("--model", help="model.pt")
    mdl.add_argument("--onnx", help="a `kws-okd export` folder (runs its streaming ONNX export)")
    c.add_argument("--runtime", choices=["fast", "torch"], default="fast",
                   help="fast (default): ONNX Runtime classifier + NumPy frames, prepared once per "
                        "model file and cached next to it after a check against PyTorch; torch: PyTorch")
    c.add_argument("--cache-dir", help="where the fast path caches its files (default: "
                                       ".kws-okd-cache next to the model, or $KWS_OKD_CACHE)")
    c.add_argument("--rate", type=int, help="sample rate of --stdin audio (default 16000); with --mic, "
                                            "the rate to open the device at (default: 16000, else the "
                                            "device's own rate, resampled)")
    c.add_argument("--realtime", action="store_true", help="pace --wav like a live source")
    c.add_argument("--device", help="sounddevice input device (name or index; `python -m sounddevice` lists them)")
    c.add_argument("--seconds", type=float, help="stop the microphone after this long")
    c.add_argument("--block-ms", type=float, default=None,
                   help="microphone block length (default 80 ms: four 20 ms hops per classifier call)")
    c.add_argument("--meter", action=argparse.BooleanOptionalAction, default=None,
                   help="live input level on stderr (default: with --mic when stderr is a terminal)")
    _add_engine_args(c)
    c.set_defaults(fn=_stream)

    c = subparsers.add_parser("make-long-audio", help="compose a long test recording with keyword labels")
    c.add_argument("--manifest", required=True, help="test manifest CSV the words come from")
    c.add_argument("--out", required=True, help="output WAV; labels go to the same stem .csv")
    c.add_argument("--minutes", type=float, default=10.0)
    c.add_argument("--noise-dir", help="folder of background noise WAVs (needed with --snr)")
    c.add_argument("--snr", type=float, help="speech-to-noise ratio in dB (omit for clean)")
    c.add_argument("--keywords", help="comma-separated keywords (default: the ten command words)")
    c.add_argument("--seed", type=int, default=0)
    c.set_defaults(fn=_make_long_audio)

    c = subparsers.add_parser("eval-stream", help="FRR at a fixed false-alarm rate, DET curve and latency")
    c.add_argument("--model", action="append", required=True, help="[name=]path/to/model.pt")
    c.add_argument("--wav", required=True, help="long recording (from make-long-audio)")
    c.add_argument("--labels", help="label CSV (default: the WAV's stem .csv)")
    c.add_argument("--out", default="results/stream_eval")
    c.add_argument("--fa-per-hour", type=float, default=1.0)
    c.add_argument("--runtime", choices=["fast", "onnx", "torch"], default="fast",
                   help="fast (default): the cached ONNX Runtime path of `stream`; onnx: a fresh "
                        "`kws-okd export` streaming export (both checked against PyTorch within 1e-4); "
                        "torch: PyTorch")
    c.add_argument("--cache-dir", help="where the fast path caches its files")
    _add_engine_args(c)
    c.set_defaults(fn=_eval_stream)
