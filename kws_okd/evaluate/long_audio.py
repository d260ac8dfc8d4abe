"""Long-audio evaluation of the default job: a validation recording to choose each
keyword's threshold for a target false-alarm rate, and test recordings (clean and
noisy) on which FRR at 0.5 / 1 / 2 false alarms per hour is measured.

Recordings are composed by :func:`kws_okd.stream.longaudio.compose_long_audio` from
a pool manifest written here:

* **validation** (thresholds): keywords and synthetic non-keywords of the training
  families' validation speakers, one half of the held-out real recordings
  (klettres-data files never trained on), music; with it, the sentences of the same
  speakers (:mod:`kws_okd.evaluate.sentences`, ``valid_sentences``);
* **test**: keywords of the held-out synthesiser families (unseen voices) and the
  real keyword clips of the dev set, as positives; synthetic non-keywords of those
  families, the other half of the held-out real recordings, the real non-keyword
  prompts of the dev set (NATO alphabet) and music, as negatives.

Scores come from :func:`batch_trace`, which classifies every hop's window in batches:
the same windows, posteriors and smoothing as :class:`~kws_okd.stream.engine.StreamEngine`
(checked in the tests), fast enough to score many minutes per model inside ``make run``.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from kws_okd.audio.io import read_audio, write_audio
from kws_okd.data.manifest import read_manifest, write_manifest
from kws_okd.data.words import SILENCE, UNKNOWN
from kws_okd.stream.engine import StreamConfig, default_keywords, detect_trace
from kws_okd.stream.longaudio import (EARLY_S, LATE_S, compose_long_audio, match, operating_point, read_labels,
                                      sweep)
from kws_okd.utils.atomic import write_json

FA_RATES = (0.5, 1.0, 2.0)
KEYWORD_SHARE = 0.35     # of the words in the isolated-word recordings
LOWEST_THRESHOLD = 0.5   # the default floor of chosen thresholds; `make run` asks for pipeline.THRESHOLD_FLOOR


# -- scoring ------------------------------------------------------------------------

@torch.no_grad()
def batch_trace(model, classes, wav, config: StreamConfig | None = None, sample_rate: int = 16000,
                batch: int = 256):
    """``(times, keyword scores, keywords, duration_s)`` as the streaming engine records
    them: a window ending every hop from ``window_s`` on, softmax posteriors averaged
    over the last ``smooth`` windows."""
    config = config or StreamConfig()
    x = wav if isinstance(wav, np.ndarray) else read_audio(wav, sample_rate, warn=False)
    x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    n = int(round(sample_rate * config.window_s))
    hop = int(round(sample_rate * config.hop_ms / 1000))
    keywords = list(config.keywords or default_keywords(classes))
    kw = torch.tensor([list(classes).index(k) for k in keywords])
    if len(x) < n:
        return np.zeros(0), np.zeros((0, len(keywords)), np.float32), keywords, len(x) / sample_rate
    windows = x.unfold(0, n, hop)   # window i ends at n + i * hop
    posts = []
    for i in range(0, len(windows), batch):
        posts.append(model(windows[i:i + batch].contiguous()).double().softmax(-1))
    smoothed = moving_average(torch.cat(posts), config.smooth)
    times = (n + np.arange(len(smoothed)) * hop) / sample_rate
    return times, smoothed[:, kw].float().numpy(), keywords, len(x) / sample_rate


def moving_average(p: torch.Tensor, k: int) -> torch.Tensor:
    """Each row of ``p`` (windows x classes) averaged with the ``k - 1`` rows before it
    (fewer at the start), as the streaming engine smooths posteriors."""
    c = torch.cat([torch.zeros(1, p.shape[1], dtype=p.dtype), p.cumsum(0)])
    idx = torch.arange(len(p))
    lo = (idx + 1 - k).clamp(min=0)
    return (c[idx + 1] - c[lo]) / (idx + 1 - lo).unsqueeze(1)


def choose_thresholds(times, scores, labels, keywords, duration_s: float, refractory_s: float,
                      fa_per_hour: float = 1.0, floor: float = LOWEST_THRESHOLD) -> dict[str, float]:
    """Per keyword, the lowest threshold whose own false alarms on this recording stay
    within an even share of ``fa_per_hour`` (at least ``floor``). On a recording of
    minutes the share is below one alarm, so this is the lowest threshold with none:
    just above the keyword's highest score away from its own occurrences.

    The grid reaches 1 - 1e-6, as the FRR-at-FA/h sweep does: confident students score
    stray speech above 0.9999, and a grid that stopped there left their thresholds at its
    top, firing on the very recording they were chosen on. The grid is rounded to 7
    decimals before the search, so the threshold stored is the one tested."""
    hours = duration_s / 3600
    allowed = np.floor(fa_per_hour / len(keywords) * hours)
    grid = np.unique(np.round(np.concatenate([np.linspace(floor, 0.98, 97), 1 - np.logspace(-1.7, -6, 44)]), 7))
    out = {}
    for k, word in enumerate(keywords):
        col = scores[:, k:k + 1]
        chosen = float(grid[-1])
        for thr in grid:
            dets = detect_trace(times, col, [word], np.array([thr]), refractory_s)
            if match(dets, labels, [word])["false_alarms"] <= allowed:
                chosen = float(thr)
                break
        out[word] = chosen
    return out


def at_thresholds(times, scores, labels, keywords, duration_s, refractory_s, thresholds: dict) -> dict:
    thr = np.array([thresholds.get(k, 0.7) for k in keywords])
    m = match(detect_trace(times, scores, keywords, thr, refractory_s), labels, keywords)
    return dict(frr=1 - m["hits"] / max(1, m["n_events"]), fa_per_hour=m["false_alarms"] / (duration_s / 3600),
                false_alarms=m["false_alarms"], hits=m["hits"], n_events=m["n_events"],
                latency_median_s=float(np.median(m["latencies"])) if m["latencies"] else None,
                false_alarms_by=m["false_alarms_by"], misses_by=m["misses_by"])


def top_keyword(times, scores, labels, keywords, early_s: float = EARLY_S, late_s: float = LATE_S) -> dict:
    """A measure without thresholds, for recordings where almost nothing reaches one (people
    saying command words): over each keyword event's span (widened as :func:`match` widens
    it for a hit), each keyword's highest score; ``top`` counts the events whose own keyword
    has the highest of them, ``own_max`` is the mean of the own keyword's highest score."""
    top, own = 0, []
    for lb in labels:
        if lb["word"] not in keywords:
            continue
        span = (times >= lb["start_s"] - early_s) & (times <= lb["end_s"] + late_s)
        if not span.any():
            own.append(0.0)
            continue
        best = scores[span].max(0)
        k = list(keywords).index(lb["word"])
        top += int(best.argmax()) == k
        own.append(float(best[k]))
    return dict(top=top, n_events=len(own), own_max=float(np.mean(own)) if own else None)


