"""The embedded default corpus: keywords synthesised with local TTS engines.

Written in the exact Google Speech Commands v2 layout so one loader reads it
and the real GSC. Speakers are voice configurations; splits are
speaker-disjoint within each synthesiser family (the domain).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from kws_okd.audio.io import fix_length, resample, write_audio
from kws_okd.data.tts import get_engine
from kws_okd.data.words import BACKGROUND, EXTRA_UNKNOWN_WORDS, GSC_V2_WORDS, KEYWORDS_12, spoken
from kws_okd.utils.atomic import write_json, write_text

SIZES = {
    # speakers per family, takes per (speaker, word), takes per (speaker, keyword)
    "tiny": dict(speakers_per_family=6, takes=1, keyword_takes=1, extra_words=EXTRA_UNKNOWN_WORDS[:8]),
    "default": dict(speakers_per_family=40, takes=1, keyword_takes=3),
    "large": dict(speakers_per_family=200, takes=2, keyword_takes=4),
}


@dataclass
class CorpusSpec:
    families: tuple = ("espeak", "espeak_accent", "festival", "piper", "espeak_klatt", "flite")
    words: tuple = GSC_V2_WORDS
    # Spoken by every voice too, so that the 12-class ``_unknown_`` covers ordinary
    # speech; the 35-class task ignores them.
    extra_words: tuple = EXTRA_UNKNOWN_WORDS
    # ... by the voices of these families (the training ones: the held-out families'
    # _unknown_ test clips are the other GSC words; None = every family).
    extra_word_families: tuple | None = ("espeak", "espeak_accent", "festival", "piper")
    speakers_per_family: int = 40
    takes: int = 1
    keyword_takes: int = 3          # takes of the ten command words (the 12-class task)
    # Takes after the first are one voice with a random speaker perturbation (speed,
    # tempo, pitch, vocal-tract length: kws_okd/data/perturb.py): new speakers per voice.
    perturb: bool = True
    noise_floor_dbfs: tuple = (-72.0, -48.0)   # a recorded clip is never digital silence
    seed: int = 0
    sample_rate: int = 16000
    noise_seconds: int = 20
    valid_fraction: float = 0.1
    test_fraction: float = 0.2
    version: int = 3  # bump when synthesis changes, to invalidate caches
    # The words that get keyword_takes (a user's own keywords: kws_okd/keywords), and the
    # length of every clip (longer for phrases).
    keywords: tuple = KEYWORDS_12
    clip_seconds: float = 1.0

    def takes_of(self, word: str) -> int:
        return max(self.takes, self.keyword_takes) if word in self.keywords else self.takes

    def words_of(self, family: str) -> tuple:
        if self.extra_word_families is not None and family not in self.extra_word_families:
            return tuple(self.words)
        return self.all_words

    @property
    def all_words(self) -> tuple:
        return tuple(self.words) + tuple(w for w in self.extra_words if w not in self.words)

    @classmethod
    def sized(cls, size: str, **kw) -> "CorpusSpec":
        if size not in SIZES:
            raise ValueError(f"unknown corpus size {size!r}; choose from {sorted(SIZES)}")
        return cls(**{**SIZES[size], **kw})

    def digest(self) -> str:
        d = asdict(self)
        # Fields added later: corpora built before them keep their digest.
        for key, default in (("keywords", KEYWORDS_12), ("clip_seconds", 1.0)):
            if d[key] == default:
                del d[key]
        blob = json.dumps(d, sort_keys=True, default=list).encode()
        return hashlib.sha1(blob).hexdigest()[:12]


def speaker_id(voice_name: str) -> str:
    return hashlib.sha1(voice_name.encode()).hexdigest()[:8]


def speech_bounds(x: np.ndarray) -> tuple[int, int] | None:
    """First and last sample above 2 % of the peak (None for silence): where a synthesised
    word starts and ends."""
    env = np.abs(x)
    idx = np.flatnonzero(env > 0.02 * env.max()) if env.max() > 0 else []
    return (int(idx[0]), int(idx[-1])) if len(idx) else None


def place_in_clip(x: np.ndarray, n: int, rng: np.random.Generator, sr: int,
                  noise_floor_dbfs: tuple | None = None) -> np.ndarray:
    """Trim silence, fit the word inside ``n`` samples at a random offset, set a random
    level, and lay it over a faint coloured-noise floor (RMS drawn in ``noise_floor_dbfs``)."""
    bounds = speech_bounds(x)
    if bounds:
        x = x[max(0, bounds[0] - sr // 100): bounds[1] + sr // 100]
    limit = int(0.95 * n)
    if len(x) > limit:  # too slow a voice: time-compress rather than cut the word
        x = resample(x, len(x), limit)[:limit]
    out = np.zeros(n, dtype=np.float32)
    start = int(rng.integers(0, n - len(x) + 1))
    peak = np.abs(x).max() or 1.0
    out[start:start + len(x)] = x / peak * rng.uniform(0.3, 0.9)
    if noise_floor_dbfs:
        floor = coloured_noise(n, float(rng.uniform(0.0, 2.0)), rng)
        floor *= 10 ** (rng.uniform(*noise_floor_dbfs) / 20) / (np.sqrt(np.mean(floor ** 2)) + 1e-12)
        out += floor
    return out


def coloured_noise(n: int, exponent: float, rng) -> np.ndarray:
    """Noise with power spectrum ~ 1/f^exponent (0 white, 1 pink, 2 brown)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    spec /= f ** (exponent / 2)
    x = np.fft.irfft(spec, n)
    return (x / np.abs(x).max()).astype(np.float32)


