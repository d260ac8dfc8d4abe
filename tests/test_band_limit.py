"""The band-limited channel heard by the student only (kws_okd/augment/band.py)."""
import math

import pytest
import torch

from kws_okd.augment.band import BandLimit, build_band_limit, butterworth_gain
from kws_okd.errors import ConfigError
from kws_okd.train.brain import what_each_hears
from tests.test_context import SR, train_with_spy


def tones(*freqs):
    t = torch.arange(SR) / SR
    return torch.stack([torch.sin(2 * math.pi * f * t) for f in freqs])


def power_ratio(out, x):
    mid = slice(2000, SR - 2000)            # away from the clip's edges
    return (out[:, mid].pow(2).mean(1) / x[:, mid].pow(2).mean(1)).tolist()


def test_butterworth_gain_by_hand():
    f = torch.tensor([[1000.0, 4000.0, 8000.0, 150.0, 300.0]])
    g = butterworth_gain(f, torch.tensor([[4000.0]]), torch.tensor([[300.0]]))[0]
    # |H| = 1 / sqrt(1 + (f/fc)^16) for the low-pass, 1 / sqrt(1 + (fc/f)^16) for the high-pass.
    lp = [1 / math.sqrt(1 + (x / 4000) ** 16) for x in (1000, 4000, 8000, 150, 300)]
    hp = [1 / math.sqrt(1 + (300 / x) ** 16) for x in (1000, 4000, 8000, 150, 300)]
    assert torch.allclose(g, torch.tensor([a * b for a, b in zip(lp, hp)]), rtol=1e-5)
    assert g[1] == pytest.approx(1 / math.sqrt(2) * hp[1], rel=1e-5)       # -3 dB at the cut-off
    # A high-pass cut-off of 0 passes everything.
    assert torch.allclose(butterworth_gain(f, torch.tensor([[8000.0]]), torch.tensor([[0.0]]))[0, :2],
                          torch.tensor([1.0, 1.0]), atol=1e-4)


def test_band_limit_passes_the_band_and_cuts_outside_it():
    torch.manual_seed(0)
    x = tones(1000, 6000, 4000, 100)
    out = BandLimit(p=1.0, low_pass=(4000, 4000), high_pass=(300, 300))(x)
    r = power_ratio(out, x)
    assert r[0] == pytest.approx(1.0, abs=1e-3)
    assert r[1] == pytest.approx(1 / (1 + 1.5 ** 16), rel=0.05)              # 6 kHz: -28 dB
    assert r[2] == pytest.approx(0.5, rel=0.01)                              # 4 kHz: -3 dB
    assert r[3] == pytest.approx(1 / (1 + 3 ** 16), rel=0.05)                # 100 Hz: -76 dB
    assert out.shape == x.shape and out.dtype == x.dtype


def test_band_limit_draws_clips_with_probability_p_and_leaves_the_others_alone():
    torch.manual_seed(1)
    x = torch.randn(400, 4000)
    out = BandLimit(p=0.5)(x)
    changed = (out != x).any(1)
    assert 150 < int(changed.sum()) < 250
    assert torch.equal(out[~changed], x[~changed])
    assert BandLimit(p=0.0)(x) is x


def test_band_limit_rejects_bad_settings_by_name():
    with pytest.raises(ConfigError, match="band_limit.p must be a probability"):
        BandLimit(p=1.5)
    with pytest.raises(ConfigError, match=r"band_limit.low_pass: need 1 <= min <= max <= 8000 Hz, got \[7000, 3000\]"):
        BandLimit(low_pass=(7000, 3000))
    with pytest.raises(ConfigError, match="band_limit.high_pass"):
        BandLimit(low_pass=(3400, 7000), high_pass=(0, 4000))
    with pytest.raises(ConfigError, match="band_limit.low_pass must be"):
        BandLimit(low_pass=5000)
    assert build_band_limit(None) is None and build_band_limit({"p": 0.0}) is None
    assert build_band_limit({"p": 0.5}, role="teacher") is None
    assert isinstance(build_band_limit({"p": 0.5, "low_pass": [3000, 3000]}), BandLimit)


def test_the_teacher_never_hears_the_band_limit():
    torch.manual_seed(0)
    wav, y = torch.randn(4, SR), torch.zeros(4, dtype=torch.long)
    heard, clean = what_each_hears(wav, y, None, None, BandLimit(p=1.0))
    assert clean is wav and not torch.equal(heard, wav)


def test_runs_with_a_band_limit_get_their_own_folders_and_every_batch_is_limited(tiny_corpus, tmp_path,
                                                                              monkeypatch):
    from kws_okd.train.config import band_tag, load_recipe
    assert band_tag(0) == "" and band_tag("0.5") == "+band0.5"
    assert load_recipe("student", ["band_limit.p=0.5"]).exp_dir.endswith("okd+context0.5+band0.5/seed0")
    pt = train_with_spy(monkeypatch, BandLimit, tiny_corpus, tmp_path, "context_speech.p=0", "band_limit.p=1.0")
    assert pt.parent.parent.name == "bcresnet2-erm+band1"
