import numpy as np
import pytest
from scipy.linalg import solve_toeplitz
from scipy.signal import lfilter

from kws_okd.data.perturb import (pitch_shift, random_speaker_perturbation, speed, tempo,
                                  vocal_tract, vtlp_warp)

SR = 16000


def tone(freq, seconds=1.0, amp=0.3):
    t = np.arange(int(SR * seconds)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(y):
    n = 1 << 18
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y)), n=n))
    return np.argmax(spec) * SR / n


def resonator(x, centre, bandwidth=80.0):
    r = np.exp(-np.pi * bandwidth / SR)
    theta = 2 * np.pi * centre / SR
    return lfilter([1.0], [1.0, -2 * r * np.cos(theta), r * r], x)


def vowel(f0=120.0, formant=1000.0, seconds=1.0):
    """A pulse train at f0 through one resonance: a one-formant 'vowel'."""
    n = int(SR * seconds)
    x = np.zeros(n)
    x[(np.arange(0, seconds, 1 / f0) * SR).astype(int)] = 1.0
    y = resonator(x, formant)
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


def noise_formant(formant=1000.0, seconds=1.0, seed=0):
    y = resonator(np.random.default_rng(seed).standard_normal(int(SR * seconds)), formant)
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


def formant_hz(y):
    """The resonance of a one-formant signal: the pole of a 2nd-order LPC fit."""
    y = np.asarray(y, dtype=np.float64)
    r = np.array([y @ y, y[1:] @ y[:-1], y[2:] @ y[:-2]])
    a = solve_toeplitz(r[:2], r[1:3])
    poles = np.roots([1.0, -a[0], -a[1]])
    return float(np.abs(np.angle(poles[0]))) * SR / (2 * np.pi)


def f0_hz(y, fmin=60, fmax=500):
    y = y - y.mean()
    ac = np.fft.irfft(np.abs(np.fft.rfft(y, 2 * len(y))) ** 2)[:len(y)]
    lo, hi = int(SR / fmax), int(SR / fmin)
    return SR / (lo + np.argmax(ac[lo:hi]))


def assert_well_formed(y, x):
    assert y.dtype == np.float32 and y.ndim == 1
    assert np.isfinite(y).all()
    assert np.abs(y).max() <= 1.0
    rms_x, rms_y = np.sqrt(np.mean(x ** 2)), np.sqrt(np.mean(y ** 2))
    assert 0.5 * rms_x < rms_y < 2 * rms_x


@pytest.mark.parametrize("factor", [1.1, 0.9])
def test_speed_changes_length_and_frequency_together(factor):
    x = tone(440.0)
    y = speed(x, factor)
    assert abs(len(y) - len(x) / factor) <= 2
    assert peak_hz(y) == pytest.approx(440.0 * factor, rel=0.01)
    assert_well_formed(y, x)


@pytest.mark.parametrize("factor", [1.15, 0.85])
def test_tempo_changes_length_only(factor):
    x = tone(300.0)
    y = tempo(x, factor)
    assert len(y) == round(len(x) / factor)
    assert peak_hz(y) == pytest.approx(300.0, rel=0.01)
    assert_well_formed(y, x)


def test_tempo_keeps_a_voice_pitch_and_formant():
    x = vowel(f0=120.0, formant=1000.0)
    y = tempo(x, 0.85)
    assert f0_hz(y) == pytest.approx(120.0, rel=0.03)
    assert formant_hz(y) == pytest.approx(formant_hz(x), rel=0.06)


@pytest.mark.parametrize("semitones", [12, -3, 3])
def test_pitch_shift_moves_a_tone_at_the_same_length(semitones):
    x = tone(200.0)
    y = pitch_shift(x, SR, semitones)
    assert len(y) == len(x)
    assert peak_hz(y) == pytest.approx(200.0 * 2 ** (semitones / 12), rel=0.02)
    assert_well_formed(y, x)


def test_pitch_shift_keeps_the_formant_where_plain_speed_moves_it():
    x = vowel(f0=120.0, formant=1000.0)
    y = pitch_shift(x, SR, 3)
    assert f0_hz(y) == pytest.approx(120.0 * 2 ** 0.25, rel=0.03)
    assert formant_hz(y) == pytest.approx(formant_hz(x), rel=0.08)
    moved = speed(x, 2 ** 0.25)  # for contrast: resampling moves the formant too
    assert formant_hz(moved) == pytest.approx(formant_hz(x) * 2 ** 0.25, rel=0.08)