def background_noises(spec: CorpusSpec, rng, voices) -> dict[str, np.ndarray]:
    n = spec.noise_seconds * spec.sample_rate
    t = np.arange(n) / spec.sample_rate
    out = {
        "white_noise": coloured_noise(n, 0, rng) * 0.5,
        "pink_noise": coloured_noise(n, 1, rng) * 0.5,
        "brown_noise": coloured_noise(n, 2, rng) * 0.5,
    }
    hum = sum(np.sin(2 * np.pi * 50 * k * t + rng.uniform(0, 6.28)) / k for k in range(1, 8))
    out["hum"] = (0.3 * hum / np.abs(hum).max()).astype(np.float32)
    motor = coloured_noise(n, 1.5, rng) * (1 + 0.5 * np.sin(2 * np.pi * 7.5 * t))
    out["machine"] = (0.5 * motor / np.abs(motor).max()).astype(np.float32)
    # Babble: several synthetic voices reading word lists, summed.
    babble = np.zeros(n, dtype=np.float32)
    for v in voices[:6]:
        eng = get_engine(v.family)
        words = " ".join(rng.choice(spec.words, size=3 * spec.noise_seconds))
        x = eng.synthesize(v, words, spec.sample_rate)
        x = np.resize(x, n)
        babble += x / (np.abs(x).max() or 1)
    out["babble"] = (0.5 * babble / (np.abs(babble).max() or 1)).astype(np.float32)
    out["music"] = synth_music(n, spec.sample_rate, rng)
    # A quiet room: _silence_ clips cut here are near-silent, not only loud noise.
    quiet = coloured_noise(n, 1.0, rng)
    out["near_silence"] = (quiet * 10 ** (-62 / 20) / np.sqrt(np.mean(quiet ** 2))).astype(np.float32)
    return out


