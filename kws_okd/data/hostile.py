"""A generator of hostile audio files, and what kws-okd does with each.

Used by the tests and by ``tools/hostile_inputs.py`` to show, for every kind of bad
input, that it is either converted with a warning or refused with an error naming
the file - never a crash deep inside training, never a silent NaN.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000

# name -> (what we do with it, the text the warning or error contains)
EXPECTED = {
    "truncated_header.wav": ("refused", "cannot decode"),
    "zero_length.wav": ("refused", "empty"),
    "no_samples.wav": ("refused", "no samples"),
    "nan.wav": ("refused", "NaN or Inf"),
    "inf.wav": ("refused", "NaN or Inf"),
    "pcm_u8.wav": ("read", ""),
    "pcm_24.wav": ("read", ""),
    "float64.wav": ("read", ""),
    "rate_48k.wav": ("converted", "resampled to 16000 Hz"),
    "six_channels.wav": ("converted", "averaged to mono"),
    "ten_minutes.wav": ("converted", "cropped"),
    "not_audio.wav": ("refused", "cannot decode"),
}


def _tone(seconds=1.0, sr=SR, channels=1):
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 440 * t)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def make_hostile_files(folder) -> dict[str, Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / name for name in EXPECTED}
    sf.write(str(paths["pcm_24.wav"]), _tone(), SR, subtype="PCM_24")
    head = paths["pcm_24.wav"].read_bytes()[:30]
    paths["truncated_header.wav"].write_bytes(head)
    paths["zero_length.wav"].write_bytes(b"")
    sf.write(str(paths["no_samples.wav"]), np.zeros(0), SR, subtype="PCM_16")
    x = _tone()
    x[100] = np.nan
    sf.write(str(paths["nan.wav"]), x, SR, subtype="FLOAT")
    x = _tone()
    x[200] = np.inf
    sf.write(str(paths["inf.wav"]), x, SR, subtype="DOUBLE")
    sf.write(str(paths["pcm_u8.wav"]), _tone(), SR, subtype="PCM_U8")
    sf.write(str(paths["float64.wav"]), _tone(), SR, subtype="DOUBLE")
    sf.write(str(paths["rate_48k.wav"]), _tone(sr=48000), 48000, subtype="PCM_16")
    sf.write(str(paths["six_channels.wav"]), _tone(channels=6), SR, subtype="PCM_16")
    sf.write(str(paths["ten_minutes.wav"]), _tone(seconds=600), SR, subtype="PCM_16")
    paths["not_audio.wav"].write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 8)
    return paths
