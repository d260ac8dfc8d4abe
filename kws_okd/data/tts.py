"""Text-to-speech engines used to synthesise the embedded corpus.

A *voice* is one configuration of an engine (accent, variant, pitch, rate...);
in the corpus a voice plays the role of a speaker. Each engine belongs to a
*family*, which is the clip's domain label. Adding an engine is one class
registered with :func:`register_engine`.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kws_okd.audio.io import read_audio

ENGINES: dict[str, type["Engine"]] = {}


def register_engine(cls):
    ENGINES[cls.family] = cls
    return cls


@dataclass(frozen=True)
class Voice:
    family: str
    params: tuple = field(default_factory=tuple)  # sorted (key, value) pairs

    @property
    def name(self) -> str:
        return self.family + "-" + "-".join(f"{k}{v}" for k, v in self.params)

    def get(self, key):
        return dict(self.params)[key]


class Engine:
    family = ""
    binary = ""

    @classmethod
    def available(cls) -> bool:
        return shutil.which(cls.binary) is not None

    def sample_voices(self, n: int, rng: np.random.Generator) -> list[Voice]:
        raise NotImplementedError

    def command(self, voice: Voice, text: str, out: str, jitter: float) -> list[str]:
        raise NotImplementedError

    def synthesize(self, voice: Voice, text: str, sample_rate: int, jitter: float = 0.0) -> np.ndarray:
        with tempfile.TemporaryDirectory() as d:
            out = str(Path(d) / "x.wav")
            cmd = self.command(voice, text, out, jitter)
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0 or not Path(out).exists():
                raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
            return read_audio(out, sample_rate, warn=False)


def _distinct(sampler, n, rng, tries=50):
    seen, out = set(), []
    for _ in range(n * tries):
        v = sampler(rng)
        if v not in seen:
            seen.add(v)
            out.append(v)
        if len(out) == n:
            return out
    raise ValueError(f"could only find {len(out)} distinct voices, {n} requested")


class _Espeak(Engine):
    binary = "espeak-ng"
    languages: tuple = ()
    variants: tuple = ()

    def sample_voices(self, n, rng):
        def one(rng):
            return Voice(self.family, (
                ("lang", str(rng.choice(self.languages))),
                ("pitch", int(rng.integers(20, 81))),
                ("rate", int(rng.integers(120, 191))),
                ("var", str(rng.choice(self.variants))),
            ))
        return _distinct(one, n, rng)

    def command(self, voice, text, out, jitter):
        rate = int(voice.get("rate") * (1 + jitter))
        return [self.binary, "-v", f"{voice.get('lang')}+{voice.get('var')}",
                "-p", str(voice.get("pitch")), "-s", str(rate), "-w", out, text]


_ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
                    "croak", "whisper", "Andy", "Annie", "Denis", "Gene", "Jacky", "Lee",
                    "Mario", "Michael", "Mr serious", "Storm", "Tweaky", "aunty", "boris",
                    "edward", "iven", "john", "max", "paul", "quincy", "robert", "steph")


@register_engine
class EspeakEnglish(_Espeak):
    """espeak-ng's English accents with its voice variants."""
    family = "espeak"
    languages = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029",
                 "en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
    variants = _ESPEAK_VARIANTS


@register_engine
class EspeakForeign(_Espeak):
    """English words read with other languages' espeak-ng rules: foreign accents."""
    family = "espeak_accent"
    languages = ("de", "fr-fr", "es", "it", "nl", "pt", "pl", "sv", "da", "fi", "cs", "hu")
    variants = _ESPEAK_VARIANTS


@register_engine
class EspeakKlatt(_Espeak):
    """espeak-ng driven through its Klatt formant synthesiser: a different vocoder."""
    family = "espeak_klatt"
    languages = EspeakEnglish.languages
    variants = ("klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6")


@register_engine
class Flite(Engine):
    """CMU Flite: diphone (kal) and clustergen (awb, rms, slt) voices."""
    family = "flite"
    binary = "flite"
    voices = ("kal", "kal16", "awb", "rms", "slt")

    def sample_voices(self, n, rng):
        def one(rng):
            return Voice(self.family, (
                ("f0", int(rng.integers(80, 221))),
                ("stretch", round(float(rng.uniform(0.8, 1.3)), 2)),
                ("voice", str(rng.choice(self.voices))),
            ))
        return _distinct(one, n, rng)

    def command(self, voice, text, out, jitter):
        stretch = voice.get("stretch") * (1 - jitter)
        return [self.binary, "-voice", voice.get("voice"), "-t", text, "-o", out,
                "--setf", f"duration_stretch={stretch:.3f}",
                "--setf", f"int_f0_target_mean={voice.get('f0')}"]


def available_families() -> list[str]:
    return [f for f, cls in ENGINES.items() if cls.available()]


def get_engine(family: str) -> Engine:
    if family not in ENGINES:
        raise KeyError(f"unknown synthesiser family {family!r}; known: {sorted(ENGINES)}")
    cls = ENGINES[family]
    if not cls.available():
        raise RuntimeError(f"synthesiser family {family!r} needs '{cls.binary}' on PATH "
                           f"(install it with `make setup`)")
    return cls()
