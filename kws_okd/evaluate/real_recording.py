"""One long recording strung together from real recordings of people, with labels.

Real speech comes as separate files (telephone prompts, a game's voice lines). A
detector meets it as one stream: this module plays the files back to back in a fixed
random order with short pauses and writes the recording, its label CSV (the format of
kws_okd/stream/longaudio.py) and a ``.json`` of what went in. Each file's speech is one
``_unknown_`` segment that must not fire; a command word known to be inside a file is one
labelled event, spanning ``tolerance_s`` either side of its estimated time (only its
place in the text is known), clipped to the file's speech.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from kws_okd.audio.io import read_audio, write_audio
from kws_okd.data.real_speech import file_signature
from kws_okd.data.words import UNKNOWN
from kws_okd.stream.longaudio import speech_span, write_labels
from kws_okd.utils.atomic import write_json

GAP_S = (0.25, 0.75)     # pause before each file
TOLERANCE_S = 1.5        # half-width of a command word's event around its estimated time
FLOOR = 1e-4             # a faint noise floor instead of digital silence between files


def compose_real_recording(items, keywords, out_wav, domain: str, seed: int = 0, sample_rate: int = 16000,
                           gap_s=GAP_S, tolerance_s: float = TOLERANCE_S, max_minutes: float | None = None,
                           settings: dict | None = None, count_name: str = "clips", info: dict | None = None) -> dict:
    """Write ``out_wav`` (+ ``.csv`` labels, ``.json`` info) from ``items``, a list of
    ``(source, path, ((word, place), ...))`` with ``place`` in [0, 1] the word's share of
    the way through the file's speech. Deterministic for ``seed``. With ``max_minutes``
    the order is cut where the next file would go past it (at least one file is kept).
    Words not in ``keywords`` count as ordinary speech. Returns the info written to
    ``.json`` (``info`` and ``settings`` are added to it; ``count_name`` names the count of
    files used)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(items))
    pieces, labels, t, used = [], [], 0, 0
    for j in order:
        source, path, words = items[j]
        x = read_audio(path, sample_rate, warn=False)
        gap = np.zeros(int(rng.uniform(*gap_s) * sample_rate), dtype=np.float32)
        if max_minutes is not None and pieces and t + len(gap) + len(x) > max_minutes * 60 * sample_rate:
            break
        pieces += [gap, x]
        used += 1
        t += len(gap)
        a, b = speech_span(x, sample_rate)
        start, end = (t + a) / sample_rate, (t + b) / sample_rate
        labels.append(dict(start_s=round(start, 4), end_s=round(end, 4), word=UNKNOWN, kind="filler",
                           source=source, domain=domain))
        for word, place in words:
            if word not in keywords:
                continue
            mid = start + place * (end - start)
            labels.append(dict(start_s=round(max(start, mid - tolerance_s), 4),
                               end_s=round(min(end, mid + tolerance_s), 4), word=word, kind="keyword",
                               source=source, domain=domain))
        t += len(x)
    pieces.append(np.zeros(sample_rate, dtype=np.float32))
    mix = np.concatenate(pieces)
    mix += rng.standard_normal(len(mix)).astype(np.float32) * FLOOR
    labels.sort(key=lambda lb: (lb["start_s"], lb["kind"] != "filler"))
    out_wav = Path(out_wav)
    write_audio(out_wav, mix, sample_rate)
    write_labels(out_wav.with_suffix(".csv"), labels)
    out = dict(info or {}, seed=seed, **{count_name: used}, minutes=round(len(mix) / sample_rate / 60, 2),
               speech_minutes=round(sum(lb["end_s"] - lb["start_s"] for lb in labels if lb["kind"] == "filler") / 60, 2),
               n_keywords=sum(lb["kind"] == "keyword" for lb in labels), keywords=list(keywords))
    if settings is not None:   # what a builder compares to reuse the recording, in the same one write
        out["settings"] = settings
    write_json(out_wav.with_suffix(".json"), out)
    return out


def files_key(paths) -> str:
    """A short key of the files a recording is made of, by path, size and time (as the
    real dev set keys its sources): it changes when a package update changes them."""
    return hashlib.sha1(json.dumps([file_signature(Path(p)) for p in paths]).encode()).hexdigest()[:12]

