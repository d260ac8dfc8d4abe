"""Image teachers and tiny students: inputs (B, 3, H, W), front-end ``none``.

- ``image_resnet``: a ResNet-style teacher (basic blocks, three stages).
- ``mobilenetv3_small``: a MobileNetV3-Small-class student (inverted residuals,
  squeeze-excitation, hard-swish), with strides adapted to small inputs.
- ``small_cnn``: three conv-BN-ReLU-pool stages, the simplest baseline student.

Each backbone ends in global average pooling, so any input size works.
"""
from __future__ import annotations

from torch import nn

from kws_okd.models.registry import register_model


def _check_input(n_features, name):
    # build_model hands every backbone the front-end's feature count; an image model
    # behind an audio front-end would silently get spectrograms, so refuse it early.
    if n_features not in (0, None, 3):
        raise TypeError(f"{name} takes images (B, 3, H, W): use frontend {{name: none}}, "
                        f"not a front-end with {n_features} features")


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out))
        self.skip = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(self.body(x) + self.skip(x))


@register_model("image_resnet")
class ImageResNet(nn.Module):
    """Stem conv then one stage per width (the first keeps the resolution, the others
    halve it), ``blocks`` basic blocks each. ``stem_stride`` 2 suits inputs >= 64 px."""
    default_frontend = "none"

    def __init__(self, num_classes, n_features=0, widths=(32, 64, 128), blocks=(2, 2, 2),
                 stem_stride=1, dropout=0.0):
        super().__init__()
        _check_input(n_features, "image_resnet")
        widths, blocks = list(widths), list(blocks)
        if len(widths) != len(blocks):
            raise TypeError(f"widths {widths} and blocks {blocks} must have the same length")
        layers = [nn.Conv2d(3, widths[0], 3, stem_stride, 1, bias=False), nn.BatchNorm2d(widths[0]),
                  nn.ReLU(inplace=True)]
        c = widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):
            for j in range(n):
                layers.append(BasicBlock(c, w, 2 if (i > 0 and j == 0) else 1))
                c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(c, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


def _divisible(v, d=8):
    """Round channel counts to multiples of 8 (as MobileNets do, for fast kernels) but
    never more than 10 % below the asked width."""
    out = max(d, int(v + d / 2) // d * d)
    return out + d if out < 0.9 * v else out


class SqueezeExcite(nn.Module):
    def __init__(self, c, reduction=4):
        super().__init__()
        mid = _divisible(c // reduction)
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, mid, 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(mid, c, 1), nn.Hardsigmoid(inplace=True))

    def forward(self, x):
        return x * self.gate(x)


class InvertedResidual(nn.Module):
    """1x1 expansion -> depthwise k x k -> (SE) -> 1x1 linear projection, residual when
    the shape is kept."""

    def __init__(self, c_in, kernel, c_exp, c_out, se, act, stride):
        super().__init__()
        Act = nn.Hardswish if act == "hs" else nn.ReLU
        layers = []
        if c_exp != c_in:
            layers += [nn.Conv2d(c_in, c_exp, 1, bias=False), nn.BatchNorm2d(c_exp), Act(inplace=True)]
        layers += [nn.Conv2d(c_exp, c_exp, kernel, stride, kernel // 2, groups=c_exp, bias=False),
                   nn.BatchNorm2d(c_exp), Act(inplace=True)]
        if se:
            layers.append(SqueezeExcite(c_exp))
        layers += [nn.Conv2d(c_exp, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


# MobileNetV3-Small's block table (Howard et al., 2019):
# kernel, expansion channels, output channels, squeeze-excite, activation, stride.
MBV3_SMALL = [
    (3, 16, 16, True, "re", 2),
    (3, 72, 24, False, "re", 2),
    (3, 88, 24, False, "re", 1),
    (5, 96, 40, True, "hs", 2),
    (5, 240, 40, True, "hs", 1),
    (5, 240, 40, True, "hs", 1),
    (5, 120, 48, True, "hs", 1),
    (5, 144, 48, True, "hs", 1),
    (5, 288, 96, True, "hs", 2),
    (5, 576, 96, True, "hs", 1),
    (5, 576, 96, True, "hs", 1),
]


@register_model("mobilenetv3_small")
class MobileNetV3Small(nn.Module):
    """MobileNetV3-Small scaled by ``width`` (channels) with the paper's block table.
    The ImageNet network downsamples 32x; on 32 px inputs that leaves 1 pixel, so
    ``small_input`` (default) keeps the stem and first block at stride 1 (8x in all)."""
    default_frontend = "none"

    def __init__(self, num_classes, n_features=0, width=0.5, small_input=True, last_channels=256,
                 dropout=0.2):
        super().__init__()
        _check_input(n_features, "mobilenetv3_small")
        c = _divisible(16 * width)
        layers = [nn.Conv2d(3, c, 3, 1 if small_input else 2, 1, bias=False), nn.BatchNorm2d(c),
                  nn.Hardswish(inplace=True)]
        for i, (k, exp, out, se, act, stride) in enumerate(MBV3_SMALL):
            if small_input and i == 0:
                stride = 1
            c_exp, c_out = _divisible(exp * width), _divisible(out * width)
            layers.append(InvertedResidual(c, k, c_exp, c_out, se, act, stride))
            c = c_out
        c_last = _divisible(576 * width)
        layers += [nn.Conv2d(c, c_last, 1, bias=False), nn.BatchNorm2d(c_last), nn.Hardswish(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_last, last_channels),
                                  nn.Hardswish(inplace=True), nn.Dropout(dropout),
                                  nn.Linear(last_channels, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


@register_model("small_cnn")
class SmallCNN(nn.Module):
    """conv-BN-ReLU-maxpool per width, then global pooling and a linear classifier."""
    default_frontend = "none"

    def __init__(self, num_classes, n_features=0, widths=(16, 32, 64)):
        super().__init__()
        _check_input(n_features, "small_cnn")
        layers, c = [], 3
        for w in widths:
            layers += [nn.Conv2d(c, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))

    def forward(self, x):
        return self.head(self.features(x))
