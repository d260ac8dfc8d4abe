"""Room acoustics: a bank of room impulse responses (RIRs) and batch-wise reverberation.

Synthetic RIRs come from pyroomacoustics' image-source model in shoebox rooms.
Sabine's formula (``pra.inverse_sabine``) mis-predicts the image-source decay by
up to ~40 % in large rooms, so each RIR is generated twice: once as asked, then
with the request corrected by the measured/target ratio. The bank is written once
into a folder (24-bit WAVs + ``rirs.csv`` + ``bank.json``) and reused while its
settings match. A folder of real RIR WAVs, or a SpeechBrain-style CSV with a
``wav`` column, loads the same way.

Every RIR is direct-path aligned (its direct-path peak moved to sample 0) so
reverberation never delays the word, and convolution keeps each clip's RMS so
reverberation changes the timbre and smearing, not the level.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from torch import nn

from kws_okd.audio.io import read_audio
from kws_okd.augment.registry import register_augmentation
from kws_okd.errors import AudioError, ConfigError, DataError
from kws_okd.utils.atomic import atomic_path, write_json, write_text

RT60_LIMITS = (0.1, 2.0)  # seconds; outside this the image-source model is either trivial or far too slow
SPEED_OF_SOUND = 343.0


def _check_range(name, rng, lo, hi):
    a, b = float(rng[0]), float(rng[1])
    if not (lo <= a <= b <= hi):
        raise ValueError(f"{name}: need {lo} <= min <= max <= {hi}, got [{a}, {b}]")
    return a, b


@dataclass
class RoomSpec:
    """Ranges the bank's rooms are drawn from (uniformly)."""
    n_rirs: int = 32
    rt60: tuple = (0.2, 0.8)
    length: tuple = (3.0, 8.0)      # room x, metres
    width: tuple = (3.0, 7.0)       # room y
    height: tuple = (2.4, 3.5)      # room z
    distance: tuple = (0.5, 3.0)    # source-microphone distance, metres
    sample_rate: int = 16000
    max_seconds: float = 1.0        # RIRs are cut here (the clip is 1 s anyway)
    calibrate: bool = True
    version: int = 1                # bump when generation changes, to invalidate banks

    def __post_init__(self):
        self.rt60 = _check_range("rt60", self.rt60, *RT60_LIMITS)
        for name in ("length", "width", "height"):
            setattr(self, name, _check_range(name, getattr(self, name), 1.5, 50.0))
        self.distance = _check_range("distance", self.distance, 0.1, 20.0)
        if self.n_rirs < 1:
            raise ValueError(f"n_rirs: need at least 1, got {self.n_rirs}")

    def digest(self, seed: int) -> str:
        blob = json.dumps({**asdict(self), "seed": seed}, sort_keys=True, default=list).encode()
        return hashlib.sha1(blob).hexdigest()[:12]


def _shoebox_rir(rt60, dim, src, mic, fs):
    import pyroomacoustics as pra
    e_abs, max_order = pra.inverse_sabine(rt60, dim, c=SPEED_OF_SOUND)
    room = pra.ShoeBox(dim, fs=fs, materials=pra.Material(float(e_abs)), max_order=int(max_order))
    room.add_source(list(src))
    room.add_microphone(list(mic))
    # The multi-threaded RIR builder sums images in a run-dependent order, which changes
    # the last bits; one thread makes a bank byte-identical for a seed.
    threads = pra.constants.get("num_threads")
    pra.constants.set("num_threads", 1)
    try:
        room.compute_rir()
    finally:
        pra.constants.set("num_threads", threads)
    return np.asarray(room.rir[0][0], dtype=np.float64), float(e_abs), int(max_order)


def measure_rt60(h: np.ndarray, fs: int, decay_db: float = 30.0) -> float:
    """RT60 by Schroeder backward integration, extrapolated from the first ``decay_db`` dB."""
    import pyroomacoustics as pra
    return float(pra.experimental.measure_rt60(np.asarray(h, dtype=np.float64), fs=fs,
                                               decay_db=decay_db))


def align_direct_path(h: np.ndarray, search: int | None = None) -> np.ndarray:
    """Drop everything before the direct-path peak (the largest early peak)."""
    a = np.abs(h)
    if search is not None:
        a = a[:max(1, min(len(a), search))]
    return h[int(np.argmax(a)):]


