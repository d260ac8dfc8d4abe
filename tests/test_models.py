from pathlib import Path

import pytest
import torch
from torch import nn

from kws_okd.errors import ConfigError
from kws_okd.models import build_model, count_macs, count_params
from kws_okd.models.registry import KWSNet


@pytest.mark.parametrize("name,low,high", [
    ("bcresnet1", 5_000, 20_000), ("dscnn", 15_000, 40_000), ("resnet", 300_000, 2_000_000),
    ("m3", 200_000, 260_000), ("m11", 1_600_000, 2_000_000)])
def test_parameter_budgets_and_shapes(name, low, high):
    m = build_model(name, num_classes=35)
    assert low <= count_params(m) <= high
    m.eval()
    assert m(torch.randn(3, 16000)).shape == (3, 35)


def test_mfcc_frontend_is_configurable():
    m = build_model("bcresnet1", 12, frontend={"name": "mfcc", "n_mfcc": 40})
    assert m.eval()(torch.randn(2, 16000)).shape == (2, 12)


def test_mac_count_matches_hand_computation():
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(1, 4, 5, stride=2)  # out length (16 - 5)//2 + 1 = 6
            self.fc = nn.Linear(24, 3)

        def forward(self, x):
            return self.fc(self.conv(x).flatten(1))

    net = KWSNet(nn.Unflatten(1, (1, 16)), Tiny())
    assert count_macs(net, num_samples=16) == 6 * 4 * 5 + 24 * 3


def test_unknown_model_and_bad_argument():
    with pytest.raises(ConfigError, match="unknown model 'bcresnet9'"):
        build_model("bcresnet9", 10)
    with pytest.raises(ConfigError, match="dscnn"):
        build_model("dscnn", 10, wings=3)


def test_bcresnet3_is_bcresnet_at_three_times_the_width():
    b3 = build_model("bcresnet3", 12)
    assert count_params(b3) == count_params(build_model("bcresnet", 12, tau=3.0))
    assert b3.backbone.stem[0].out_channels == 3 * build_model("bcresnet1", 12).backbone.stem[0].out_channels == 48
    assert b3(torch.zeros(2, 16000)).shape == (2, 12)


def test_bcresnet2_20ms_recipe_is_twice_the_width_on_half_the_frames():
    """``student=bcresnet2_20ms``: twice the width, half the frames. Its recipe builds 51
    frames a second; BC-ResNet-2 is BC-ResNet at tau 2 (16 x 2 stem channels)."""
    from omegaconf import OmegaConf
    from kws_okd.train.run import model_config
    recipe = OmegaConf.load(Path(__file__).parents[1] / "recipes/kws/student/bcresnet2_20ms.yaml")
    m = build_model(**{**model_config(recipe), "num_classes": 12})
    assert count_params(m) == count_params(build_model("bcresnet", 12, tau=2.0)) == 27_284
    assert m.backbone.stem[0].out_channels == 32
    with torch.no_grad():
        assert m.frontend(torch.zeros(1, 16000)).shape == (1, 40, 51)
        assert m(torch.zeros(2, 16000)).shape == (2, 12)
    # Per second of audio: 1.49x BC-ResNet-1's multiply-accumulates (2.48 M), not the 3x
    # that twice the width would cost on 10 ms frames.
    b1 = count_macs(build_model("bcresnet1", 12))
    assert 1.3 < count_macs(m) / b1 < 1.6
