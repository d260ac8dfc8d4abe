"""Channel effects: telephone band, narrow-band resampling, mu-law, codecs, clipping,
bit depth, microphone colouring, gain. Batch-wise on (B, N) waveforms.

Codecs run through ffmpeg (a subprocess per batch) and are meant for the offline
shifted-evaluation suite, not the training hot path.
"""
from __future__ import annotations

import functools
import math
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch
import torchaudio.functional as AF
from torch import nn

from kws_okd.augment.registry import register_augmentation
from kws_okd.errors import ConfigError


def _range(name, v, lo, hi):
    a, b = (float(v), float(v)) if np.isscalar(v) else (float(v[0]), float(v[1]))
    if not (lo <= a <= b <= hi):
        raise ValueError(f"{name}: need {lo} <= min <= max <= {hi}, got [{a}, {b}]")
    return a, b


def _per_clip(x, lo, hi):
    return torch.empty(x.shape[0], 1, device=x.device).uniform_(lo, hi)


def pass_coeffs(kind: str, freq: float, sr: int, q: float = 0.707):
    """The high-/low-pass biquad torchaudio's ``highpass_biquad``/``lowpass_biquad`` run, as (b, a)."""
    w0 = 2 * math.pi * freq / sr
    alpha, cos = math.sin(w0) / 2 / q, math.cos(w0)
    if kind == "high":
        b = [(1 + cos) / 2, -(1 + cos), (1 + cos) / 2]
    else:
        b = [(1 - cos) / 2, 1 - cos, (1 - cos) / 2]
    a = [1 + alpha, -2 * cos, 1 - alpha]
    return torch.tensor(b) / a[0], torch.tensor(a) / a[0]


def apply_response(x, h, nfft):
    """Filter (B, N) clips by complex responses ``h`` (B or 1, nfft//2+1) on a zero-padded grid."""
    n = x.shape[-1]
    return torch.fft.irfft(torch.fft.rfft(x, nfft) * h, nfft)[..., :n].to(x.dtype)


