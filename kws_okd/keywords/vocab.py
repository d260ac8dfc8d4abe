"""A user's own keywords: parsing, pronunciations and the negatives that go with them.

Words and phrases are checked before anything is synthesised, each problem with one
error naming the word. Pronunciations come from espeak-ng (IPA, American English),
split into phonemes; two keywords that sound the same cannot be told apart, and the
``_unknown_`` words are kept clear of the keywords' sounds:

* **near misses** are frequent English words (the ``wordfreq`` package's list) whose
  phonemes are one or two edits away from a keyword's ("martin", "marlin" for
  "marvin"), and for a phrase the phrase with one word swapped for a near miss of it,
  plus its words alone;
* no ``_unknown_`` word may sound like a keyword (a homophone, "won" for "one") or hold
  a keyword's sounds whole ("marvins"): a detector is right to fire on those.
"""
from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kws_okd.errors import ConfigError

# Letters, with apostrophes or hyphens inside a word; words separated by single spaces.
WORD = re.compile(r"[a-z]+(?:['-][a-z]+)*")
MAX_WORDS = 4               # a phrase longer than this is not a keyword
MAX_WINDOW_S = 1.5          # the longest window a model gets (phrases up to ~1.5 s)
MIN_WINDOW_S = 1.0
LEXICON_WORDS = 20000       # the most frequent English words searched for near misses
VOICE = "en-us"

# IPA symbols that are one phoneme though written with two characters.
_DIGRAPHS = ("aɪ", "aʊ", "eɪ", "oʊ", "ɔɪ", "tʃ", "dʒ", "ɑːɹ", "ɔːɹ", "ɛɹ", "ɪɹ", "ʊɹ", "ɜː")
_MODIFIERS = set("ːˑ̃ʰ̩")
_DROP = set("ˈˌ‖|.-' ")


def parse_keywords(words) -> list[str]:
    """The keywords of ``words`` (a comma-separated string or a list of strings),
    lower-cased with runs of spaces made single. One clear error for an empty list, an
    empty item, characters no synthesiser reads, a phrase of more than
    :data:`MAX_WORDS` words, and a duplicate."""
    items = words.split(",") if isinstance(words, str) else list(words or [])
    out = []
    for raw in items:
        w = " ".join(str(raw).lower().split())
        if not w:
            if len(items) > 1:
                raise ConfigError(f"keywords {words!r}: an empty keyword between commas")
            continue
        bad = [t for t in w.split(" ") if not WORD.fullmatch(t)]
        if bad:
            hint = " (write numbers as words: 'seven')" if any(c.isdigit() for c in w) else ""
            raise ConfigError(f"keyword {w!r}: {bad[0]!r} has characters no synthesiser reads; use "
                              f"letters, with an apostrophe or hyphen inside a word{hint}")
        if len(w.split(" ")) > MAX_WORDS:
            raise ConfigError(f"keyword {w!r}: a phrase of {len(w.split())} words is too long for "
                              f"a keyword window ({MAX_WORDS} words, about {MAX_WINDOW_S:g} s, at most)")
        if w in out:
            raise ConfigError(f"keyword {w!r} is given twice")
        out.append(w)
    if not out:
        raise ConfigError("no keywords: name at least one word, e.g. 'marvin,sheila,lights on'")
    return out


def split_phonemes(ipa: str) -> tuple[str, ...]:
    """IPA (espeak-ng ``--ipa``) as phonemes: stress and boundaries dropped, length and
    other modifiers kept on their symbol, diphthongs and affricates as one phoneme."""
    s = "".join(c for c in ipa.strip() if c not in _DROP)
    out, i = [], 0
    while i < len(s):
        d = next((d for d in sorted(_DIGRAPHS, key=len, reverse=True) if s.startswith(d, i)), None)
        sym = d or s[i]
        i += len(sym)
        while i < len(s) and s[i] in _MODIFIERS:
            sym += s[i]
            i += 1
        out.append(sym)
    return tuple(out)


def espeak_ipa(texts: list[str]) -> list[str]:
    """IPA of each text, spoken on its own (each as a sentence, so no sound runs on from
    one to the next)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise ConfigError("espeak-ng is needed to look up how keywords sound; install it "
                          "(make setup, or apt-get install espeak-ng)")
    if not texts:
        return []
    proc = subprocess.run([exe, "-q", "--ipa", "-v", VOICE, "--stdin"], input="".join(f"{t}.\n" for t in texts),
                          capture_output=True, text=True, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if proc.returncode != 0 or len(lines) != len(texts):
        raise ConfigError(f"espeak-ng gave {len(lines)} pronunciations for {len(texts)} texts "
                          f"({proc.stderr.strip()[:200] or 'no message'})")
    return lines


def phonemes(texts: list[str]) -> dict[str, tuple[str, ...]]:
    return {t: split_phonemes(ipa) for t, ipa in zip(texts, espeak_ipa(texts))}


def edit_distance(a, b) -> int:
    """Levenshtein distance between two phoneme sequences."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def holds(outer, inner) -> bool:
    """Whether phoneme sequence ``outer`` holds ``inner`` whole, as a contiguous run."""
    n = len(inner)
    return n > 0 and any(tuple(outer[i:i + n]) == tuple(inner) for i in range(len(outer) - n + 1))