def synthesize_rir(rt60: float, dim, src, mic, fs: int = 16000, calibrate: bool = True,
                   max_seconds: float = 1.0) -> tuple[np.ndarray, dict]:
    """One aligned, peak-normalised shoebox RIR and the parameters that made it."""
    rt60 = _check_range("rt60", (rt60, rt60), *RT60_LIMITS)[0]
    asked = rt60
    h, e_abs, order = _shoebox_rir(asked, dim, src, mic, fs)
    measured = measure_rt60(h, fs)
    if calibrate and measured > 0:
        # One fixed-point step on the Sabine mismatch; the ratio is stable in a given room.
        asked = float(np.clip(rt60 * rt60 / measured, 0.05, 3.0))
        h, e_abs, order = _shoebox_rir(asked, dim, src, mic, fs)
        measured = measure_rt60(h, fs)
    dist = float(np.linalg.norm(np.subtract(src, mic)))
    # pyroomacoustics delays every image by its fractional-delay filter; search just past
    # where the direct sound must be so a strong early reflection is never taken for it.
    direct = int(dist / SPEED_OF_SOUND * fs) + 200
    h = align_direct_path(h, search=direct)
    h = h[:int(max_seconds * fs)]
    h = h / (np.abs(h).max() or 1.0)
    return h.astype(np.float32), dict(rt60_target=round(rt60, 4), rt60_measured=round(measured, 4),
                                      rt60_asked=round(asked, 4), absorption=round(e_abs, 5),
                                      max_order=order, distance=round(dist, 4))


def _draw_geometry(spec: RoomSpec, rng: np.random.Generator):
    dim = [float(rng.uniform(*r)) for r in (spec.length, spec.width, spec.height)]
    margin = 0.3
    lo, hi = spec.distance
    # Largest distance that fits inside the room with margins on every wall.
    fit = float(np.sqrt(sum((d - 2 * margin) ** 2 for d in dim)))
    hi = max(min(hi, 0.95 * fit), min(lo, 0.95 * fit))
    for _ in range(200):
        mic = np.array([rng.uniform(margin, d - margin) for d in dim])
        direction = rng.standard_normal(3)
        direction /= np.linalg.norm(direction)
        src = mic + direction * rng.uniform(min(lo, hi), hi)
        if all(margin <= s <= d - margin for s, d in zip(src, dim)):
            return dim, src.tolist(), mic.tolist()
    raise ConfigError(f"room: cannot place source and microphone {spec.distance} m apart in rooms "
                      f"{spec.length} x {spec.width} x {spec.height} m")


@dataclass
class RirBank:
    """Aligned RIRs, zero-padded to one length: ``rirs`` is (K, L); ``info`` one dict per RIR."""
    rirs: torch.Tensor
    info: list
    root: str

    def __len__(self):
        return self.rirs.shape[0]

    @classmethod
    def generate(cls, root, spec: RoomSpec | None = None, seed: int = 0) -> "RirBank":
        """Synthesise the bank into ``root`` unless a matching one is already there."""
        spec = spec or RoomSpec()
        root = Path(root)
        meta = root / "bank.json"
        digest = spec.digest(seed)
        if meta.exists():
            try:
                if json.loads(meta.read_text()).get("digest") == digest:
                    return cls.load(root, spec.sample_rate)
            except json.JSONDecodeError:
                pass
            warnings.warn(f"{root}: RIR bank settings changed, regenerating it", stacklevel=2)
        tmp = root.with_name(root.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        rng = np.random.default_rng(seed)
        rows = []
        for i in range(spec.n_rirs):
            rt60 = float(rng.uniform(*spec.rt60))
            dim, src, mic = _draw_geometry(spec, rng)
            h, info = synthesize_rir(rt60, dim, src, mic, spec.sample_rate, spec.calibrate,
                                     spec.max_seconds)
            name = f"rir_{i:04d}.wav"
            with atomic_path(tmp / name) as t:
                # 24-bit PCM, not float: libsndfile stamps float WAVs with a PEAK chunk
                # holding the write time, which would make equal banks differ in bytes.
                sf.write(str(t), 0.99 * h, spec.sample_rate, subtype="PCM_24", format="WAV")
            rows.append(dict(wav=name, **info, room_x=round(dim[0], 3), room_y=round(dim[1], 3),
                             room_z=round(dim[2], 3), src=" ".join(f"{v:.3f}" for v in src),
                             mic=" ".join(f"{v:.3f}" for v in mic)))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        write_text(tmp / "rirs.csv", buf.getvalue())
        write_json(tmp / "bank.json", dict(digest=digest, seed=seed, spec=asdict(spec)))
        if root.exists():
            shutil.rmtree(root)
        os.replace(tmp, root)
        return cls.load(root, spec.sample_rate)

    @classmethod
    def load(cls, source, sample_rate: int = 16000, max_seconds: float = 1.0) -> "RirBank":
        """A bank folder (``rirs.csv``), any folder of RIR WAVs (recursive), or a CSV with ``wav``."""
        source = Path(source)
        if not source.exists():
            raise DataError(f"{source}: RIR folder or CSV does not exist")
        infos: list[dict]
        if source.is_file():
            infos = _read_rir_csv(source)
        elif (source / "rirs.csv").exists():
            infos = _read_rir_csv(source / "rirs.csv")
        else:
            infos = [dict(wav=str(p)) for p in sorted(source.rglob("*.wav"))]
            if not infos:
                raise DataError(f"{source}: no .wav RIRs in this folder")
        rirs = []
        for r in infos:
            path = Path(r["wav"])
            h = read_audio(path, sample_rate)  # warns and resamples other rates
            if not np.any(h):
                raise AudioError(path, "RIR is all zeros")
            h = align_direct_path(h)[:int(max_seconds * sample_rate)]
            rirs.append(h / np.abs(h).max())
        n = max(len(h) for h in rirs)
        out = torch.zeros(len(rirs), n)
        for i, h in enumerate(rirs):
            out[i, :len(h)] = torch.from_numpy(np.ascontiguousarray(h))
        return cls(out, infos, str(source))

    def spectra(self, n: int) -> tuple[torch.Tensor, int]:
        """The RIRs' spectra on an FFT grid long enough for a linear convolution with
        N-sample clips, computed once per N: reverberating a batch then costs one
        forward and one inverse FFT of the clips."""
        cache = self.__dict__.setdefault("_spectra", {})
        if n not in cache:
            nfft = fast_fft_size(n + self.rirs.shape[1] - 1)
            cache[n] = (torch.fft.rfft(self.rirs, nfft), nfft)
        return cache[n]

    def rt60s(self) -> list[float | None]:
        return [float(r["rt60_measured"]) if r.get("rt60_measured") not in (None, "") else None
                for r in self.info]


def _read_rir_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if "wav" not in (reader.fieldnames or []):
            raise DataError(f"{path}: RIR CSV lacks a 'wav' column; has {reader.fieldnames}")
        rows = list(reader)
    if not rows:
        raise DataError(f"{path}: RIR CSV has no rows")
    for r in rows:
        wav = Path(r["wav"].replace("$data_root", str(path.parent)))
        r["wav"] = str(wav if wav.is_absolute() else path.parent / wav)
    return rows


def _keep_rms(x, y):
    rms_in = x.pow(2).mean(-1, keepdim=True).sqrt()
    rms_out = y.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-8)
    return y * (rms_in / rms_out)


