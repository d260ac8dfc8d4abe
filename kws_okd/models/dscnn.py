"""DS-CNN (Zhang et al., 2017; the MLPerf Tiny keyword-spotting model)."""
from torch import nn

from kws_okd.models.registry import register_model


def _ds_block(c):
    return nn.Sequential(
        nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
        nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU())


@register_model("dscnn")
class DSCNN(nn.Module):
    default_frontend = "logmel"

    def __init__(self, num_classes, n_features=40, channels=64, blocks=4, dropout=0.2):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, channels, (10, 4), stride=2, padding=(5, 1), bias=False),
            nn.BatchNorm2d(channels), nn.ReLU(), nn.Dropout(dropout))
        self.blocks = nn.Sequential(*[_ds_block(channels) for _ in range(blocks)])
        self.head = nn.Sequential(nn.Dropout(dropout), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(channels, num_classes))

    def forward(self, x):
        return self.head(self.blocks(self.stem(x.unsqueeze(1))))
