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
from pathlib import Path

from kws_okd.data.real_speech import ASTERISK_DIRS
from kws_okd.errors import DataError
from kws_okd.evaluate.real_recording import GAP_S, TOLERANCE_S, compose_real_recording, files_key
from kws_okd.stream.longaudio import is_built

PROMPT_TABLE = Path(__file__).with_name("asterisk_prompts.tsv")
NAME = "test_real_prompts"
DOMAIN = "real_asterisk"
_VERSION = 1   # bump when the composition changes, to rebuild old recordings


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
    items = [(f"asterisk/{name}", folder / f"{name}.wav", words) for name, words in prompts]
    return compose_real_recording(items, keywords, out_wav, DOMAIN, seed=seed, sample_rate=sample_rate,
                                  gap_s=gap_s, tolerance_s=tolerance_s, max_minutes=max_minutes,
                                  settings=settings, count_name="prompts", info=dict(folder=str(folder)))


def build_real_prompts(out_dir, keywords, seed: int = 0, folder=None, max_minutes: float | None = None) -> Path | None:
    """``test_real_prompts.wav`` in ``out_dir``, composed unless an earlier build with the
    same settings and prompt files is there; None when the package is not installed.
    ``max_minutes`` cuts it short (all prompts make about 23 minutes)."""
    folder = Path(folder) if folder else prompt_folder()
    if folder is None:
        return None
    out_dir = Path(out_dir)
    wav = out_dir / f"{NAME}.wav"
    want = dict(version=_VERSION, seed=seed, keywords=list(keywords), folder=str(folder), gap_s=list(GAP_S),
                tolerance_s=TOLERANCE_S, max_minutes=max_minutes,
                table=hashlib.sha1(PROMPT_TABLE.read_bytes()).hexdigest()[:12],
                files=files_key(folder / f"{n}.wav" for n, _ in _present(folder)))
    if is_built(wav, want):
        return wav
    out_dir.mkdir(parents=True, exist_ok=True)
    compose_real_prompts(folder, keywords, wav, seed=seed, max_minutes=max_minutes, settings=want)
    return wav
