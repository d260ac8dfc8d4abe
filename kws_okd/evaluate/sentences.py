"""Keywords inside sentences: a long recording of short spoken sentences.

The other long recordings (:mod:`kws_okd.evaluate.long_audio`) hold isolated words with
gaps. People say command words inside sentences ("i said stop again"), with other words
a few tens of milliseconds before and after, inside the same one-second window. This
recording measures that: sentences by voices of the **held-out synthesiser families**
(the OOD protocol: never trained on), half of them with one keyword inside a carrier
phrase, half with no keyword at all.

A keyword sentence is rendered in three pieces (words before, the keyword, words
after), each trimmed to its speech and joined with 30-120 ms pauses, so that the
keyword's span is known exactly; sentences without a keyword are rendered whole. The
label file has the composer's columns (:data:`~kws_okd.stream.longaudio.LABEL_COLUMNS`),
so ``kws-okd eval-stream`` and :func:`~kws_okd.evaluate.long_audio.score_recording`
score it like any other recording.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from kws_okd.audio.io import write_audio
from kws_okd.data.words import spoken
from kws_okd.errors import DataError
from kws_okd.stream.longaudio import is_built, speech_span, write_labels
from kws_okd.utils.atomic import write_json

# Carrier phrases around a keyword: (words before, words after). Generic enough for any
# command word; none holds a keyword of the 12-class task (checked in the tests).
CARRIERS = (
    ("i said", "again"), ("the word is", "okay"), ("", "please"), ("now", ""),
    ("say", "twice"), ("she told me", "yesterday"), ("it was", "and then"), ("well", "i think"),
    ("can you", "for me"), ("tell them", "quickly"), ("", "thank you"), ("and then", ""),
    ("just", "that"), ("we heard", "from the kitchen"), ("maybe", "later"), ("please", ""),
)

# Sentences with no keyword of the 12-class task (checked in the tests): everyday speech
# a detector must stay silent through.
NEGATIVE_SENTENCES = (
    "the weather is nice today", "could you open the window", "my sister lives in boston",
    "what time is it", "the coffee is too hot", "we need more milk and bread",
    "this is a short test sentence", "thank you very much", "i think it will rain",
    "where are my keys", "the train leaves at seven", "she bought a new car",
    "let me check the calendar", "nothing happened here", "he plays the piano",
    "leave it there", "bring the red box", "it is almost lunch time", "turn the page",
    "the children are sleeping", "call me after dinner", "that sounds great",
    "i forgot my umbrella", "the meeting was moved to friday", "we should buy a gift",
    "his dog is very friendly", "the music is too loud", "read the next chapter",
    "a cup of tea with lemon", "our neighbours are away", "the store closes early",
    "please water the plants",
)


# The validation recording's texts (thresholds are chosen on it, with the training
# families' validation voices): disjoint from the test texts above, so that no test
# sentence or carrier is heard before the test (checked in the tests).
VALID_CARRIERS = (
    ("let us", "now"), ("you should", "soon"), ("he yelled", "at them"), ("", "thanks"),
    ("then", ""), ("they said", "three times"), ("try", "slowly"), ("my answer is", "today"),
    ("okay", ""), ("was it", "or not"), ("", "for sure"), ("we will", "tomorrow"),
    ("always", "first"), ("the sign said", "here"), ("i guess", "as well"), ("so", ""),
)
VALID_NEGATIVE_SENTENCES = (
    "the bus was late again", "i need a new pair of shoes", "can we talk tomorrow",
    "the soup tastes good", "my phone battery is low", "she reads every night",
    "the garden looks lovely", "we had pasta for dinner", "is this seat taken",
    "the kids played outside", "he fixed the old bike", "the movie starts at nine",
    "i like this song", "the cat sleeps all day", "we walked to the park",
    "the printer is broken", "her brother works at a bank", "they moved to a small town",
    "the lamp is very bright", "my hands are cold", "pass me the salt",
    "the ticket costs ten dollars", "we saw a big ship", "a glass of cold water",
    "the baby laughed", "our teacher was kind", "this road is very long",
    "i lost my wallet", "the flowers need sun", "he cooked eggs for breakfast",
    "the office is quiet today", "where did you park the car",
)
TEXTS = {"test": (CARRIERS, NEGATIVE_SENTENCES), "valid": (VALID_CARRIERS, VALID_NEGATIVE_SENTENCES)}


def without_keywords(texts, keywords):
    """``(carriers, negative sentences)`` without those that say a keyword (a user's own
    keywords may be everyday words: "the train leaves at seven" for the digits)."""
    from kws_okd.keywords.vocab import holds
    said = [spoken(k).split() for k in keywords]

    def says(text):
        return any(holds(text.split(), k) for k in said)

    carriers, negatives = texts
    return ([c for c in carriers if not says(c[0]) and not says(c[1])], [t for t in negatives if not says(t)])


def _render(engine, voice, text: str, sr: int) -> np.ndarray:
    x = engine.synthesize(voice, text, sr)
    a, b = speech_span(x, sr)
    return x[a:b]


def compose_sentences(families, keywords, out_wav, minutes: float = 4.0, seed: int = 0,
                      voices_per_family: int = 6, keyword_share: float = 0.5,
                      gap_s=(0.6, 1.6), sample_rate: int = 16000, voices=None, texts: str = "test",
                      settings: dict | None = None) -> dict:
    """Write ``out_wav`` (+ ``.csv`` labels, ``.json`` info); deterministic for ``seed``.

    Speakers are ``voices_per_family`` new voices of each family, or the given ``voices``
    (:class:`~kws_okd.data.tts.Voice`, e.g. a corpus split's); ``texts`` picks the
    carriers and sentences (:data:`TEXTS`)."""
    from kws_okd.data.tts import get_engine
    if not families and not voices:
        raise DataError("a sentence recording needs at least one synthesiser family")
    if texts not in TEXTS:
        raise DataError(f"unknown sentence texts {texts!r}; known: {sorted(TEXTS)}")
    carriers, negatives = without_keywords(TEXTS[texts], keywords)
    rng = np.random.default_rng(seed)
    speakers = []
    if voices:
        engines = {v.family: get_engine(v.family) for v in voices}
        speakers = [(v.family, engines[v.family], v) for v in voices]
        families = sorted(engines)
    else:
        for fam in families:
            engine = get_engine(fam)
            speakers += [(fam, engine, v) for v in engine.sample_voices(voices_per_family, rng)]
    total = int(minutes * 60 * sample_rate)
    audio = np.zeros(total, dtype=np.float32)
    labels, active = [], []
    t = int(rng.uniform(*gap_s) * sample_rate)
    n_kw = n_neg = 0
    while True:
        fam, engine, voice = speakers[rng.integers(len(speakers))]
        spk = f"{fam}/{voice.name}"
        if rng.random() < keyword_share:
            word = keywords[rng.integers(len(keywords))]
            before, after = carriers[rng.integers(len(carriers))]
            pieces = [(p, kind) for p, kind in ((before, "filler"), (word, "keyword"), (after, "filler")) if p]
        else:
            pieces = [(negatives[rng.integers(len(negatives))], "filler")]
        parts, spans, pos = [], [], 0
        for i, (text, kind) in enumerate(pieces):
            if i:
                pause = np.zeros(int(rng.uniform(0.03, 0.12) * sample_rate), dtype=np.float32)
                parts.append(pause)
                pos += len(pause)
            x = _render(engine, voice, spoken(text), sample_rate)
            parts.append(x)
            spans.append((pos, pos + len(x), text, kind))
            pos += len(x)
        sent = np.concatenate(parts)
        if t + len(sent) > total - sample_rate // 2:
            break
        sent = sent / (np.abs(sent).max() + 1e-9) * rng.uniform(0.3, 0.7)
        audio[t:t + len(sent)] = sent
        active.append(sent)
        for a, b, text, kind in spans:
            labels.append(dict(start_s=round((t + a) / sample_rate, 4), end_s=round((t + b) / sample_rate, 4),
                               word=text if kind == "keyword" else "_unknown_", kind=kind,
                               source=f"{spk}/{n_kw + n_neg}/{text}", domain=fam))
        n_kw += any(kind == "keyword" for *_, kind in spans)
        n_neg += all(kind != "keyword" for *_, kind in spans)
        t += len(sent) + int(rng.uniform(*gap_s) * sample_rate)
    if not labels:
        raise DataError(f"{minutes} min is too short for even one sentence")
    level = float(np.sqrt(np.mean(np.concatenate(active) ** 2)))
    audio += rng.standard_normal(total).astype(np.float32) * level * 1e-3   # -60 dB dither
    out_wav = Path(out_wav)
    write_audio(out_wav, audio, sample_rate)
    write_labels(out_wav.with_suffix(".csv"), labels)
    info = dict(minutes=minutes, seed=seed, families=list(families), voices=len(speakers), texts=texts,
                keywords=list(keywords), keyword_sentences=n_kw, sentences_without_keyword=n_neg)
    if settings is not None:   # what build_* compares to reuse the recording, in the same one write
        info["settings"] = settings
    write_json(out_wav.with_suffix(".json"), info)
    return info


def build_sentences(families, keywords, out_dir, minutes: float = 4.0, seed: int = 0,
                    name: str = "test_sentences", voices=None, texts: str = "test") -> Path:
    """``<name>.wav`` in ``out_dir``, composed unless an earlier build with the same
    settings is there."""
    out_dir = Path(out_dir)
    wav = out_dir / f"{name}.wav"
    want = dict(families=list(families), keywords=list(keywords), minutes=minutes, seed=seed,
                carriers=hashlib.sha1(repr(TEXTS[texts]).encode()).hexdigest()[:12])
    if voices:
        want["voices"] = [v.name for v in voices]
    if is_built(wav, want):
        return wav
    compose_sentences(families, keywords, wav, minutes=minutes, seed=seed, voices=voices, texts=texts,
                      settings=want)
    return wav
