"""Raw-waveform 1-D CNNs M3 and M11 (Dai et al., 2017), the OKD paper's speech
student and teacher."""
from torch import nn

from kws_okd.models.registry import register_model


def _conv(c_in, c_out, k, stride=1):
    return [nn.Conv1d(c_in, c_out, k, stride, padding=k // 2, bias=False),
            nn.BatchNorm1d(c_out), nn.ReLU()]


class _RawCNN(nn.Module):
    default_frontend = "raw"
    # (channels, repeats) per stage after the stride-4 first convolution
    stages: tuple = ()
    first: int = 64

    def __init__(self, num_classes, n_features=1):
        super().__init__()
        layers = _conv(1, self.first, 80, 4) + [nn.MaxPool1d(4)]
        c = self.first
        for i, (w, n) in enumerate(self.stages):
            for _ in range(n):
                layers += _conv(c, w, 3)
                c = w
            if i < len(self.stages) - 1:
                layers.append(nn.MaxPool1d(4))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(c, num_classes))

    def forward(self, x):  # (B, 1, N)
        return self.head(self.features(x))


@register_model("m3")
class M3(_RawCNN):
    first = 256
    stages = ((256, 1),)


@register_model("m11")
class M11(_RawCNN):
    first = 64
    stages = ((64, 2), (128, 2), (256, 3), (512, 2))
