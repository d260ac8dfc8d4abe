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
