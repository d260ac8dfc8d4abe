"""Per-clip speaker perturbation: cheap numpy transforms that make one voice sound like many.

Four independent axes of a speaker, each a pure function of the waveform:

* :func:`speed` -- resampling, so pitch, tempo and formants move together
  (the speed perturbation of Ko et al., 2015);
* :func:`tempo` -- duration only, by WSOLA (waveform-similarity overlap-add);
* :func:`pitch_shift` -- pitch only: WSOLA + resampling, then the spectral
  envelope is warped back so the formants stay where they were;
* :func:`vocal_tract` -- formants only: vocal-tract-length perturbation (VTLP,
  Jaitly & Hinton 2013), the piecewise-linear frequency warp applied to the STFT
  magnitude with the phase kept -- by default to its cepstral envelope only, so
  the harmonics (the pitch) stay put.

:func:`random_speaker_perturbation` draws one combination from a seeded rng and
returns the parameters it used. Every function returns float32 with the input's
rms, no NaN and no sample above 1 in magnitude; a 1 s clip at 16 kHz takes a
few milliseconds.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly

_EPS = 1e-10


def _finish(y: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """float32, finite, the rms of ``ref``, and peak at most 1."""
    y = np.nan_to_num(np.asarray(y, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    ref_rms = float(np.sqrt(np.mean(np.square(ref, dtype=np.float64)))) if len(ref) else 0.0
    rms = float(np.sqrt(np.mean(y * y))) if len(y) else 0.0
    if rms > _EPS and ref_rms > 0:
        y = y * (ref_rms / rms)
    peak = float(np.abs(y).max()) if len(y) else 0.0
    if peak > 1.0:
        y = y / peak
    return y.astype(np.float32)


def _as_signal(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected a mono waveform (1-D), got shape {x.shape}")
    return x


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    return y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)))


# --------------------------------------------------------------------- speed
def _resample_by(x: np.ndarray, factor: float) -> np.ndarray:
    """Play ``x`` ``factor`` times faster: length / factor, every frequency * factor."""
    ratio = Fraction(1.0 / factor).limit_denominator(200)
    if ratio == 1:
        return x.astype(np.float64)
    return resample_poly(x.astype(np.float64), ratio.numerator, ratio.denominator)


def speed(x, factor: float) -> np.ndarray:
    """Speed perturbation: resample so the clip plays ``factor`` times faster.

    Duration becomes ``len(x) / factor``; pitch and formants are multiplied by
    ``factor`` (a tape sped up). ``factor`` is realised as a fraction with a
    denominator of at most 200, i.e. to within about 0.5 %.
    """
    x = _as_signal(x)
    if factor <= 0:
        raise ValueError(f"speed factor must be positive, got {factor}")
    return _finish(_resample_by(x, factor), x)


# --------------------------------------------------------------------- tempo
def _wsola(x: np.ndarray, factor: float, sr: int) -> np.ndarray:
    """WSOLA time-scale modification: length ``len(x) / factor``, pitch unchanged."""
    n_out = max(1, int(round(len(x) / factor)))
    if abs(factor - 1.0) < 1e-6 or len(x) == 0:
        return _fit(x.astype(np.float64), n_out)
    frame = max(16, int(0.02 * sr)) // 2 * 2  # 20 ms
    hs = frame // 2  # synthesis hop; a periodic Hann at 50 % overlap sums to one
    tol = hs // 2  # +-5 ms search for the best-matching frame
    ha = hs * factor  # analysis hop
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(frame) / frame)
    n_frames = n_out // hs + 2
    lead = tol + hs  # the first frame starts half a frame before the signal
    tail = int(n_frames * ha) + frame + 2 * tol + hs + 1
    xp = np.concatenate([np.zeros(lead), x.astype(np.float64), np.zeros(max(0, tail - len(x)))])
    y = np.zeros(n_frames * hs + frame)
    wsum = np.zeros_like(y)
    delta = 0
    for k in range(n_frames):
        a = int(round(k * ha)) + tol + delta  # start of this analysis frame in xp
        y[k * hs:k * hs + frame] += win * xp[a:a + frame]
        wsum[k * hs:k * hs + frame] += win
        # Next frame: the candidate around the nominal position most like the
        # natural continuation of the frame just used.
        nat = xp[a + hs:a + hs + frame]
        b = int(round((k + 1) * ha)) + tol
        region = xp[b - tol:b + tol + frame]
        if not nat.any() or not region.any():
            delta = 0
            continue
        corr = np.correlate(region, nat * win, mode="valid")
        delta = int(np.argmax(corr)) - tol
    y = y / np.maximum(wsum, 1e-3)
    return _fit(y[hs:], n_out)


def tempo(x, factor: float, sr: int = 16000) -> np.ndarray:
    """Change duration only: length ``len(x) / factor``, pitch and formants kept (WSOLA)."""
    x = _as_signal(x)
    if factor <= 0:
        raise ValueError(f"tempo factor must be positive, got {factor}")
    return _finish(_wsola(x, factor, sr), x)


# --------------------------------------------------------------- spectral tools
def _nfft(sr: int) -> int:
    return 512 if sr <= 24000 else 1024


def _stft(x: np.ndarray, n_fft: int):
    hop = n_fft // 4
    pad = n_fft // 2
    n = len(x)
    n_frames = int(np.ceil((n + 2 * pad - n_fft) / hop)) + 1
    total = (n_frames - 1) * hop + n_fft
    xp = np.pad(x.astype(np.float64), (pad, total - n - pad))
    win = np.hanning(n_fft + 1)[:-1]
    frames = np.lib.stride_tricks.sliding_window_view(xp, n_fft)[::hop][:n_frames]
    return np.fft.rfft(frames * win, axis=1), win, hop, pad, total


def _istft(spec, win, hop, pad, total, n):
    frames = np.fft.irfft(spec, n=len(win), axis=1) * win
    y = np.zeros(total)
    wsum = np.zeros(total)
    w2 = win * win
    for i, f in enumerate(frames):  # ~130 frames for 1 s: cheap
        y[i * hop:i * hop + len(win)] += f
        wsum[i * hop:i * hop + len(win)] += w2
    y = y / np.maximum(wsum, 1e-3 * wsum.max())
    return y[pad:pad + n]


def _envelope(mag: np.ndarray, sr: int, n_fft: int) -> np.ndarray:
    """Spectral envelope per frame by cepstral liftering: quefrencies under 2 ms,
    so the harmonics of an f0 up to ~450 Hz stay out of it."""
    cep = np.fft.irfft(np.log(mag + 1e-8), n=n_fft, axis=1)
    cut = max(4, int(0.002 * sr))
    cep[:, cut:n_fft - cut + 1] = 0.0
    return np.exp(np.fft.rfft(cep, axis=1).real)


def _sample_along_bins(a: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Linear interpolation of every row of ``a`` at fractional bin positions ``pos``."""
    pos = np.clip(pos, 0, a.shape[1] - 1)
    i0 = np.floor(pos).astype(int)
    i1 = np.minimum(i0 + 1, a.shape[1] - 1)
    w = pos - i0
    return a[:, i0] * (1 - w) + a[:, i1] * w