def synth_music(n: int, sr: int, rng) -> np.ndarray:
    """Simple music as a keyword-free negative: plucked notes with harmonics over a
    chord progression and a noise-burst beat (tempo, key and timbre drawn from ``rng``)."""
    t = np.arange(n) / sr
    out = np.zeros(n)
    beat = 60.0 / rng.uniform(80, 140)
    root = 110.0 * 2 ** (rng.integers(0, 12) / 12)
    scale = np.array([0, 2, 4, 5, 7, 9, 11, 12])
    pos = 0.0
    while pos < n / sr:
        i0 = int(pos * sr)
        dur = beat * rng.choice([0.5, 1.0, 1.0, 2.0])
        m = min(n - i0, int(dur * sr * 1.5))
        tt = t[:m]
        f = root * 2 ** (scale[rng.integers(len(scale))] / 12 + rng.integers(1, 3))
        env = np.exp(-tt / (0.3 * dur))
        note = sum(np.sin(2 * np.pi * k * f * tt) / k ** rng.uniform(1, 2) for k in range(1, 6))
        out[i0:i0 + m] += env * note
        if rng.random() < 0.5:   # percussion on the beat
            d = min(m, sr // 20)
            out[i0:i0 + d] += 0.5 * rng.standard_normal(d) * np.exp(-np.arange(d) / (sr / 200))
        pos += dur
    for k, step in enumerate((0, 4, 7)):   # a sustained chord pad
        out += 0.2 * np.sin(2 * np.pi * root * 2 ** (step / 12) * t + k)
    return (0.5 * out / (np.abs(out).max() or 1)).astype(np.float32)


def build_corpus(root, spec: CorpusSpec, workers: int | None = None, progress: bool = True) -> Path:
    """Synthesise the corpus into ``root`` unless a matching one is already there."""
    root = Path(root)
    meta = root / "corpus.json"
    if meta.exists():
        if json.loads(meta.read_text()).get("digest") == spec.digest():
            return root
        # Settings changed: rebuild from scratch.
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    rng = np.random.default_rng(spec.seed)
    n = int(round(spec.sample_rate * spec.clip_seconds))

    jobs, speakers, lists = [], [], {"validation": [], "testing": []}
    all_voices = []
    for family in spec.families:
        engine = get_engine(family)
        voices = engine.sample_voices(spec.speakers_per_family, rng)
        all_voices.extend(voices)
        order = rng.permutation(len(voices))
        n_valid = max(1, round(spec.valid_fraction * len(voices)))
        n_test = max(1, round(spec.test_fraction * len(voices)))
        for rank, vi in enumerate(order):
            v = voices[vi]
            split = "validation" if rank < n_valid else "testing" if rank < n_valid + n_test else "training"
            spk = speaker_id(v.name)
            speakers.append(dict(spk_id=spk, domain=family, voice=v.name, split=split))
            for word in spec.words_of(family):
                for take in range(spec.takes_of(word)):
                    rel = f"{word}/{spk}_nohash_{take}.wav"
                    jobs.append((engine, v, word, take, rel, int(rng.integers(2**31))))
                    if split != "training":
                        lists[split].append(rel)

    def run(job):
        engine, v, word, take, rel, seed = job
        r = np.random.default_rng(seed)
        jitter = 0.0 if take == 0 else float(r.uniform(-0.1, 0.1))
        x = engine.synthesize(v, spoken(word), spec.sample_rate, jitter)
        if take > 0 and spec.perturb:
            from kws_okd.data.perturb import random_speaker_perturbation
            x, _ = random_speaker_perturbation(x, spec.sample_rate, r)
        clip = place_in_clip(x, n, r, spec.sample_rate, spec.noise_floor_dbfs)
        write_audio(tmp / rel, fix_length(clip, n), spec.sample_rate)

    for word in spec.all_words:
        (tmp / word).mkdir()
    workers = workers or max(2, os.cpu_count() or 2)
    with ThreadPoolExecutor(workers) as pool:
        list(tqdm(pool.map(run, jobs), total=len(jobs), desc="synthesising corpus",
                  disable=not progress, unit="clip"))

    (tmp / BACKGROUND).mkdir()
    for name, x in background_noises(spec, rng, all_voices).items():
        write_audio(tmp / BACKGROUND / f"{name}.wav", x, spec.sample_rate)
    write_text(tmp / "validation_list.txt", "".join(p + "\n" for p in sorted(lists["validation"])))
    write_text(tmp / "testing_list.txt", "".join(p + "\n" for p in sorted(lists["testing"])))
    write_text(tmp / "speakers.csv", "spk_id,domain,voice,split\n" + "".join(
        f"{s['spk_id']},{s['domain']},{s['voice']},{s['split']}\n" for s in speakers))
    write_json(tmp / "corpus.json", {"digest": spec.digest(), "spec": asdict(spec),
                                     "clips": len(jobs)})
    if root.exists():
        shutil.rmtree(root)
    os.replace(tmp, root)
    return root
