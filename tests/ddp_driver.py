"""Run by tests/test_scaleout.py under torchrun (or plainly, for the single-process
reference): trains a batch-norm-free model so DDP can be compared exactly, and dumps each
rank's final weights."""
import os
import sys

import torch
from torch import nn

from kws_okd.models import register_model
from kws_okd.train.callbacks import Callback, register_callback
from kws_okd.train.config import load_recipe
from kws_okd.train.run import train


@register_model("tiny_linear")
class TinyLinear(nn.Module):
    """No batch norm and no dropout: per-rank statistics would otherwise make DDP and a
    single process legitimately differ."""

    def __init__(self, num_classes, n_features=40):
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(n_features, 16, 3), nn.ReLU(),
                                 nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(16, num_classes))

    def forward(self, x):
        return self.net(x)


@register_callback("dump_weights")
class DumpWeights(Callback):
    def __init__(self, folder):
        self.folder = folder

    def on_fit_end(self, brain, train_loader):
        rank = int(os.environ.get("RANK", 0))
        student = brain.modules.student
        student = getattr(student, "module", student)  # unwrap DDP
        os.makedirs(self.folder, exist_ok=True)
        torch.save(student.state_dict(), os.path.join(self.folder, f"rank{rank}.pt"))
        return None


if __name__ == "__main__":
    train(load_recipe("student", sys.argv[1:]))
