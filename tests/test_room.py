
import numpy as np
import pytest
import soundfile as sf
import torch

from kws_okd.augment import build_augmentation
from kws_okd.augment.room import RirBank, RoomSpec, measure_rt60, reverberate, synthesize_rir
from kws_okd.errors import DataError

SR = 16000


@pytest.mark.parametrize("rt60", [0.3, 0.7])
def test_generated_rir_has_requested_rt60_within_15_percent(rt60):
    h, info = synthesize_rir(rt60, [6.0, 5.0, 3.0], [1.0, 1.2, 1.5], [3.5, 2.8, 1.3], SR)
    measured = measure_rt60(h, SR)  # Schroeder backward integration on the aligned RIR
    assert abs(measured - rt60) <= 0.15 * rt60, (measured, info)
    assert np.argmax(np.abs(h)) == 0  # direct path aligned to t = 0


def test_uncalibrated_sabine_would_miss_where_calibration_hits():
    # Why calibration exists: Sabine's inversion overshoots in a large room.
    args = (0.8, [10.0, 8.0, 4.0], [2.0, 2.0, 1.5], [6.0, 5.0, 1.5], SR)
    raw, _ = synthesize_rir(*args, calibrate=False)
    cal, _ = synthesize_rir(*args, calibrate=True)
    assert abs(measure_rt60(cal, SR) - 0.8) < abs(measure_rt60(raw, SR) - 0.8)


def test_reverberation_keeps_rms_and_length_and_does_not_delay():
    torch.manual_seed(0)
    x = torch.zeros(2, SR)
    x[:, 4000:4400] = torch.randn(2, 400)
    h, _ = synthesize_rir(0.5, [5.0, 4.0, 3.0], [1.0, 1.0, 1.5], [3.0, 2.5, 1.5], SR)
    rirs = torch.from_numpy(h)[None].repeat(2, 1)
    y = reverberate(x, rirs)
    assert y.shape == x.shape
    assert torch.allclose(y.pow(2).mean(1).sqrt(), x.pow(2).mean(1).sqrt(), rtol=1e-4)
    onset = int((y[0].abs() > 1e-3 * y[0].abs().max()).nonzero()[0])
    assert 3990 <= onset <= 4010
    assert y[0, 6000:].abs().max() > 0  # reverberant tail after the burst


def test_bank_is_deterministic_cached_and_recorded(tmp_path):
    spec = RoomSpec(n_rirs=3, rt60=(0.2, 0.4), length=(3, 4), width=(3, 4), height=(2.5, 3))
    a = RirBank.generate(tmp_path / "a", spec, seed=5)
    b = RirBank.generate(tmp_path / "b", spec, seed=5)
    for i in range(3):
        name = f"rir_{i:04d}.wav"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "rirs.csv").read_text() == (tmp_path / "b" / "rirs.csv").read_text()
    assert len(a) == 3 and torch.equal(a.rirs, b.rirs)
    assert all(0.15 <= r <= 0.5 for r in a.rt60s())
    mtime = (tmp_path / "a" / "rir_0000.wav").stat().st_mtime_ns
    RirBank.generate(tmp_path / "a", spec, seed=5)  # cached: nothing rewritten
    assert (tmp_path / "a" / "rir_0000.wav").stat().st_mtime_ns == mtime


def test_user_rir_folder_at_another_rate_is_resampled_with_warning(tmp_path):
    h = np.zeros(4000, dtype=np.float32)
    h[100], h[400] = 1.0, 0.3  # pre-delay of 100 samples, one reflection
    (tmp_path / "sub").mkdir()
    sf.write(str(tmp_path / "sub" / "r.wav"), h, 8000)
    with pytest.warns(UserWarning, match="resampled"):
        bank = RirBank.load(tmp_path, SR)
    assert len(bank) == 1
    assert int(bank.rirs[0].abs().argmax()) == 0  # aligned after resampling
    assert abs(bank.rirs.shape[1] - (8000 - 200)) <= 1  # 0.5 s at 16 kHz minus the pre-delay


def test_speechbrain_style_csv_is_read(tmp_path):
    h = np.zeros(800, dtype=np.float32)
    h[0] = 1
    sf.write(str(tmp_path / "x.wav"), h, SR)
    (tmp_path / "rirs.csv").write_text("ID,duration,wav\nr1,0.05,$data_root/x.wav\n")
    bank = RirBank.load(tmp_path / "rirs.csv", SR)
    assert len(bank) == 1
    (tmp_path / "bad.csv").write_text("ID,path\nr1,x.wav\n")
    with pytest.raises(DataError, match="'wav' column"):
        RirBank.load(tmp_path / "bad.csv", SR)


def test_bad_inputs(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        build_augmentation({"name": "room_reverb", "bank": str(tmp_path / "nope")})
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .wav"):
        RirBank.load(tmp_path / "empty")
    with pytest.raises(ValueError, match="rt60"):
        synthesize_rir(3.5, [5, 4, 3], [1, 1, 1], [2, 2, 2])
    with pytest.raises(ValueError, match="rt60"):
        RoomSpec(rt60=(0.5, 0.2))


def test_room_reverb_augmentation_on_a_user_bank(tmp_path):
    for i, d in enumerate((50, 900)):
        h = np.zeros(2000, dtype=np.float32)
        h[0], h[d] = 1.0, 0.8
        sf.write(str(tmp_path / f"r{i}.wav"), h, SR)
    aug = build_augmentation({"name": "room_reverb", "bank": str(tmp_path)})
    torch.manual_seed(0)
    x = torch.randn(16, SR) * 0.1
    y = aug(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert torch.allclose(y.pow(2).mean(1), x.pow(2).mean(1), rtol=1e-3)
    assert not torch.allclose(y, x)


def test_yaml_policy_with_strength_builds_and_runs(tmp_path, monkeypatch):
    import yaml
    from pathlib import Path
    from kws_okd.augment.policy import scale_config
    recipe = Path(__file__).parents[1] / "recipes/kws/augment/room_noise_channel.yaml"
    cfg = yaml.safe_load(recipe.read_text())
    room = next(t for t in cfg["policy"]["transforms"] if t["name"] == "room_reverb")
    room["n_rirs"] = 2  # keep the bank small for the test
    half = scale_config(cfg["policy"], 0.5)
    noise = next(t for t in half["transforms"] if t["name"] == "add_noise")
    assert (noise["min_snr"], noise["max_snr"]) == (20.0, 30.0)  # halfway back to clean (40 dB)
    assert next(t for t in half["transforms"] if t["name"] == "room_reverb")["rt60"] == [0.15, 0.45]
    monkeypatch.chdir(tmp_path)  # the default bank lands in ./data/rir_bank_0/<digest>
    aug = build_augmentation({**cfg, "strength": 0.5})
    torch.manual_seed(0)
    x = torch.randn(64, SR) * 0.1
    y = aug(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert len(list((tmp_path / "data" / "rir_bank_0").glob("*/rirs.csv"))) == 1


def test_room_reverb_fast_path_equals_fftconvolve(tmp_path):
    spec = RoomSpec(n_rirs=2, rt60=(0.3, 0.3), length=(3, 4), width=(3, 4), height=(2.5, 3))
    bank = RirBank.generate(tmp_path / "b", spec, seed=1)
    aug = build_augmentation({"name": "room_reverb", "bank": str(tmp_path / "b")})
    x = torch.randn(6, SR) * 0.1
    torch.manual_seed(3)
    y = aug(x)
    torch.manual_seed(3)
    idx = torch.randint(0, len(bank), (6,))
    assert torch.allclose(y, reverberate(x, bank.rirs[idx]), atol=1e-5)
