"""The shifted-speech evaluation suite: deterministic noisy / reverberant / channel-
distorted copies of a test manifest, in GSC layout, ready for ``evaluate()``.

Layout of a suite folder::

    <cond>/<word>/<clip>.wav        one folder per condition
    test_shift_<cond>.csv           one manifest per condition (domain = condition)
    classes.txt  protocol.json      what kws_okd.evaluate.report.evaluate() reads
    suite.json                      every parameter of every condition
    _generators/                    the held-out RIR banks the rooms were drawn from

Held-out generators (docs/shift_suite.md): room geometry ranges and RIR seeds are
disjoint from the training policy's, and the noise types (babble, brown, impulsive)
are ones the training policy never adds.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import zlib
from pathlib import Path

import torch
import torchaudio.functional as AF

from kws_okd.audio.io import write_audio
from kws_okd.augment.channel import (BitDepth, Clipping, MicEQ, MuLaw, Narrowband, TelephoneBand,
                                     codec_available, codec_roundtrip, CODECS)
from kws_okd.augment.noise import NoiseBank, babble, coloured_noise, list_wavs, mix_at_snr
from kws_okd.augment.room import RirBank, RoomSpec, reverberate
from kws_okd.data.dataset import ManifestDataset
from kws_okd.data.manifest import read_manifest, write_manifest
from kws_okd.errors import DataError
from kws_okd.utils.atomic import write_json

SUITE_VERSION = 1
SNRS = (20, 10, 5, 0)
RT60S = (0.3, 0.6, 1.0)
HELD_OUT_NOISES = ("babble", "brown", "impulse")
# Training rooms (recipes/kws/augment/*.yaml, RoomReverb defaults) are 3-8 x 3-7 x 2.4-3.5 m
# with the source 0.5-3 m away. Suite rooms are larger halls with a distant talker:
# no suite room could have been drawn in training.
SUITE_ROOMS = dict(length=(9.0, 16.0), width=(7.5, 12.0), height=(3.6, 6.0), distance=(3.2, 6.0))
RIRS_PER_LEVEL = 8
RIR_SEED_BASE = 1_000_003  # training banks use small seeds (0, 1, ...)
PEAK = 0.99


def _noise(kind, snr):
    return dict(kind="noise", type=kind, snr_db=snr)


def _room(rt60):
    return dict(kind="room", rt60=rt60)


def _cond(name, family, severity, steps):
    return dict(name=name, family=family, severity=severity, steps=steps)


def conditions(suite: str, user_noise: bool = False, user_rirs: bool = False) -> list[dict]:
    """The conditions of a suite ('compact' or 'full'), before codec availability is checked."""
    if suite not in ("compact", "full"):
        raise DataError(f"unknown shift suite {suite!r}; choose 'compact' or 'full'")
    clean = _cond("clean", "clean", 0, [])
    if suite == "compact":
        out = [clean,
               _cond("babble_10db", "noise_babble", 10, [_noise("babble", 10)]),
               _cond("brown_5db", "noise_brown", 5, [_noise("brown", 5)]),
               _cond("room_rt60_0.6", "room", 0.6, [_room(0.6)]),
               _cond("telephone", "channel", None, [dict(kind="telephone")]),
               _cond("gsm", "channel", None, [dict(kind="codec", codec="gsm")]),
               _cond("phone_call", "combo", None, [_noise("babble", 10), dict(kind="telephone"),
                                                   dict(kind="mu_law", bits=8)])]
    else:
        noises = list(HELD_OUT_NOISES) + (["user"] if user_noise else [])
        out = [clean]
        out += [_cond(f"{k}_{s}db", f"noise_{k}", s, [_noise(k, s)]) for k in noises for s in SNRS]
        out += [_cond(f"room_rt60_{r}", "room", r, [_room(r)]) for r in RT60S]
        if user_rirs:
            out.append(_cond("room_user", "room_user", None, [dict(kind="room_user")]))
        out += [_cond("telephone", "channel", None, [dict(kind="telephone")]),
                _cond("narrowband_8k", "channel", None, [dict(kind="narrowband", rate=8000)]),
                _cond("mu_law_8bit", "channel", None, [dict(kind="mu_law", bits=8)]),
                _cond("clipping_0.3", "channel", None, [dict(kind="clipping", level=0.3)]),
                _cond("bit_depth_6", "channel", None, [dict(kind="bit_depth", bits=6)]),
                _cond("mic_eq", "channel", None, [dict(kind="mic_eq", gain_db=12.0)])]
        out += [_cond(c, "channel", None, [dict(kind="codec", codec=c)]) for c in CODECS]
        out += [_cond("phone_call", "combo", None, [_noise("babble", 10), dict(kind="telephone"),
                                                    dict(kind="mu_law", bits=8)]),
                _cond("far_field", "combo", None, [_room(1.0), _noise("brown", 10)]),
                _cond("cheap_mic", "combo", None, [dict(kind="mic_eq", gain_db=12.0),
                                                   dict(kind="clipping", level=0.3),
                                                   dict(kind="bit_depth", bits=8)]),
                _cond("voip", "combo", None, [_noise("impulse", 10), dict(kind="codec", codec="opus")])]
    return out


def condition_seed(seed: int, name: str) -> int:
    return (zlib.crc32(name.encode()) ^ (seed * 2654435761)) % (2 ** 31)


def impulse_noise(b: int, n: int, sr: int = 16000) -> torch.Tensor:
    """Knocks and clicks: 3-10 decaying noise bursts per second at random times and levels."""
    rate = torch.randint(3, 11, (b, 1)).float() * n / sr
    hits = (torch.rand(b, n) < rate / n).float() * torch.rand(b, n).pow(2)
    klen = sr // 25
    decay = torch.empty(b, 1).uniform_(0.003, 0.02) * sr
    kernel = torch.randn(b, klen) * torch.exp(-torch.arange(klen) / decay)
    x = AF.fftconvolve(hits, kernel)[..., :n]
    return x + 1e-4 * torch.randn(b, n)  # never exactly silent, so the SNR is defined


class _Context:
    """Noise sources and RIR banks shared by the conditions of one suite."""

    def __init__(self, rows, seed, out_dir, user_noise=None, user_rirs=None, sample_rate=16000,
                 rirs_per_level=RIRS_PER_LEVEL):
        speech = sorted({r["wav"] for r in rows if not r.get("offset")})
        self.speech = NoiseBank(speech, sample_rate) if speech else None
        self.user_noise = NoiseBank(list_wavs(user_noise), sample_rate) if user_noise else None
        self.user_rirs = RirBank.load(user_rirs, sample_rate) if user_rirs else None
        self.seed, self.out_dir, self.sr, self.n_rirs = seed, Path(out_dir), sample_rate, rirs_per_level
        self.banks: dict[float, RirBank] = {}
        self.bank_info: dict[str, dict] = {}

    def bank(self, rt60: float) -> RirBank:
        if rt60 not in self.banks:
            level = RT60S.index(rt60) if rt60 in RT60S else int(rt60 * 1000)
            seed = RIR_SEED_BASE + 1000 * self.seed + level
            spec = RoomSpec(n_rirs=self.n_rirs, rt60=(rt60, rt60), sample_rate=self.sr, **SUITE_ROOMS)
            name = f"rir_rt60_{rt60}"
            self.banks[rt60] = RirBank.generate(self.out_dir / "_generators" / name, spec, seed)
            self.bank_info[name] = dict(seed=seed, rt60=rt60, n_rirs=self.n_rirs, **SUITE_ROOMS,
                                        rt60_measured=self.banks[rt60].rt60s())
        return self.banks[rt60]

    def noise(self, kind, b, n):
        if kind == "babble":
            if self.speech is None:
                raise DataError("babble noise needs speech clips in the test manifest")
            return babble(self.speech, b, n, talkers=(4, 6))
        if kind == "brown":
            return coloured_noise(b, n, 2.0)
        if kind == "impulse":
            return impulse_noise(b, n, self.sr)
        if kind == "user":
            return self.user_noise.crop(b, n)
        raise DataError(f"unknown suite noise type {kind!r}")


def apply_steps(x: torch.Tensor, steps: list[dict], ctx: _Context) -> torch.Tensor:
    b, n = x.shape
    for st in steps:
        k = st["kind"]
        if k == "noise":
            snr = torch.full((b,), float(st["snr_db"]))
            x = mix_at_snr(x, ctx.noise(st["type"], b, n), snr)
        elif k in ("room", "room_user"):
            bank = ctx.user_rirs if k == "room_user" else ctx.bank(st["rt60"])
            x = reverberate(x, bank.rirs[torch.randint(0, len(bank), (b,))])
        elif k == "telephone":
            x = TelephoneBand(exact=True, sample_rate=ctx.sr)(x)
        elif k == "narrowband":
            x = Narrowband(st["rate"], ctx.sr)(x)
        elif k == "mu_law":
            x = MuLaw(st["bits"])(x)
        elif k == "clipping":
            x = Clipping(st["level"])(x)
        elif k == "bit_depth":
            x = BitDepth(st["bits"])(x)
        elif k == "mic_eq":
            x = MicEQ(gain_db=(-st["gain_db"], st["gain_db"]), sample_rate=ctx.sr)(x)
        elif k == "codec":
            x = codec_roundtrip(x, st["codec"], sample_rate=ctx.sr)
        else:
            raise DataError(f"unknown suite step {k!r}")
    return x


def resolve_test_manifest(data) -> Path:
    data = Path(data)
    if data.is_dir():
        data = data / "test_id.csv"
    if not data.exists():
        raise DataError(f"{data}: test manifest does not exist (give a CSV or a folder with test_id.csv)")
    return data


def _digest(manifest: Path, params: dict) -> str:
    h = hashlib.sha1(manifest.read_bytes())
    h.update(json.dumps(params, sort_keys=True).encode())
    return h.hexdigest()[:16]


def build_suite(data, out_dir, suite: str = "compact", seed: int = 0, noise_dir=None, rir_dir=None,
                batch_size: int = 256, sample_rate: int = 16000, rirs_per_level: int = RIRS_PER_LEVEL,
                log=print) -> Path:
    """Write the suite into ``out_dir`` (reused when it already matches); return ``out_dir``."""
    manifest = resolve_test_manifest(data)
    classes = manifest.parent / "classes.txt"
    if not classes.exists():
        raise DataError(f"{classes}: class list missing next to the test manifest")
    for p, what in ((noise_dir, "noise"), (rir_dir, "RIR")):
        if p is not None and not Path(p).exists():
            raise DataError(f"{p}: {what} folder does not exist")
    out_dir = Path(out_dir)
    conds = conditions(suite, user_noise=noise_dir is not None, user_rirs=rir_dir is not None)
    kept, skipped = [], []
    for c in conds:
        missing = [s["codec"] for s in c["steps"] if s["kind"] == "codec" and not codec_available(s["codec"])]
        if missing:
            log(f"shift: skipping {c['name']}: ffmpeg has no {CODECS[missing[0]][0]} encoder")
            skipped.append(c["name"])
        else:
            kept.append(c)
    params = dict(version=SUITE_VERSION, suite=suite, seed=seed, sample_rate=sample_rate,
                  rirs_per_level=rirs_per_level,
                  conditions=kept, skipped=skipped, user_noise=str(noise_dir) if noise_dir else None,
                  user_rirs=str(rir_dir) if rir_dir else None)
    digest = _digest(manifest, params)
    meta = out_dir / "suite.json"
    if meta.exists() and json.loads(meta.read_text()).get("digest") == digest:
        return out_dir

    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    rows = read_manifest(manifest)
    ds = ManifestDataset(manifest, sample_rate=sample_rate)
    ctx = _Context(rows, seed, tmp, noise_dir, rir_dir, sample_rate, rirs_per_level)
    eval_sets = {}
    for c in kept:
        c["seed"] = condition_seed(seed, c["name"])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c["seed"])
            out_rows = []
            for i in range(0, len(ds), batch_size):
                x = apply_steps(ds.waves[i:i + batch_size].clone(), c["steps"], ctx)
                peak = x.abs().amax(-1, keepdim=True)
                x = torch.where(peak > PEAK, x * PEAK / peak.clamp_min(1e-8), x)
                for r, y in zip(rows[i:i + batch_size], x.numpy()):
                    rel = f"{c['name']}/{r['ID']}.wav"
                    write_audio(tmp / rel, y, sample_rate)
                    out_rows.append(dict(r, wav=rel, domain=c["name"], offset=0, duration=1.0))
        set_name = f"test_shift_{c['name']}"
        write_manifest(tmp / f"{set_name}.csv", out_rows)
        eval_sets[set_name] = "id" if c["family"] == "clean" else "ood"
        log(f"shift: {c['name']} ({len(out_rows)} clips)")
    shutil.copyfile(classes, tmp / "classes.txt")
    write_json(tmp / "protocol.json", dict(eval_sets=eval_sets, suite=suite, source=str(manifest.name)))
    write_json(tmp / "suite.json", dict(params, conditions=kept, rir_banks=ctx.bank_info, digest=digest,
                                        source_manifest=manifest.name, clips=len(rows),
                                        peak_limit=PEAK, held_out_noises=list(HELD_OUT_NOISES),
                                        rooms=SUITE_ROOMS, rir_seed_base=RIR_SEED_BASE))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir
