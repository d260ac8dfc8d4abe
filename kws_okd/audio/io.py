"""Audio reading and writing with validation.

Reading converts what can be converted (sample rate, channels) with a warning,
and refuses what cannot (missing, empty, corrupt, NaN/Inf) with an
:class:`AudioError` naming the file.
"""
from __future__ import annotations

import warnings
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from kws_okd.errors import AudioError
from kws_okd.utils.atomic import atomic_path


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    if sr_in == sr_out:
        return x
    g = gcd(sr_in, sr_out)
    return resample_poly(x, sr_out // g, sr_in // g, axis=0).astype(np.float32)


def read_audio(path, sample_rate: int = 16000, warn: bool = True) -> np.ndarray:
    """Return a mono float32 waveform at ``sample_rate``."""
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "file does not exist")
    if path.stat().st_size == 0:
        raise AudioError(path, "file is empty (0 bytes)")
    try:
        x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises several types for broken files
        raise AudioError(path, f"cannot decode audio ({e})") from None
    if x.shape[0] == 0:
        raise AudioError(path, "audio has no samples")
    if not np.isfinite(x).all():
        raise AudioError(path, "audio contains NaN or Inf samples")
    if x.shape[1] > 1:
        if warn:
            warnings.warn(f"{path}: {x.shape[1]} channels, averaged to mono", stacklevel=2)
        x = x.mean(axis=1, keepdims=True)
    x = x[:, 0]
    if sr != sample_rate:
        if warn:
            warnings.warn(f"{path}: sample rate {sr} Hz, resampled to {sample_rate} Hz", stacklevel=2)
        x = resample(x, sr, sample_rate)
    return np.ascontiguousarray(x, dtype=np.float32)


def write_audio(path, x: np.ndarray, sample_rate: int = 16000) -> None:
    """Write 16-bit PCM WAV atomically."""
    x = np.asarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise AudioError(path, "refusing to write NaN or Inf samples")
    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.clip(x, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")


def fix_length(x: np.ndarray, n: int) -> np.ndarray:
    """Centre-crop or zero-pad to ``n`` samples (GSC clips are at most 1 s)."""
    if len(x) > n:
        start = (len(x) - n) // 2
        return x[start:start + n]
    if len(x) < n:
        pad = n - len(x)
        return np.pad(x, (pad // 2, pad - pad // 2))
    return x