def vtlp_warp(freqs, alpha: float, sr: int, f_hi: float | None = None) -> np.ndarray:
    """The VTLP piecewise-linear warp: ``f -> alpha f`` up to a boundary, then a
    line to Nyquist, so the axis still maps [0, sr/2] onto itself."""
    nyq = sr / 2
    f_hi = 0.3 * sr if f_hi is None else f_hi  # 4.8 kHz at 16 kHz
    freqs = np.asarray(freqs, dtype=np.float64)
    knee = f_hi * min(alpha, 1.0) / alpha
    upper = nyq - (nyq - f_hi * min(alpha, 1.0)) / (nyq - knee) * (nyq - freqs)
    return np.where(freqs <= knee, freqs * alpha, upper)


def _source_bins(alpha: float, sr: int, n_fft: int) -> np.ndarray:
    """For every output bin, the (fractional) input bin that the warp sends there."""
    bins = np.arange(n_fft // 2 + 1, dtype=np.float64)
    hz = bins * sr / n_fft
    warped = vtlp_warp(hz, alpha, sr)  # monotonic: invert by interpolation
    return np.interp(hz, warped, hz) * n_fft / sr


def _reshape_envelope(y: np.ndarray, sr: int, src_bins: np.ndarray) -> np.ndarray:
    """Move ``y``'s spectral envelope so that output bin k gets the envelope found at
    ``src_bins[k]``; harmonics (pitch) and phase stay where they are."""
    n_fft = _nfft(sr)
    spec, win, hop, pad, total = _stft(y, n_fft)
    mag = np.abs(spec)
    env = _envelope(mag, sr, n_fft)
    gain = _sample_along_bins(env, src_bins) / np.maximum(env, _EPS)
    new = spec * np.clip(gain, 0.1, 10.0)  # at most +-20 dB
    # Redistribute each frame's energy across frequency, never change its loudness:
    # otherwise a sound far from any formant (a pure tone) would be lost under the
    # transients the gains leave untouched.
    before = np.sum(np.abs(spec) ** 2, axis=1, keepdims=True)
    after = np.sum(np.abs(new) ** 2, axis=1, keepdims=True)
    new = new * np.sqrt(before / np.maximum(after, _EPS))
    return _istft(new, win, hop, pad, total, len(y))


# ------------------------------------------------------------------- pitch / VTL
def pitch_shift(x, sr: int, semitones: float) -> np.ndarray:
    """Shift pitch by ``semitones`` at the same length, formants (roughly) kept.

    WSOLA stretches by the pitch ratio r, resampling by r restores the length and
    moves every frequency by r, and a cepstral-envelope correction moves the
    formants back by 1/r.
    """
    x = _as_signal(x)
    if semitones == 0:
        return _finish(x, x)
    return _finish(_transform(x, sr, semitones=semitones), x)


def vocal_tract(x, sr: int, alpha: float, method: str = "envelope") -> np.ndarray:
    """Vocal-tract-length perturbation: warp the frequency axis by ``alpha`` (~0.85-1.15).

    ``method="spectrum"`` is VTLP as published: the STFT magnitude itself is
    resampled along the VTLP warp and the original phase kept. It moves a formant
    by exactly ``alpha``, but at higher f0, where harmonics are resolved, it also
    drags the pitch (a 220 Hz vowel comes out at ~246 Hz for alpha 1.12) and
    loses periodicity (autocorrelation peak 0.97 -> 0.71). ``"envelope"``
    (default) multiplies the spectrum by the ratio of the warped to the original
    cepstral envelope (2 ms lifter), so the formants move by about ``alpha``
    (80-100 % of the shift for narrow formants) while the harmonics, the pitch
    and the periodicity stay as they were.
    """
    x = _as_signal(x)
    if alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    if alpha == 1.0:
        return _finish(x, x)
    if method == "envelope":
        y = _reshape_envelope(x.astype(np.float64), sr, _source_bins(alpha, sr, _nfft(sr)))
    elif method == "spectrum":
        n_fft = _nfft(sr)
        spec, win, hop, pad, total = _stft(x, n_fft)
        mag = _sample_along_bins(np.abs(spec), _source_bins(alpha, sr, n_fft))
        y = _istft(mag * np.exp(1j * np.angle(spec)), win, hop, pad, total, len(x))
    else:
        raise ValueError(f"unknown method {method!r}; use 'envelope' or 'spectrum'")
    return _finish(y, x)


def _transform(x: np.ndarray, sr: int, speed: float = 1.0, semitones: float = 0.0,
               alpha: float = 1.0, tempo: float = 1.0) -> np.ndarray:
    """All four axes in one WSOLA, one resampling and one envelope warp.

    Final length ``len(x) / (speed * tempo)``; pitch * ``speed * 2**(semitones/12)``;
    formants * ``speed`` then VTLP-warped by ``alpha``.
    """
    r = 2.0 ** (semitones / 12.0)
    n_out = max(1, int(round(len(x) / (speed * tempo))))
    y = x.astype(np.float64)
    # Stretch by 1/(tempo/r) so that resampling by speed*r lands on n_out samples.
    stretch = tempo / r
    if abs(stretch - 1.0) > 1e-6:
        y = _wsola(y, stretch, sr)
    if abs(speed * r - 1.0) > 1e-6:
        y = _resample_by(y, speed * r)
    y = _fit(y, n_out)
    if abs(r - 1.0) > 1e-6 or abs(alpha - 1.0) > 1e-6:
        # The resampling moved the envelope by speed*r; we want speed, then VTLP by alpha:
        # output bin k takes the envelope from VTLP^-1(k) * r.
        n_fft = _nfft(sr)
        src = _source_bins(alpha, sr, n_fft) * r
        y = _reshape_envelope(y, sr, src)
    return y


def random_speaker_perturbation(x, sr: int, rng: np.random.Generator, strength: float = 1.0):
    """Draw one speaker perturbation and apply it; returns ``(y, params)``.

    Ranges at ``strength=1``: speed 0.9-1.1, pitch +-3 semitones, VTLP alpha
    0.88-1.12, tempo 0.85-1.15 (each scaled towards identity by ``strength``).
    The same rng state gives the same output.
    """
    x = _as_signal(x)
    s = float(strength)
    params = {
        "speed": round(float(1.0 + s * rng.uniform(-0.10, 0.10)), 4),
        "semitones": round(float(s * rng.uniform(-3.0, 3.0)), 3),
        "alpha": round(float(1.0 + s * rng.uniform(-0.12, 0.12)), 4),
        "tempo": round(float(1.0 + s * rng.uniform(-0.15, 0.15)), 4),
    }
    return _finish(_transform(x, sr, **params), x), params