def trace(model, classes, wav, config: StreamConfig):
    """The recorded score trace of ``wav``: through the streaming engine when ``model`` is a
    fast streaming model (kws_okd/stream/fast.py: the default of ``kws-okd stream``, several
    times faster than PyTorch here), else :func:`batch_trace` with PyTorch."""
    if hasattr(model, "classify_batch"):
        from kws_okd.stream.longaudio import stream_scores
        return stream_scores(model, classes, wav, config)
    return batch_trace(model, classes, wav, config)


def score_recording(model, classes, wav, config: StreamConfig, thresholds: dict | None = None) -> dict:
    """FRR at each of :data:`FA_RATES` (one threshold for all keywords, best of a sweep),
    the DET curve, and the result at per-keyword ``thresholds`` when given."""
    return score_trace(trace(model, classes, wav, config), read_labels(Path(wav).with_suffix(".csv")),
                       config, thresholds)


def score_trace(traced, labels, config: StreamConfig, thresholds: dict | None = None) -> dict:
    """:func:`score_recording` of a recording whose :func:`trace` is ``traced``."""
    times, scores, keywords, dur = traced
    curve = sweep(times, scores, labels, keywords, dur, config.refractory_s)
    out = dict(minutes=round(dur / 60, 2), n_events=curve[0]["n_events"], curve=curve,
               frr_at={str(r): _frr(operating_point(curve, r)) for r in FA_RATES})
    if thresholds:
        out["per_keyword"] = score_at_thresholds(traced, labels, config, thresholds)
    if out["n_events"]:
        out["top_keyword"] = top_keyword(times, scores, labels, keywords)
    return out