def sounds_like_keyword(p, keyword_phonemes) -> str | None:
    """The keyword ``p`` sounds like or holds whole, if any."""
    for kw, q in keyword_phonemes.items():
        if edit_distance(p, q) == 0 or holds(p, q):
            return kw
    return None


def check_distinct(keyword_phonemes: dict) -> None:
    """Refuse two keywords that sound the same."""
    items = list(keyword_phonemes.items())
    for i, (a, pa) in enumerate(items):
        if not pa:
            raise ConfigError(f"keyword {a!r}: espeak-ng finds no sounds in it")
        for b, pb in items[i + 1:]:
            if pa == pb:
                raise ConfigError(f"keywords {a!r} and {b!r} sound the same (/{''.join(pa)}/): a "
                                  f"detector cannot tell them apart; keep one")


def lexicon(cache_dir: Path, n: int = LEXICON_WORDS) -> dict[str, tuple[str, ...]]:
    """The ``n`` most frequent English words of three letters or more with their phonemes, in order
    of frequency; looked up once and kept in ``cache_dir``."""
    from wordfreq import top_n_list
    words = [w for w in top_n_list("en", 2 * n) if WORD.fullmatch(w) and len(w) > 2][:n]
    key = hashlib.sha1(("\n".join(words) + VOICE).encode()).hexdigest()[:12]
    path = Path(cache_dir) / f"lexicon-{key}.tsv"
    if path.is_file():
        rows = [ln.split("\t") for ln in path.read_text().splitlines()]
        return {w: tuple(p.split(" ")) if p else () for w, p in rows}
    lex = phonemes(words)
    from kws_okd.utils.atomic import write_text
    write_text(path, "".join(f"{w}\t{' '.join(p)}\n" for w, p in lex.items()))
    return lex


def near_misses(keyword: str, keyword_phonemes: dict, lex: dict, n: int = 8) -> list[str]:
    """Up to ``n`` words that sound close to ``keyword`` but are not it: frequent words one
    edit away (two for keywords of four or more phonemes), the closest and most frequent
    first. For a phrase, the phrase with one word swapped for a near miss of that word."""
    words = keyword.split(" ")
    if len(words) > 1:
        alts = [near_misses(w, {w: lex.get(w) or phonemes([w])[w]}, lex, n) for w in words]
        out = []
        for rank in range(n):
            for k, w in enumerate(words):
                if rank < len(alts[k]):
                    cand = " ".join(words[:k] + [alts[k][rank]] + words[k + 1:])
                    if cand not in out and cand not in keyword_phonemes:
                        out.append(cand)
        return out[:n]
    p = keyword_phonemes[keyword]
    limit = 1 if len(p) < 4 else 2
    scored = []
    for rank, (w, q) in enumerate(lex.items()):
        if w in keyword_phonemes or abs(len(q) - len(p)) > limit:
            continue
        d = edit_distance(p, q)
        if 0 < d <= limit and sounds_like_keyword(q, keyword_phonemes) is None:
            scored.append((d, rank, w))
    return [w for *_, w in sorted(scored)[:n]]


@dataclass
class Vocabulary:
    """What a keyword corpus says: the keywords, and the ``_unknown_`` words with why each
    is there (``near_misses`` per keyword; ``parts``: words of a phrase said alone)."""
    keywords: list
    near_misses: dict
    parts: list
    user_unknown: list
    dropped: dict            # candidate _unknown_ word -> the keyword it sounds like

    @property
    def unknown_words(self) -> list[str]:
        return list(dict.fromkeys([*self.user_unknown, *(m for ms in self.near_misses.values() for m in ms),
                                   *self.parts]))


def build_vocabulary(keywords, cache_dir, unknown_words=(), near_miss_count: int = 8,
                     general_unknown=()) -> Vocabulary:
    """Check ``keywords`` and find their negatives. ``unknown_words``: the user's own
    ``_unknown_`` words (a keyword among them is an error); ``general_unknown``: the
    built-in ones, from which words that sound like a keyword are dropped (listed in
    ``dropped``)."""
    keywords = parse_keywords(keywords)
    user = [" ".join(str(w).lower().split()) for w in unknown_words or []]
    clash = [w for w in user if w in keywords]
    if clash:
        raise ConfigError(f"keyword {clash[0]!r} is also one of the _unknown_ words given; a word "
                          f"cannot be both")
    for w in user:
        if not all(WORD.fullmatch(t) for t in w.split(" ")):
            raise ConfigError(f"_unknown_ word {w!r} has characters no synthesiser reads")
    kp = phonemes(keywords)
    check_distinct(kp)
    lex = lexicon(cache_dir)
    misses = {k: near_misses(k, kp, lex, near_miss_count) for k in keywords}
    parts = [w for k in keywords if " " in k for w in k.split(" ") if w not in keywords]
    others = sorted({*user, *parts, *general_unknown} - set(keywords))
    op = phonemes(others)
    dropped = {w: kw for w in others if (kw := sounds_like_keyword(op[w], kp))}
    user_bad = [w for w in user if w in dropped]
    if user_bad:
        raise ConfigError(f"_unknown_ word {user_bad[0]!r} sounds like keyword {dropped[user_bad[0]]!r}")
    return Vocabulary(keywords=keywords, near_misses=misses, parts=[w for w in dict.fromkeys(parts) if w not in dropped],
                      user_unknown=user, dropped=dropped)
