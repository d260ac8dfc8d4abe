import numpy as np
import pytest
import soundfile as sf
import torch

from kws_okd.augment import build_augmentation
from kws_okd.augment.noise import GENERATED, NoiseBank, generate, measured_snr, mix_at_snr
from kws_okd.errors import AudioError, DataError
from tests.conftest import make_gsc_fixture

SR = 16000


def _speech_like(b=32):
    t = torch.arange(SR) / SR
    env = torch.exp(-((t - 0.5) / 0.15) ** 2)
    return 0.3 * env * torch.sin(2 * torch.pi * 300 * t * (1 + torch.rand(b, 1)))


@pytest.mark.parametrize("kind", GENERATED)
def test_mixed_audio_hits_target_snr_within_half_a_db(kind):
    torch.manual_seed(0)
    x = _speech_like()
    snr = torch.linspace(-5, 30, x.shape[0])
    y = mix_at_snr(x, generate(kind, x.shape[0], SR), snr)
    assert (measured_snr(x, y) - snr).abs().max() < 0.5


def test_add_noise_draws_snr_in_range_and_uses_file_noise(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "musan" / "noise" / "a").mkdir(parents=True)
    sf.write(str(tmp_path / "musan" / "noise" / "a" / "n1.wav"), 0.1 * rng.standard_normal(24000), SR)
    # A clip shorter than one second is tiled.
    sf.write(str(tmp_path / "musan" / "noise" / "n2.wav"), 0.1 * rng.standard_normal(5000), SR)
    aug = build_augmentation({"name": "add_noise", "min_snr": 5, "max_snr": 15, "types": [],
                              "noise_dirs": [str(tmp_path / "musan")]})
    assert len(aug.files) == 2  # found recursively
    torch.manual_seed(0)
    x = _speech_like(64)
    s = measured_snr(x, aug(x))
    assert s.min() > 4.5 and s.max() < 15.5 and s.std() > 1


def test_babble_sums_several_talkers(tmp_path):
    for i in range(4):
        t = np.arange(SR) / SR
        sf.write(str(tmp_path / f"s{i}.wav"), 0.3 * np.sin(2 * np.pi * (200 + 100 * i) * t), SR)
    aug = build_augmentation({"name": "add_noise", "min_snr": 0, "max_snr": 0, "types": ["babble"],
                              "babble_dirs": [str(tmp_path)], "talkers": [3, 3]})
    torch.manual_seed(0)
    x = _speech_like(4)
    noise = aug(x) - x
    spec = torch.fft.rfft(noise[0]).abs()
    peaks = (spec > 0.2 * spec.max()).nonzero().flatten()
    assert len({int(p) // 100 for p in peaks}) >= 2  # several voices present at once


def test_background_noise_folder_of_a_corpus(tmp_path):
    root = make_gsc_fixture(tmp_path / "gsc", ["yes", "no"])
    aug = build_augmentation({"name": "add_noise", "types": ["white"],
                              "noise_dirs": [str(root / "_background_noise_")]})
    assert len(aug.files) == 1 and aug.types == ["white", "files"]
    y = aug(_speech_like(8))
    assert torch.isfinite(y).all()


def test_zero_energy_noise_clip_is_an_error_naming_the_file(tmp_path):
    sf.write(str(tmp_path / "ok.wav"), 0.1 * np.ones(SR), SR)
    sf.write(str(tmp_path / "silent.wav"), np.zeros(SR), SR)
    with pytest.raises(AudioError, match="silent.wav.*zero energy"):
        NoiseBank.from_folders([tmp_path])


@pytest.mark.parametrize("lo,hi", [(-30, 10), (0, 70), (20, 10)])
def test_snr_out_of_range_is_a_value_error_naming_the_parameter(lo, hi):
    with pytest.raises(ValueError, match="min_snr/max_snr"):
        build_augmentation({"name": "add_noise", "min_snr": lo, "max_snr": hi})


def test_missing_noise_folder_and_bad_types(tmp_path):
    with pytest.raises(DataError, match="nope.*does not exist"):
        build_augmentation({"name": "add_noise", "noise_dirs": [str(tmp_path / "nope")]})
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .wav"):
        build_augmentation({"name": "add_noise", "noise_dirs": [str(tmp_path / "empty")]})
    with pytest.raises(ValueError, match="unknown noise type"):
        build_augmentation({"name": "add_noise", "types": ["rain"]})
    with pytest.raises(ValueError, match="babble_dirs"):
        build_augmentation({"name": "add_noise", "types": ["babble"]})


def test_coloured_noise_slopes():
    torch.manual_seed(0)
    for kind, slope in (("white", 0), ("pink", -10), ("brown", -20)):  # dB per decade
        p = torch.fft.rfft(generate(kind, 16, SR)).abs().pow(2).mean(0)
        lo, hi = p[100:200].mean(), p[1000:2000].mean()
        assert abs(10 * torch.log10(hi / lo).item() - slope) < 2.0, kind
