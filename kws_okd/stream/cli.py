"""``stream``, ``eval-stream`` and ``make-long-audio`` sub-commands (wired into
``kws_okd.cli`` with :func:`add_stream_commands`)."""
from __future__ import annotations

import sys

from kws_okd.errors import ConfigError


def _config(a, keywords=None):
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
    return StreamConfig(hop_ms=a.hop_ms, smooth=a.smooth, threshold=a.threshold, thresholds=thresholds,
                        refractory_s=a.refractory, keywords=keywords)


def _add_engine_args(c):
    c.add_argument("--hop-ms", type=float, default=20.0, help="window hop (default 20 ms)")
    c.add_argument("--smooth", type=int, default=5, help="windows in the posterior moving average")
    c.add_argument("--threshold", type=float, default=0.7, help="detection threshold on the smoothed posterior")
    c.add_argument("--kw-threshold", action="append", metavar="WORD=SCORE", help="per-keyword threshold")
    c.add_argument("--refractory", type=float, default=1.0, help="seconds without detections after one")
    c.add_argument("--keywords", help="comma-separated keywords (default: the ten command words, "
                                      "else every class)")


def _stream(a):
    from kws_okd.stream import sources
    from kws_okd.stream.backends import OnnxStreamModel
    from kws_okd.stream.engine import StreamEngine
    from kws_okd.train.checkpoint import load_model
    if sum(bool(x) for x in (a.mic, a.wav, a.stdin)) != 1:
        raise ConfigError("give exactly one source: --mic, --wav FILE or --stdin")
    if a.onnx:
        model = OnnxStreamModel(a.onnx)
        classes, sr = model.classes, model.sample_rate
    else:
        model, blob = load_model(a.model)
        classes, sr = blob["classes"], 16000
    eng = StreamEngine(model, classes, _config(a, a.keywords.split(",") if a.keywords else None),
                       sample_rate=sr)
    if a.mic:
        blocks = sources.mic_blocks(sr, a.hop_ms / 1000, device=a.device, duration_s=a.seconds)
    elif a.wav:
        blocks = sources.file_blocks(a.wav, sr, realtime=a.realtime)
    else:
        blocks = sources.stdin_blocks(a.rate, sr)
    print(f"listening for {', '.join(eng.keywords)} (hop {a.hop_ms:g} ms; Ctrl-C to stop)",
          file=sys.stderr)
    n = 0
    try:
        for blk in blocks:
            for d in eng.feed(blk):
                n += 1
                print(f"{d.time_s:9.2f} s  {d.keyword:<10s} {d.score:.3f}", flush=True)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        if hasattr(blocks, "close"):
            blocks.close()   # releases the input device
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

    from kws_okd.stream.longaudio import evaluate_stream
    from kws_okd.train.checkpoint import named_model_paths
    models = named_model_paths(a.model)
    rep = evaluate_stream(models, a.wav, a.labels, a.out,
                          _config(a, a.keywords.split(",") if a.keywords else None), fa_per_hour=a.fa_per_hour,
                          runtime=a.runtime)
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
    c.add_argument("--rate", type=int, default=16000, help="sample rate of --stdin audio")
    c.add_argument("--realtime", action="store_true", help="pace --wav like a live source")
    c.add_argument("--device", help="sounddevice input device (name or index)")
    c.add_argument("--seconds", type=float, help="stop the microphone after this long")
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
    c.add_argument("--runtime", choices=["torch", "onnx"], default="torch",
                   help="onnx: stream the checked streaming export (several times faster)")
    _add_engine_args(c)
    c.set_defaults(fn=_eval_stream)