@pytest.mark.parametrize("method", ["envelope", "spectrum"])
@pytest.mark.parametrize("alpha", [1.1, 0.9])
def test_vocal_tract_moves_a_formant_by_alpha(method, alpha):
    x = noise_formant(1000.0)
    y = vocal_tract(x, SR, alpha, method=method)
    assert len(y) == len(x)
    assert formant_hz(y) == pytest.approx(formant_hz(x) * alpha, rel=0.05)
    assert_well_formed(y, x)


def test_vocal_tract_keeps_pitch():
    x = vowel(f0=150.0, formant=1200.0)
    y = vocal_tract(x, SR, 1.12)
    assert f0_hz(y) == pytest.approx(150.0, rel=0.03)
    assert formant_hz(y) == pytest.approx(formant_hz(x) * 1.12, rel=0.08)


def test_vtlp_warp_is_alpha_below_the_knee_and_fixes_nyquist():
    f = np.array([0.0, 1000.0, 3000.0, SR / 2])
    w = vtlp_warp(f, 1.1, SR)
    assert w[:3] == pytest.approx(f[:3] * 1.1)
    assert w[3] == pytest.approx(SR / 2)
    assert np.all(np.diff(vtlp_warp(np.linspace(0, SR / 2, 200), 0.9, SR)) > 0)


def test_loud_input_is_never_clipped_and_silence_stays_finite():
    x = np.clip(tone(250.0, amp=1.0) * 1.5, -0.999, 0.999)  # a square-ish, full-scale signal
    for y in (speed(x, 0.9), tempo(x, 1.1), pitch_shift(x, SR, 3), vocal_tract(x, SR, 0.88),
              random_speaker_perturbation(x, SR, np.random.default_rng(0))[0]):
        assert np.isfinite(y).all() and np.abs(y).max() <= 1.0
    z = np.zeros(SR, dtype=np.float32)
    for y in (speed(z, 1.1), tempo(z, 0.9), pitch_shift(z, SR, -2), vocal_tract(z, SR, 1.1),
              random_speaker_perturbation(z, SR, np.random.default_rng(0))[0]):
        assert np.isfinite(y).all() and not y.any()


def test_random_perturbation_is_seeded_and_reports_its_params():
    x = vowel()
    y1, p1 = random_speaker_perturbation(x, SR, np.random.default_rng(7))
    y2, p2 = random_speaker_perturbation(x, SR, np.random.default_rng(7))
    y3, p3 = random_speaker_perturbation(x, SR, np.random.default_rng(8))
    assert p1 == p2 and np.array_equal(y1, y2)
    assert p1 != p3 and not (len(y1) == len(y3) and np.array_equal(y1, y3))
    assert set(p1) == {"speed", "semitones", "alpha", "tempo"}
    assert abs(len(y1) - len(x) / (p1["speed"] * p1["tempo"])) <= 2
    assert_well_formed(y1, x)


def test_random_perturbation_ranges_and_strength():
    rng = np.random.default_rng(0)
    x = vowel(seconds=0.3)
    draws = [random_speaker_perturbation(x, SR, rng)[1] for _ in range(200)]
    for key, lo, hi in (("speed", 0.9, 1.1), ("semitones", -3, 3), ("alpha", 0.88, 1.12),
                        ("tempo", 0.85, 1.15)):
        vals = [d[key] for d in draws]
        assert lo <= min(vals) and max(vals) <= hi
        assert max(vals) - min(vals) > 0.8 * (hi - lo)  # the whole range is used
    half = [random_speaker_perturbation(x, SR, rng, strength=0.5)[1]["semitones"] for _ in range(50)]
    assert max(abs(v) for v in half) <= 1.5
    y, p = random_speaker_perturbation(x, SR, np.random.default_rng(1), strength=0.0)
    assert p == {"speed": 1.0, "semitones": 0.0, "alpha": 1.0, "tempo": 1.0}
    assert np.allclose(y, x, atol=1e-6)


def test_bad_arguments_are_refused():
    x = tone(200.0)
    with pytest.raises(ValueError):
        speed(x, 0)
    with pytest.raises(ValueError):
        tempo(x, -1)
    with pytest.raises(ValueError):
        vocal_tract(x, SR, 1.1, method="nope")
    with pytest.raises(ValueError):
        speed(np.zeros((2, 100)), 1.1)