def score_at_thresholds(traced, labels, config: StreamConfig, thresholds: dict) -> dict:
    """:func:`at_thresholds` of a recording whose :func:`trace` is ``traced``, without the
    sweep: all a recording with no keyword in it needs (its false alarms)."""
    times, scores, keywords, dur = traced
    return at_thresholds(times, scores, labels, keywords, dur, config.refractory_s, thresholds)


def frr_at(scored: dict, fa_per_hour: float = 1.0, unreached=None):
    """The FRR of :func:`score_recording`'s sweep at ``fa_per_hour``, or ``unreached``
    when no threshold of the sweep gets that few false alarms."""
    op = scored["frr_at"][str(float(fa_per_hour))]
    return unreached if op is None else op["frr"]


def _frr(op):
    return None if op is None else dict(frr=op["frr"], threshold=op["threshold"], fa_per_hour=op["fa_per_hour"],
                                        latency_median_s=op["latency_median_s"])


def calibrate(model, classes, wavs, config: StreamConfig, fa_per_hour: float = 1.0, floor: float = LOWEST_THRESHOLD) -> dict:
    """Per-keyword thresholds (:func:`choose_thresholds`, none below ``floor``) on one
    recording or several: with several, each keyword takes the highest of its thresholds,
    the lowest that keeps every recording within its share of false alarms."""
    wavs = [wavs] if isinstance(wavs, (str, Path)) else wavs
    return calibrate_traces([(trace(model, classes, w, config), read_labels(Path(w).with_suffix(".csv")))
                             for w in wavs], config, fa_per_hour, floor)


def calibrate_traces(traced_labels, config: StreamConfig, fa_per_hour: float = 1.0, floor: float = LOWEST_THRESHOLD) -> dict:
    """:func:`calibrate` from ``(trace, labels)`` pairs of the recordings."""
    out: dict[str, float] = {}
    for (times, scores, keywords, dur), labels in traced_labels:
        for k, t in choose_thresholds(times, scores, labels, keywords, dur, config.refractory_s,
                                      fa_per_hour, floor).items():
            out[k] = max(out.get(k, 0.0), t)
    return out


def traceable(model_path, cache_dir=None):
    """``(model, classes)`` to :func:`trace` with: the model file's fast streaming path
    (kws_okd/stream/fast.py) when it has one, else the PyTorch model."""
    from kws_okd.stream.fast import FastPathUnavailable, load_fast_model
    from kws_okd.train.checkpoint import load_model
    model, blob = load_model(model_path)
    try:
        model = load_fast_model(model_path, cache_dir)
    except FastPathUnavailable:
        model.eval()
    return model, blob["classes"]


_WORKER_MODEL: dict = {}


def _trace_job(model_path: str, cache_dir, wav: str, config: StreamConfig):
    """One trace in a worker process, on one thread; the model is loaded once per worker
    (the jobs come model by model)."""
    if model_path not in _WORKER_MODEL:
        torch.set_num_threads(1)
        _WORKER_MODEL.clear()
        _WORKER_MODEL[model_path] = traceable(model_path, cache_dir)
    return trace(*_WORKER_MODEL[model_path], wav, config)


def trace_files(pairs, config: StreamConfig, cache_dir=None, jobs: int = 1) -> dict:
    """:func:`trace` of every ``(model path, recording)`` in ``pairs``, ``jobs`` at a time
    in worker processes of one thread each. On the fast path a trace is the same to the bit
    whichever process makes it; a PyTorch model's may differ in float rounding with the
    thread count. The fast-path entries should exist beforehand (``load_fast_model(path,
    cache_dir)``), else each worker builds its own. Returns ``{(model path, recording): trace}``."""
    pairs = [(str(m), str(w)) for m, w in pairs]
    if jobs <= 1:
        loaded, out = {}, {}
        for m, w in pairs:
            if m not in loaded:
                loaded = {m: traceable(m, cache_dir)}
            out[(m, w)] = trace(*loaded[m], w, config)
        return out
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        futures = {pr: pool.submit(_trace_job, pr[0], cache_dir, pr[1], config) for pr in pairs}
        return {pr: f.result() for pr, f in futures.items()}


# -- recordings -----------------------------------------------------------------------