def reverberate(x: torch.Tensor, rirs: torch.Tensor) -> torch.Tensor:
    """Convolve each clip ``x[b]`` (B, N) with ``rirs[b]`` (B, L); same length, same RMS."""
    n = x.shape[-1]
    return _keep_rms(x, AF.fftconvolve(x, rirs.to(x))[..., :n])


def fast_fft_size(n: int) -> int:
    """Smallest 2^a * 3^b * 5^c >= n (FFT sizes pocketfft handles fastest)."""
    best = 1 << (n - 1).bit_length()
    p3 = 1
    while p3 < best:
        p35 = p3
        while p35 < best:
            p2 = p35
            while p2 < n:
                p2 *= 2
            best = min(best, p2)
            p35 *= 5
        p3 *= 3
    return best


def default_bank_dir(seed: int, spec: RoomSpec) -> str:
    """``data/rir_bank_<seed>/<digest>``: banks of different settings (e.g. policy strengths)
    live side by side instead of overwriting each other."""
    return f"data/rir_bank_{seed}/{spec.digest(seed)}"


@register_augmentation("room_reverb")
class RoomReverb(nn.Module):
    """Reverberate each clip with a random RIR of a bank.

    ``bank``: a folder of real RIRs / a RIR CSV / a bank folder; ``None`` synthesises
    the bank (``RoomSpec`` settings below) into ``data/rir_bank_<seed>/<digest>/`` on first use.
    ``wet``: range of the reverberant fraction (1 = fully reverberant; lower values
    mix the dry clip back in, a milder shift).
    """

    def __init__(self, bank: str | None = None, seed: int = 0, n_rirs: int = 32,
                 rt60=(0.2, 0.8), length=(3.0, 8.0), width=(3.0, 7.0), height=(2.4, 3.5),
                 distance=(0.5, 3.0), wet=(1.0, 1.0), sample_rate: int = 16000):
        super().__init__()
        self.spec = RoomSpec(n_rirs=n_rirs, rt60=tuple(rt60), length=tuple(length),
                             width=tuple(width), height=tuple(height), distance=tuple(distance),
                             sample_rate=sample_rate)
        self.wet = _check_range("wet", wet, 0.0, 1.0)
        self.bank_source, self.seed, self.sample_rate = bank, seed, sample_rate
        if bank is not None and not Path(bank).exists():
            raise DataError(f"{bank}: RIR folder or CSV does not exist (room_reverb.bank)")
        # A user bank is read now so a bad folder fails at build time; a synthetic one is
        # generated on first use so building a policy never synthesises rooms it won't use.
        self._bank: RirBank | None = RirBank.load(bank, sample_rate) if bank is not None else None

    @property
    def bank(self) -> RirBank:
        if self._bank is None:
            self._bank = RirBank.generate(default_bank_dir(self.seed, self.spec), self.spec, self.seed)
        return self._bank

    def forward(self, x):
        n = x.shape[-1]
        spec, nfft = self.bank.spectra(n)
        idx = torch.randint(0, spec.shape[0], (x.shape[0],))
        y = torch.fft.irfft(torch.fft.rfft(x, nfft) * spec[idx].to(x.device), nfft)[..., :n]
        y = _keep_rms(x, y.to(x.dtype))
        if self.wet != (1.0, 1.0):
            w = torch.empty(x.shape[0], 1, device=x.device).uniform_(*self.wet)
            y = w * y + (1 - w) * x
        return y