@register_augmentation("telephone")
class TelephoneBand(nn.Module):
    """300-3400 Hz band-pass: ``stages`` cascaded 2nd-order high-pass and low-pass biquads.

    Three stages give >= 20 dB at 100 Hz and 6 kHz (a single biquad gives ~10 dB at 6 kHz).
    ``exact=True`` runs torchaudio's biquads sample by sample (``lfilter``, ~1 s per
    128 clips on a CPU); the default multiplies by the same cascade's complex response
    on a zero-padded FFT grid, which matches it to rounding at a fraction of the cost.
    """

    def __init__(self, low: float = 300.0, high: float = 3400.0, stages: int = 3,
                 exact: bool = False, sample_rate: int = 16000):
        super().__init__()
        if not 0 < low < high < sample_rate / 2:
            raise ValueError(f"telephone: need 0 < low < high < {sample_rate / 2}, got {low}, {high}")
        self.low, self.high, self.stages, self.sr, self.exact = low, high, int(stages), sample_rate, exact
        self._cache: dict[int, torch.Tensor] = {}

    def response(self, n_freq):
        if n_freq not in self._cache:
            h = torch.ones(n_freq, dtype=torch.complex64)
            for kind, f in (("high", self.low), ("low", self.high)):
                b, a = pass_coeffs(kind, f, self.sr)
                h = h * biquad_response(b, a, n_freq) ** self.stages
            self._cache[n_freq] = h
        return self._cache[n_freq]

    def forward(self, x):
        if self.exact:
            y = x
            for _ in range(self.stages):
                y = AF.highpass_biquad(y, self.sr, self.low)
                y = AF.lowpass_biquad(y, self.sr, self.high)
            return y
        nfft = filter_fft_size(x.shape[-1])
        return apply_response(x, self.response(nfft // 2 + 1).to(x.device), nfft)


@register_augmentation("narrowband")
class Narrowband(nn.Module):
    """Round trip through a lower sample rate (8 kHz by default): loses everything above 4 kHz."""

    def __init__(self, rate: int = 8000, sample_rate: int = 16000):
        super().__init__()
        if not 0 < rate < sample_rate:
            raise ValueError(f"narrowband.rate: need 0 < rate < {sample_rate}, got {rate}")
        self.rate, self.sr = int(rate), sample_rate

    def forward(self, x):
        y = AF.resample(AF.resample(x, self.sr, self.rate), self.rate, self.sr)
        return y[..., :x.shape[-1]]


@register_augmentation("mu_law")
class MuLaw(nn.Module):
    """Mu-law companding and quantisation (G.711-like at 8 bits)."""

    def __init__(self, bits: int = 8):
        super().__init__()
        if not 2 <= bits <= 16:
            raise ValueError(f"mu_law.bits: need 2..16, got {bits}")
        self.channels = 2 ** int(bits)

    def forward(self, x):
        peak = x.abs().amax(-1, keepdim=True).clamp_min(1e-8)
        scale = torch.where(peak > 1, peak, torch.ones_like(peak))  # only rescale what would clip
        q = AF.mu_law_encoding(x / scale, self.channels)
        return AF.mu_law_decoding(q, self.channels) * scale


@register_augmentation("clipping")
class Clipping(nn.Module):
    """Hard clipping at a per-clip fraction ``level`` of the clip's peak (1 = none)."""

    def __init__(self, level=(0.1, 0.5)):
        super().__init__()
        self.level = _range("clipping.level", level, 0.01, 1.0)

    def forward(self, x):
        t = _per_clip(x, *self.level) * x.abs().amax(-1, keepdim=True)
        return torch.maximum(torch.minimum(x, t), -t)


@register_augmentation("bit_depth")
class BitDepth(nn.Module):
    """Requantise to ``bits`` (drawn per clip, integer) relative to full scale [-1, 1]."""

    def __init__(self, bits=(4, 8)):
        super().__init__()
        self.bits = _range("bit_depth.bits", bits, 1, 16)

    def forward(self, x):
        b = torch.randint(int(self.bits[0]), int(self.bits[1]) + 1, (x.shape[0], 1), device=x.device)
        steps = 2.0 ** (b - 1).to(x)
        return torch.round(x * steps) / steps


@register_augmentation("gain")
class Gain(nn.Module):
    """Per-clip gain in dB."""

    def __init__(self, db=(-12.0, 12.0)):
        super().__init__()
        self.db = _range("gain.db", db, -60.0, 40.0)

    def forward(self, x):
        return x * 10 ** (_per_clip(x, *self.db) / 20)


def peaking_coeffs(freq, gain_db, q, sr):
    """RBJ-cookbook peaking-EQ biquads for tensors of parameters: (..., 3) b and a."""
    a = 10 ** (gain_db / 40)
    w0 = 2 * math.pi * freq / sr
    alpha = torch.sin(w0) / (2 * q)
    cos = torch.cos(w0)
    b = torch.stack([1 + alpha * a, -2 * cos, 1 - alpha * a], -1)
    den = torch.stack([1 + alpha / a, -2 * cos, 1 - alpha / a], -1)
    return b / den[..., :1], den / den[..., :1]


@functools.lru_cache(maxsize=8)
def _trig_grid(n_freq: int):
    w = torch.linspace(0, math.pi, n_freq)
    return torch.cos(w), torch.sin(w), torch.cos(2 * w), torch.sin(2 * w)


def biquad_response(b, a, n_freq):
    """Complex frequency response of biquads (..., 3) on an rfft grid of ``n_freq`` bins.

    Written with real cosines and sines of a cached grid: the same numbers as
    evaluating the polynomials at z = e^{-jw}, several times cheaper.
    """
    c1, s1, c2, s2 = (t.to(b.device) for t in _trig_grid(n_freq))

    def poly(p):
        p0, p1, p2 = (p[..., i:i + 1] for i in range(3))
        return torch.complex(p0 + p1 * c1 + p2 * c2, -(p1 * s1 + p2 * s2))
    return poly(b.float()) / poly(a.float())


def filter_fft_size(n: int, tail: int = 2048) -> int:
    """FFT length for IIR filtering of N samples by multiplication: room for the filter's
    tail (the biquads used here decay by > 60 dB within ``tail`` samples at 16 kHz)."""
    from kws_okd.augment.room import fast_fft_size
    return fast_fft_size(n + tail)


def biquad_power(b, a, n_freq):
    """|H|^2 of biquads (..., 3) on an rfft grid: a real cosine series, no complex math."""
    c1, _, c2, _ = (t.to(b.device) for t in _trig_grid(n_freq))

    def power(p):
        p0, p1, p2 = (p[..., i:i + 1] for i in range(3))
        # Rounding can push a deep notch a hair below zero; a power is never negative.
        out = (p0 * p0 + p1 * p1 + p2 * p2) + 2 * (p0 * p1 + p1 * p2) * c1 + 2 * p0 * p2 * c2
        return out.clamp_min(1e-12)
    return power(b.float()) / power(a.float())


@register_augmentation("mic_eq")
class MicEQ(nn.Module):
    """Random microphone colouring: ``bands`` peaking biquads per clip, each with its own
    centre (log-uniform in ``freq``), gain (``gain_db``) and ``q``.

    The cascade's magnitude response is applied with zero phase in one batched FFT
    multiply, so every clip gets its own filters without a per-clip loop. A microphone's
    colouring is its magnitude response; dropping the biquads' mild phase halves the cost.
    """

    def __init__(self, bands: int = 3, freq=(100.0, 6000.0), gain_db=(-12.0, 12.0), q=(0.5, 4.0),
                 sample_rate: int = 16000):
        super().__init__()
        self.bands, self.sr = int(bands), sample_rate
        self.freq = _range("mic_eq.freq", freq, 20.0, sample_rate / 2 - 100)
        self.gain_db = _range("mic_eq.gain_db", gain_db, -40.0, 40.0)
        self.q = _range("mic_eq.q", q, 0.1, 20.0)

    def forward(self, x):
        bsz, n = x.shape[0], x.shape[-1]
        shape = (bsz, self.bands)
        lf = torch.empty(shape, device=x.device).uniform_(math.log(self.freq[0]), math.log(self.freq[1]))
        g = torch.empty(shape, device=x.device).uniform_(*self.gain_db)
        q = torch.empty(shape, device=x.device).uniform_(*self.q)
        b, a = peaking_coeffs(lf.exp(), g, q, self.sr)
        nfft = filter_fft_size(n)
        mag = biquad_power(b, a, nfft // 2 + 1).prod(1).sqrt()  # (B, F)
        return apply_response(x, mag, nfft)


# ---------------------------------------------------------------- codecs (ffmpeg)

CODECS = {
    # name: (encoder, container, sample rate, default bitrate or None)
    "gsm": ("libgsm", "gsm", 8000, None),
    "amr_nb": ("libopencore_amrnb", "amr", 8000, "12.2k"),
    "opus": ("libopus", "ogg", 16000, "12k"),
    "mp3": ("libmp3lame", "mp3", 16000, "24k"),
}


@functools.lru_cache(maxsize=1)
def ffmpeg_encoders() -> frozenset:
    """Encoder names this ffmpeg offers (probed once per process)."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        return frozenset()
    out = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and len(parts[0]) == 6 and parts[0][0] in "AVS":
            names.add(parts[1])
    return frozenset(names)


def codec_available(codec: str) -> bool:
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; known: {sorted(CODECS)}")
    return CODECS[codec][0] in ffmpeg_encoders()


def _ffmpeg(args, what, data: bytes | None = None):
    r = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args],
                       input=data, capture_output=True)
    if r.returncode != 0:
        raise RuntimeError(f"ffmpeg {what} failed: {r.stderr.decode(errors='replace').strip()[-500:]}")
    return r.stdout


def _delay(ref: np.ndarray, y: np.ndarray, max_lag: int) -> int:
    """Lag of ``y`` behind ``ref`` (cross-correlation peak within +-max_lag samples)."""
    n = len(ref) + len(y)
    nfft = 1 << (n - 1).bit_length()
    c = np.fft.irfft(np.fft.rfft(y, nfft) * np.conj(np.fft.rfft(ref, nfft)), nfft)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    vals = np.concatenate([c[:max_lag + 1], c[-max_lag:]])
    return int(lags[int(np.argmax(vals))])


def codec_roundtrip(x: torch.Tensor, codec: str, bitrate: str | None = None,
                    sample_rate: int = 16000, gap: int = 4000) -> torch.Tensor:
    """Encode and decode a batch through ffmpeg in one pass.

    Clips are laid end to end with ``gap`` samples of silence between them (so codec
    frames never straddle two clips), the decoded stream is re-aligned by
    cross-correlation (encoders add a priming delay), then cut back into clips.
    """
    if not codec_available(codec):
        raise ConfigError(f"codec {codec!r}: this ffmpeg has no {CODECS[codec][0]} encoder")
    enc, fmt, rate, default_br = CODECS[codec]
    bitrate = bitrate or default_br
    b, n = x.shape
    xs = x.detach().cpu().numpy().astype(np.float32)
    peak = max(1.0, float(np.abs(xs).max()))
    stride = n + gap
    stream = np.zeros(b * stride + gap, dtype=np.float32)
    stream[gap:].reshape(b, stride)[:, :n] = xs / peak
    with tempfile.TemporaryDirectory(prefix="kws_codec_") as tmp:
        coded = Path(tmp) / f"coded.{fmt}"  # a real file: MP3/Ogg headers need a seekable output
        args = ["-f", "f32le", "-ar", str(sample_rate), "-ac", "1", "-i", "pipe:0",
                "-c:a", enc, "-ar", str(rate), "-ac", "1", "-bitexact"]
        if bitrate:
            args += ["-b:a", bitrate]
        _ffmpeg([*args, str(coded)], f"{codec} encode", stream.tobytes())
        raw = _ffmpeg(["-i", str(coded), "-f", "f32le", "-ar", str(sample_rate), "-ac", "1",
                       "pipe:1"], f"{codec} decode")
    y = np.frombuffer(raw, dtype=np.float32)
    lag = _delay(stream, y[:len(stream) + 4000], max_lag=min(gap // 2, 3000))
    y = y[lag:] if lag >= 0 else np.concatenate([np.zeros(-lag, np.float32), y])
    y = np.pad(y, (0, max(0, len(stream) - len(y))))[:len(stream)]
    out = y[gap:].reshape(b, stride)[:, :n] * peak
    return torch.from_numpy(out).to(x)


@register_augmentation("codec")
class Codec(nn.Module):
    """Encode/decode through an ffmpeg codec (gsm, amr_nb, opus, mp3). Offline use only."""

    def __init__(self, codec: str = "gsm", bitrate: str | None = None, sample_rate: int = 16000):
        super().__init__()
        if codec not in CODECS:
            raise ValueError(f"codec.codec: unknown codec {codec!r}; known: {sorted(CODECS)}")
        if not codec_available(codec):
            raise ConfigError(f"codec.codec: this ffmpeg has no {CODECS[codec][0]} encoder for {codec!r}")
        self.codec, self.bitrate, self.sr = codec, bitrate, sample_rate

    def forward(self, x):
        return codec_roundtrip(x, self.codec, self.bitrate, self.sr)