def _pool_rows(manifests, keywords, n_fillers: int, rng) -> list[dict]:
    """Keyword rows and ``n_fillers`` non-keyword word rows (no _silence_, no real
    negatives: those enter the pool on their own)."""
    rows = [r for m in manifests for r in read_manifest(m)
            if r["word"] != SILENCE and r["domain"] != "real_speech"]
    kws = [r for r in rows if r["word"] in keywords]
    fill = [r for r in rows if r["word"] not in keywords]
    pick = rng.permutation(len(fill))[:n_fillers]
    return kws + [fill[i] for i in sorted(pick)]


def _wav_rows(folder: Path, name: str, clips, word: str = UNKNOWN) -> list[dict]:
    rows = []
    for i, x in enumerate(clips):
        rel = folder / f"{name}{i:04d}.wav"
        write_audio(rel, np.asarray(x, dtype=np.float32), 16000)
        rows.append(dict(ID=f"{name}/{i}", wav=str(rel.resolve()), duration=len(x) / 16000, spk_id=name,
                         domain=name, word=word, label=0, offset=0))
    return rows


def _music_clips(noise_dir: Path, n: int, rng, seconds=(1.0, 3.0)) -> list[np.ndarray]:
    path = Path(noise_dir) / "music.wav"
    if not path.exists():
        return []
    x = read_audio(path, 16000, warn=False)
    out = []
    for _ in range(n):
        m = int(rng.uniform(*seconds) * 16000)
        s = int(rng.integers(0, max(1, len(x) - m)))
        out.append(x[s:s + m])
    return out


def build_long_audio(manifests_dir, corpus_noise_dir, out_dir, heldout_real=None, real_dev_csv=None,
                     minutes: float = 8.0, snrs=(None, 5.0), seed: int = 0) -> dict:
    """Write ``valid.wav`` and ``test_clean.wav`` / ``test_snr<N>.wav`` (each with its
    label CSV) into ``out_dir`` unless an earlier build with the same settings is there.
    Returns ``{name: wav path}``."""
    manifests_dir, out_dir = Path(manifests_dir), Path(out_dir)
    names = {"valid": None} | {("test_clean" if s is None else f"test_snr{s:g}"): s for s in snrs}
    stamp = out_dir / "long_audio.json"
    # The manifests' own protocol (it records the corpus build) ties the recordings to the data.
    proto_text = (manifests_dir / "protocol.json").read_text()
    want = dict(manifests=str(manifests_dir.resolve()), minutes=minutes, snrs=list(snrs), seed=seed,
                real=None if heldout_real is None else int(len(heldout_real)), version=2,
                protocol=hashlib.sha1(proto_text.encode()).hexdigest()[:16])
    if stamp.exists() and json.loads(stamp.read_text()).get("settings") == want \
            and all((out_dir / f"{n}.wav").exists() for n in names):
        return {n: out_dir / f"{n}.wav" for n in names}
    rng = np.random.default_rng(seed)
    classes = (manifests_dir / "classes.txt").read_text().split()
    keywords = default_keywords(classes)
    proto = json.loads(proto_text)
    ood = [manifests_dir / f"{s}.csv" for s, t in proto["eval_sets"].items() if t == "ood"] \
        or [manifests_dir / "test_id.csv"]
    clips = out_dir / "clips"
    real = [] if heldout_real is None else [np.asarray(w) for w in heldout_real]
    half = len(real) // 2
    n_fill = 300
    pools = {
        "valid": _pool_rows([manifests_dir / "valid.csv"], keywords, n_fill, rng)
        + _wav_rows(clips, "real_valid", real[:half][:n_fill])
        + _wav_rows(clips, "music_valid", _music_clips(corpus_noise_dir, n_fill // 3, rng)),
        "test": _pool_rows(ood, keywords, n_fill, rng)
        + _wav_rows(clips, "real_test", real[half:][:n_fill])
        + _wav_rows(clips, "music_test", _music_clips(corpus_noise_dir, n_fill // 3, rng)),
    }
    if real_dev_csv is not None and Path(real_dev_csv).exists():
        pools["test"] += read_manifest(real_dev_csv)   # real keywords and NATO words
    for split, rows in pools.items():
        write_manifest(out_dir / f"pool_{split}.csv", rows)
    out, recordings = {}, {}
    for name, snr in names.items():
        info = compose_long_audio(out_dir / f"pool_{name.split('_')[0]}.csv", out_dir / f"{name}.wav",
                                  minutes=minutes, keywords=keywords,
                                  noise_dir=None if snr is None else corpus_noise_dir, snr_db=snr,
                                  seed=seed + (0 if name == "valid" else 1), keyword_share=KEYWORD_SHARE)
        out[name] = out_dir / f"{name}.wav"
        recordings[name] = dict(n_keywords=info["n_keywords"], n_fillers=info["n_fillers"])
    write_json(stamp, {"settings": want, "recordings": recordings})
    return out


def build_noisy_valid(long_audio_dir, corpus_noise_dir, out_dir, snr_db: float) -> Path:
    """``valid_snr<N>.wav`` (+ labels) in ``out_dir``: the ``valid`` recording that
    :func:`build_long_audio` wrote into ``long_audio_dir``, composed again from its own pool,
    keywords, length and seed, with the corpus's noise files at ``snr_db``. The words fall
    at the same places (the composer draws the noise after the speech), so what changes
    between the two is the noise: a way to choose between variants on noisy speech without
    reading a test recording."""
    from kws_okd.errors import DataError
    long_audio_dir = Path(long_audio_dir)
    stamp = long_audio_dir / "valid.json"
    if not stamp.is_file():
        raise DataError(f"{stamp}: no record of the valid recording (build the long recordings first)")
    info = json.loads(stamp.read_text())
    out = Path(out_dir) / f"valid_snr{snr_db:g}.wav"
    out.parent.mkdir(parents=True, exist_ok=True)
    compose_long_audio(long_audio_dir / "pool_valid.csv", out, minutes=info["minutes"], keywords=info["keywords"],
                       noise_dir=corpus_noise_dir, snr_db=snr_db, seed=info["seed"], keyword_share=KEYWORD_SHARE)
    return out


PEOPLE_RECORDINGS = {"valid_people": "select", "test_people": "report"}


def build_people_recordings(manifests_dir, corpus_noise_dir, out_dir, heldout_real=None, minutes: float = 8.0,
                            snr_db: float = 20.0, seed: int = 0) -> dict:
    """Real people's keywords in running audio, for detection figures: ``valid_people``
    from the development set's select speakers (thresholds are chosen on it) and
    ``test_people`` from its report speakers (reported only), both written into
    ``out_dir`` unless built with the same settings. Each holds the role's clips (its
    keywords, half the words, and its other words) 0.4-1.6 s apart, with real talk between
    them (held-out klettres windows: half to each recording) over the corpus's noise at
    ``snr_db``. Keywords no speaker of a role says are left out; a role that says none
    gets no recording. Returns ``{name: wav path}``."""
    from kws_okd.data.people import people_manifest
    from kws_okd.stream.longaudio import is_built
    manifests_dir, out_dir = Path(manifests_dir), Path(out_dir)
    keywords = default_keywords((manifests_dir / "classes.txt").read_text().split())
    real = [] if heldout_real is None else [np.asarray(w) for w in heldout_real]
    half = len(real) // 2
    out = {}
    for i, (name, role) in enumerate(PEOPLE_RECORDINGS.items()):
        pool = people_manifest(manifests_dir, role)
        said = [k for k in keywords if k in {r["word"] for r in read_manifest(pool)}]
        if not said:   # a user's own keywords that no Speech Commands speaker says
            continue
        settings = dict(pool=hashlib.sha1(pool.read_bytes()).hexdigest()[:16], minutes=minutes, snr_db=snr_db,
                        seed=seed, real=len(real), version=1)
        wav = out_dir / f"{name}.wav"
        if not is_built(wav, settings):
            talk = real[:half] if i == 0 else real[half:]
            rows = read_manifest(pool) + _wav_rows(out_dir / "clips", f"talk_{role}", talk[:60])
            write_manifest(out_dir / f"pool_{name}.csv", rows)
            info = compose_long_audio(out_dir / f"pool_{name}.csv", wav, minutes=minutes, keywords=said,
                                      noise_dir=corpus_noise_dir, snr_db=snr_db, seed=seed + 7 + i,
                                      keyword_share=0.5, gap_s=(0.4, 1.6))
            write_json(wav.with_suffix(".json"), dict(info, settings=settings))
        out[name] = wav
    return out
