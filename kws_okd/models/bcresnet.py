"""BC-ResNet (Kim et al., 2021): broadcasted residual learning for tiny KWS.

Frequency-wise depthwise convolutions (2-D) plus temporal convolutions on
frequency-averaged features (1-D), broadcast back over frequency.
"""
import torch
from torch import nn

from kws_okd.models.registry import register_model


class SubSpectralNorm(nn.Module):
    """Batch norm computed separately on ``groups`` frequency sub-bands. The frequency size
    is known when the network is built; when it does not split evenly, plain batch norm
    (one group). Only one norm is ever built, so DDP finds no unused parameters."""

    def __init__(self, channels, freq, groups=5):
        super().__init__()
        self.groups = groups if freq % groups == 0 else 1
        self.bn = nn.BatchNorm2d(channels * self.groups)

    def forward(self, x):
        b, c, f, t = x.shape
        return self.bn(x.reshape(b, c * self.groups, f // self.groups, t)).reshape(b, c, f, t)


class BroadcastedBlock(nn.Module):
    def __init__(self, c_in, c_out, freq, stride=1, dilation=1, dropout=0.1, ssn_groups=5):
        super().__init__()
        self.transition = c_in != c_out
        self.pre = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out),
                                  nn.ReLU()) if self.transition else nn.Identity())
        self.freq_dw = nn.Conv2d(c_out, c_out, (3, 1), stride=(stride, 1), padding=(1, 0),
                                 groups=c_out, bias=False)
        self.ssn = SubSpectralNorm(c_out, (freq - 1) // stride + 1, ssn_groups)
        self.temporal = nn.Sequential(
            nn.Conv2d(c_out, c_out, (1, 3), padding=(0, dilation), dilation=(1, dilation),
                      groups=c_out, bias=False),
            nn.BatchNorm2d(c_out), nn.SiLU(), nn.Conv2d(c_out, c_out, 1, bias=False),
            nn.Dropout2d(dropout))

    def forward(self, x):
        x = self.pre(x)
        x1 = self.ssn(self.freq_dw(x))
        y = self.temporal(x1.mean(dim=2, keepdim=True))
        out = x1 + y if self.transition else x + x1 + y
        return torch.relu(out)


@register_model("bcresnet")
class BCResNet(nn.Module):
    """``tau`` scales width: BC-ResNet-1 (tau=1) has about 10 k parameters."""
    default_frontend = "logmel"

    def __init__(self, num_classes, n_features=40, tau=1.0, dropout=0.1):
        super().__init__()
        c = [int(round(v * tau)) for v in (16, 8, 12, 16, 20, 32)]
        self.stem = nn.Sequential(nn.Conv2d(1, c[0], 5, stride=(2, 1), padding=2, bias=False),
                                  nn.BatchNorm2d(c[0]), nn.ReLU())
        layers, c_in = [], c[0]
        freq = (n_features - 1) // 2 + 1  # after the stride-2 stem
        for c_out, n, stride, dil in ((c[1], 2, 1, 1), (c[2], 2, 2, 2), (c[3], 4, 2, 4),
                                      (c[4], 4, 1, 8)):
            for i in range(n):
                s = stride if i == 0 else 1
                layers.append(BroadcastedBlock(c_in, c_out, freq, s, dil, dropout))
                freq = (freq - 1) // s + 1
                c_in = c_out
        self.blocks = nn.Sequential(*layers)
        self.head = nn.Sequential(
            # Depthwise over the remaining frequency bins (5 with 40 mels), then pooled.
            nn.Conv2d(c_in, c_in, (min(5, freq), 5), padding=(0, 2), groups=c_in, bias=False),
            nn.Conv2d(c_in, c[5], 1, bias=False), nn.BatchNorm2d(c[5]), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(c[5], num_classes, 1))

    def forward(self, x):  # (B, F, T)
        x = self.blocks(self.stem(x.unsqueeze(1)))
        return self.head(x).flatten(1)


@register_model("bcresnet1")
class BCResNet1(BCResNet):
    def __init__(self, num_classes, n_features=40, dropout=0.1):
        super().__init__(num_classes, n_features, tau=1.0, dropout=dropout)


@register_model("bcresnet3")
class BCResNet3(BCResNet):
    """Three times BC-ResNet-1's width: about 54 k parameters, six times the compute."""

    def __init__(self, num_classes, n_features=40, dropout=0.1):
        super().__init__(num_classes, n_features, tau=3.0, dropout=dropout)


@register_model("bcresnet2")
class BCResNet2(BCResNet):
    """Twice BC-ResNet-1's width: about 27 k parameters. With 20 ms frames
    (``student=bcresnet2_20ms``) a training step costs what BC-ResNet-1's does at 10 ms."""

    def __init__(self, num_classes, n_features=40, dropout=0.1):
        super().__init__(num_classes, n_features, tau=2.0, dropout=dropout)
