import math

import numpy as np
import pytest
import torch

from kws_okd.augment import build_augmentation
from kws_okd.augment.channel import CODECS, TelephoneBand, _delay, codec_available, codec_roundtrip

SR = 16000


def tone(f, b=1, amp=0.3):
    t = torch.arange(SR) / SR
    return (amp * torch.sin(2 * math.pi * f * t)).repeat(b, 1)


def level_db(x, y):
    # Skip the filter's start-up transient.
    return 20 * math.log10(y[..., 4000:].pow(2).mean().sqrt() / x[..., 4000:].pow(2).mean().sqrt())


@pytest.mark.parametrize("exact", [False, True])
def test_telephone_band_rejects_100hz_and_6khz_passes_1khz(exact):
    band = TelephoneBand(exact=exact)
    assert level_db(tone(100), band(tone(100))) <= -20
    assert level_db(tone(6000), band(tone(6000))) <= -20
    assert abs(level_db(tone(1000), band(tone(1000)))) <= 1.0


def test_fft_telephone_matches_torchaudio_biquads():
    torch.manual_seed(0)
    x = torch.randn(4, SR) * 0.1
    fast, exact = TelephoneBand()(x), TelephoneBand(exact=True)(x)
    assert (fast - exact).pow(2).mean() / exact.pow(2).mean() < 1e-4


def test_narrowband_removes_content_above_4khz():
    nb = build_augmentation({"name": "narrowband", "rate": 8000})
    assert level_db(tone(5000), nb(tone(5000))) <= -30
    assert abs(level_db(tone(1000), nb(tone(1000)))) <= 0.5


def test_mu_law_8bit_is_close_but_quantised():
    x = tone(440)
    y = build_augmentation({"name": "mu_law", "bits": 8})(x)
    assert len(torch.unique(y)) <= 256
    err = 10 * math.log10(x.pow(2).mean() / (y - x).pow(2).mean())
    assert 25 < err < 60  # G.711-like signal-to-quantisation-noise


def test_clipping_bit_depth_gain_eq():
    torch.manual_seed(0)
    x = tone(440, b=8)
    y = build_augmentation({"name": "clipping", "level": [0.5, 0.5]})(x)
    assert torch.allclose(y.abs().amax(1), torch.full((8,), 0.15))
    y = build_augmentation({"name": "bit_depth", "bits": [3, 3]})(x)
    assert len(torch.unique(y)) <= 2 ** 3 + 1
    y = build_augmentation({"name": "gain", "db": [6, 6]})(x)
    assert torch.allclose(y, x * 10 ** 0.3, atol=1e-6)
    eq = build_augmentation({"name": "mic_eq", "bands": 4, "gain_db": [-12, 12]})
    noise = torch.randn(8, SR) * 0.1
    spec = torch.fft.rfft(eq(noise)).abs() / torch.fft.rfft(noise).abs()
    bands = spec[:, 100:7900].reshape(8, -1, 100).mean(-1)  # per-clip response in 100 Hz bands
    assert (20 * torch.log10(bands.amax(1) / bands.amin(1))).min() > 3  # coloured, differently per clip
    assert not torch.allclose(bands[0], bands[1], rtol=0.05)


def test_mic_eq_peak_has_the_requested_gain_at_its_centre():
    eq = build_augmentation({"name": "mic_eq", "bands": 1, "freq": [1000, 1000], "gain_db": [6, 6],
                             "q": [2, 2]})
    assert abs(level_db(tone(1000), eq(tone(1000))) - 6) < 0.3
    assert abs(level_db(tone(4000), eq(tone(4000)))) < 0.5  # far from the peak: untouched


def test_bad_channel_parameters():
    for cfg in ({"name": "clipping", "level": [0.5, 2.0]}, {"name": "bit_depth", "bits": [0, 8]},
                {"name": "telephone", "low": 4000, "high": 3000}, {"name": "codec", "codec": "flac"}):
        with pytest.raises(ValueError, match=cfg["name"]):
            build_augmentation(cfg)


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_codec_roundtrip_keeps_alignment_and_length(codec):
    if not codec_available(codec):
        pytest.skip(f"ffmpeg has no {CODECS[codec][0]} encoder")
    t = torch.arange(SR) / SR
    # Chirps: unlike pure tones their cross-correlation has one clear peak.
    x = torch.stack([0.3 * torch.sin(2 * math.pi * (f * t + 1200 * t ** 2)) * torch.hann_window(SR)
                     for f in (200, 300, 500)])
    y = codec_roundtrip(x, codec)
    assert y.shape == x.shape
    for a, b in zip(x.numpy(), y.numpy()):
        # Codecs may alter phase (Opus' SILK is not waveform-exact on pure tones), so check
        # alignment by the cross-correlation peak, and fidelity by the level.
        assert abs(_delay(a, b, 800)) <= 2
        assert abs(10 * np.log10((b ** 2).mean() / (a ** 2).mean())) < 3
    assert not torch.equal(y, x)
    assert torch.equal(codec_roundtrip(x, codec), y)  # deterministic
