"""The synthetic corpus of a user's own keywords, and the window that holds them.

The corpus is the embedded one (kws_okd/data/corpus.py) with other words: the keywords
(``keyword_takes`` takes each), the Speech Commands words that are not keywords (said
by every family, so the held-out families have ``_unknown_`` test clips), and, said by
the training families, the keywords' near misses, the words of a phrase alone, the
user's own ``_unknown_`` words and the built-in everyday words. A word that sounds
like a keyword is never an ``_unknown_`` word (kws_okd/keywords/vocab.py).
"""
from __future__ import annotations

import functools
import hashlib
import math

import numpy as np

from kws_okd.data.corpus import CorpusSpec, speech_bounds
from kws_okd.data.words import EXTRA_UNKNOWN_WORDS, GSC_V2_WORDS, folder_name
from kws_okd.errors import ConfigError
from kws_okd.keywords.vocab import MAX_WINDOW_S, MIN_WINDOW_S, Vocabulary, build_vocabulary, parse_keywords

GENERAL_UNKNOWN = tuple(dict.fromkeys(GSC_V2_WORDS + EXTRA_UNKNOWN_WORDS))


def cache_dir():
    from kws_okd.models.embedding_weights import cache_dir as root
    return root() / "keywords"


def set_name(keywords) -> str:
    """A short, stable folder name for a keyword set: the names joined when short, else
    the first two and a hash of all."""
    names = [folder_name(k) for k in parse_keywords(keywords)]
    joined = "-".join(names)
    if len(joined) <= 40:
        return joined
    return "-".join(names[:2]) + f"-{len(names)}w-" + hashlib.sha1(joined.encode()).hexdigest()[:8]


def keyword_vocabulary(cfg) -> Vocabulary:
    """The vocabulary of a ``data`` config of kind ``keywords``; looked up once per process
    (the command, the teacher and each student prepare the same data)."""
    return _vocabulary(tuple(cfg.keywords), tuple(cfg.get("unknown_words") or ()), int(cfg.get("near_misses", 8)))


@functools.lru_cache(maxsize=8)
def _vocabulary(keywords: tuple, unknown_words: tuple, near_miss_count: int) -> Vocabulary:
    return build_vocabulary(list(keywords), cache_dir(), unknown_words=list(unknown_words),
                            near_miss_count=near_miss_count, general_unknown=GENERAL_UNKNOWN)


def keyword_spec(cfg) -> CorpusSpec:
    """The corpus a ``data`` config of kind ``keywords`` asks for."""
    v = keyword_vocabulary(cfg)
    keywords = tuple(folder_name(k) for k in v.keywords)
    not_kw = [w for w in GENERAL_UNKNOWN if w not in v.keywords and w not in v.dropped]
    words = keywords + tuple(w for w in GSC_V2_WORDS if w in not_kw)
    extra = tuple(dict.fromkeys(folder_name(w) for w in [*v.unknown_words, *not_kw] if folder_name(w) not in words))
    options = dict(seed=int(cfg.corpus_seed), families=tuple(cfg.families), words=words, extra_words=extra,
                   keywords=keywords, clip_seconds=float(cfg.get("clip_seconds", 1.0)))
    if cfg.get("train_domains"):
        options["extra_word_families"] = tuple(cfg.train_domains)
    return CorpusSpec.sized(cfg.size, **options)


def spoken_seconds(x: np.ndarray, sr: int) -> float:
    """How long the speech in ``x`` lasts, as :func:`~kws_okd.data.corpus.place_in_clip`
    trims it (:func:`~kws_okd.data.corpus.speech_bounds`)."""
    bounds = speech_bounds(x)
    return (bounds[1] - bounds[0] + 1) / sr if bounds else 0.0


def probe_keywords(keywords, families, voices_per_family: int = 3, seed: int = 0, sr: int = 16000) -> dict:
    """Say every keyword with a few voices of each family; return their spoken lengths
    ``{keyword: [seconds, ...]}``. A keyword a synthesiser says nothing for is refused,
    naming both."""
    from kws_okd.data.tts import get_engine
    rng = np.random.default_rng(seed)
    out = {k: [] for k in keywords}
    for family in families:
        engine = get_engine(family)
        for voice in engine.sample_voices(voices_per_family, rng):
            for k in keywords:
                x = engine.synthesize(voice, k, sr)
                seconds = spoken_seconds(np.asarray(x, dtype=np.float32), sr)
                if seconds < 0.05:
                    raise ConfigError(f"keyword {k!r}: the {family} synthesiser says nothing for it "
                                      f"(voice {voice.name}); check the spelling")
                out[k].append(seconds)
    return out


def choose_window(durations: dict, margin: float = 1.15) -> float:
    """The window every clip and stream window gets: the 90th percentile of the keywords'
    spoken lengths with a 15 % margin, rounded up to 0.1 s, at least 1 s. A keyword that
    needs more than :data:`MAX_WINDOW_S` is refused, naming it."""
    need = {k: float(np.percentile(v, 90)) * margin for k, v in durations.items() if v}
    too_long = {k: s for k, s in need.items() if s > MAX_WINDOW_S}
    if too_long:
        k, s = max(too_long.items(), key=lambda kv: kv[1])
        raise ConfigError(f"keyword {k!r} is too long for a keyword window: it is spoken in about "
                          f"{s / margin:.2f} s, and a window holds at most {MAX_WINDOW_S:g} s; use a shorter phrase")
    longest = max(need.values(), default=MIN_WINDOW_S)
    return max(MIN_WINDOW_S, math.ceil(round(longest * 10, 6)) / 10)
