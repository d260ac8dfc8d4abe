import pytest
import torch

from kws_okd.augment import build_augmentation
from kws_okd.errors import ConfigError


def test_span_mask_zeroes_one_contiguous_span_in_range():
    torch.manual_seed(0)
    x = torch.ones(64, 1000)
    y = build_augmentation({"name": "span_mask", "min_frac": 0.1, "max_frac": 0.9})(x)
    for row in y:
        zeros = (row == 0).nonzero().flatten()
        assert 100 <= len(zeros) <= 900
        assert zeros[-1] - zeros[0] + 1 == len(zeros)  # contiguous


def test_mixup_is_a_convex_combination_of_two_batch_clips():
    torch.manual_seed(0)
    x = torch.stack([torch.full((10,), float(i)) for i in range(8)])
    y = build_augmentation({"name": "mixup"})(x)
    assert y.min() >= 0 and y.max() <= 7
    assert torch.allclose(y, y[:, :1].expand_as(y))  # each row mixes constant rows


def test_gaussian_noise_hits_requested_snr():
    torch.manual_seed(0)
    x = torch.sin(torch.linspace(0, 400, 16000)).repeat(32, 1)
    y = build_augmentation({"name": "gaussian_noise", "min_snr": 10, "max_snr": 10})(x)
    snr = 10 * torch.log10(x.pow(2).mean(1) / (y - x).pow(2).mean(1))
    assert snr.mean().item() == pytest.approx(10.0, abs=0.3)


def test_one_of_policy_from_config_keeps_shape_and_changes_input():
    cfg = {"name": "one_of", "transforms": [{"name": "mixup"}, {"name": "span_mask"},
                                            {"name": "gaussian_noise"}]}
    x = torch.randn(16, 1600)
    y = build_augmentation(cfg)(x)
    assert y.shape == x.shape and not torch.equal(x, y)


def test_bad_augmentation_configs_name_the_problem():
    with pytest.raises(ConfigError, match="unknown augmentation 'reverbz'"):
        build_augmentation({"name": "reverbz"})
    with pytest.raises(ConfigError, match="span_mask"):
        build_augmentation({"name": "span_mask", "width": 3})
