"""Real human speech, for evaluation only: a long recording of Asterisk's English prompts.

The other long recordings are synthetic speech (plus a few real words). What a deployed
detector meets is people talking: running sentences, most of them without a command
word, some with one inside ("that agent is already logged *on*", "there are *no* more
compatible entries"). Debian's ``asterisk-core-sounds-en-wav`` holds about 430 such
prompts read by one woman ("Allison"), 19 minutes of telephone-band speech (8 kHz). The
table next to this module (``asterisk_prompts.tsv``, annotated for this project) names
the prompts whose text was checked and, for each, the command words it holds and where
in the text they fall.

This recording strings the prompts together in a fixed random order with short pauses.
A prompt's command word is one labelled event: since only the word's place in the text
is known, not its time, the event spans ``tolerance_s`` either side of the matching
point of the prompt's speech, clipped to the prompt; a detection of that word there is
a hit, as on the other recordings. Everything else is speech that must not fire
(``_unknown_`` segments, domain ``real_asterisk``). It answers the two questions a real
long recording asks: false alarms per hour on real speech, and command words found
inside real sentences.

The package is reserved for evaluation (as is the real dev set it shares a speaker
with): nothing trains, selects or sets a threshold on it.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from kws_okd.audio.io import read_audio, write_audio
from kws_okd.data.real_speech import ASTERISK_DIRS, file_signature
from kws_okd.data.words import UNKNOWN
from kws_okd.errors import DataError
from kws_okd.stream.longaudio import speech_span, write_labels
from kws_okd.utils.atomic import write_json

PROMPT_TABLE = Path(__file__).with_name("asterisk_prompts.tsv")
NAME = "test_real_prompts"
DOMAIN = "real_asterisk"
_VERSION = 1   # bump when the composition changes, to rebuild old recordings
GAP_S = (0.25, 0.75)     # pause before each prompt
TOLERANCE_S = 1.5        # half-width of a command word's event around its estimated time


def read_prompt_table(path=PROMPT_TABLE) -> list[tuple[str, tuple[tuple[str, float], ...]]]:
    """``[(prompt, ((word, place), ...)), ...]`` from an annotation table (see the header
    of ``asterisk_prompts.tsv``); ``place`` is in [0, 1]."""
    out, seen = [], set()
    for i, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        name, _, rest = line.partition("\t")
        words = []
        for item in rest.split():
            word, sep, place = item.partition("@")
            try:
                p = float(place)
            except ValueError:
                p = -1.0
            if not sep or not word or not 0.0 <= p <= 1.0:
                raise DataError(f"{path}, line {i}: {item!r} is not WORD@PLACE with PLACE in [0, 1]")
            words.append((word, p))
        if name.strip() != name or not name:
            raise DataError(f"{path}, line {i}: bad prompt name {name!r}")
        if name in seen:
            raise DataError(f"{path}, line {i}: prompt {name!r} is listed twice")
        seen.add(name)
        out.append((name, tuple(words)))
    return out


def prompt_folder() -> Path | None:
    """The installed prompt folder, or None when the package is missing."""
    return next((d for d in ASTERISK_DIRS if (d / "hello-world.wav").is_file()), None)


def _present(folder: Path, table=PROMPT_TABLE) -> list[tuple[str, tuple[tuple[str, float], ...]]]:
    """The prompts of ``table`` whose file is in ``folder``."""
    return [(n, w) for n, w in read_prompt_table(table) if (folder / f"{n}.wav").is_file()]


def compose_real_prompts(folder, keywords, out_wav, seed: int = 0, sample_rate: int = 16000,
                         gap_s=GAP_S, tolerance_s: float = TOLERANCE_S, table=PROMPT_TABLE,
                         max_minutes: float | None = None, settings: dict | None = None) -> dict:
    """Write ``out_wav`` (+ ``.csv`` labels, ``.json`` info) from the prompts of ``table``
    found in ``folder``, in a random order; deterministic for ``seed``. With
    ``max_minutes``, the order is cut where the next prompt would go past it. Command words
    that are not in ``keywords`` count as ordinary speech."""
    folder = Path(folder)
    prompts = _present(folder, table)
    if not prompts:
        raise DataError(f"{folder}: none of the prompts listed in {table} is there")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(prompts))
    pieces, labels, t, used = [], [], 0, 0
    for j in order:
        name, words = prompts[j]
        x = read_audio(folder / f"{name}.wav", sample_rate, warn=False)
        gap = np.zeros(int(rng.uniform(*gap_s) * sample_rate), dtype=np.float32)
        if max_minutes is not None and pieces and t + len(gap) + len(x) > max_minutes * 60 * sample_rate:
            break
        pieces += [gap, x]
        used += 1
        t += len(gap)
        a, b = speech_span(x, sample_rate)
        start, end = (t + a) / sample_rate, (t + b) / sample_rate
        source = f"asterisk/{name}"
        labels.append(dict(start_s=round(start, 4), end_s=round(end, 4), word=UNKNOWN, kind="filler",
                           source=source, domain=DOMAIN))
        for word, place in words:
            if word not in keywords:
                continue
            mid = start + place * (end - start)
            labels.append(dict(start_s=round(max(start, mid - tolerance_s), 4),
                               end_s=round(min(end, mid + tolerance_s), 4), word=word, kind="keyword",
                               source=source, domain=DOMAIN))
        t += len(x)
    pieces.append(np.zeros(sample_rate, dtype=np.float32))
    mix = np.concatenate(pieces)
    # A faint floor instead of digital silence between prompts, as on the other recordings.
    mix += rng.standard_normal(len(mix)).astype(np.float32) * 1e-4
    labels.sort(key=lambda lb: (lb["start_s"], lb["kind"] != "filler"))
    out_wav = Path(out_wav)
    write_audio(out_wav, mix, sample_rate)
    write_labels(out_wav.with_suffix(".csv"), labels)
    info = dict(folder=str(folder), seed=seed, prompts=used, minutes=round(len(mix) / sample_rate / 60, 2),
                speech_minutes=round(sum(lb["end_s"] - lb["start_s"] for lb in labels if lb["kind"] == "filler") / 60, 2),
                n_keywords=sum(lb["kind"] == "keyword" for lb in labels), keywords=list(keywords))
    if settings is not None:   # what build_* compares to reuse the recording, in the same one write
        info["settings"] = settings
    write_json(out_wav.with_suffix(".json"), info)
    return info


def build_real_prompts(out_dir, keywords, seed: int = 0, folder=None, max_minutes: float | None = None) -> Path | None:
    """``test_real_prompts.wav`` in ``out_dir``, composed unless an earlier build with the
    same settings and prompt files is there; None when the package is not installed.
    ``max_minutes`` cuts it short (all prompts make about 23 minutes)."""
    folder = Path(folder) if folder else prompt_folder()
    if folder is None:
        return None
    out_dir = Path(out_dir)
    wav = out_dir / f"{NAME}.wav"
    # The prompt files it is made of, by path, size and time, as the real dev set keys its sources.
    files = hashlib.sha1(json.dumps([file_signature(folder / f"{n}.wav") for n, _ in _present(folder)])
                         .encode()).hexdigest()[:12]
    want = dict(version=_VERSION, seed=seed, keywords=list(keywords), folder=str(folder), gap_s=list(GAP_S),
                tolerance_s=TOLERANCE_S, max_minutes=max_minutes,
                table=hashlib.sha1(PROMPT_TABLE.read_bytes()).hexdigest()[:12],
                files=files)
    info = wav.with_suffix(".json")
    if wav.exists() and info.exists() and json.loads(info.read_text()).get("settings") == want:
        return wav
    out_dir.mkdir(parents=True, exist_ok=True)
    compose_real_prompts(folder, keywords, wav, seed=seed, max_minutes=max_minutes, settings=want)
    return wav
