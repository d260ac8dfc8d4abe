"""The ``_unknown_`` calibration: how much to lower that class's logit, chosen on real people.

A model trained on synthetic voices hears a real voice as something it has not met, and
``_unknown_`` is the class for everything else: most of its misses on people are command
words called ``_unknown_``. Lowering the ``_unknown_`` logit by an offset trades those
misses against other words taken for keywords. The offset is the one with the least
class-balanced negative log-likelihood (every class weighing the same, as on the balanced
benchmark) on the development set's ``select`` speakers (kws_okd/data/people.py), and
folded into the bias of the model's last layer, so that evaluation, streaming, the fast
path and every export carry it without knowing it exists.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from kws_okd.errors import ConfigError

# Offsets tried, in logit units: from raising _unknown_ a little to lowering it a lot.
GRID = np.round(np.arange(-2.0, 12.0 + 1e-9, 0.05), 2)


def balanced_accuracy(pred, labels) -> float:
    """The mean over the classes present in ``labels`` of the share of their clips
    predicted right."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    return float(np.mean([np.mean(pred[labels == c] == c) for c in np.unique(labels)]))


def balanced_nll(logits, labels) -> float:
    """The mean over the classes present of the mean negative log-likelihood of the true
    class (nats): smooth in the offset, where accuracy on a few dozen clips is a staircase."""
    z = np.asarray(logits, dtype=np.float64)
    logp = z - np.logaddexp.reduce(z, axis=1, keepdims=True)
    labels = np.asarray(labels)
    return float(np.mean([-logp[labels == c, c].mean() for c in np.unique(labels)]))


def choose_offset(logits, labels, unknown: int, grid=GRID) -> tuple[float, float, list]:
    """The offset (subtracted from the ``unknown`` logit) with the least class-balanced
    negative log-likelihood. On the few dozen clips of the select speakers, balanced
    accuracy is flat over several logits and its best point moves with one clip; the
    likelihood has one minimum. Returns ``(offset, balanced accuracy there, curve)``,
    the curve as ``(offset, nll, balanced accuracy)``."""
    logits = np.asarray(logits, dtype=np.float64)
    curve = []
    for off in grid:
        z = logits.copy()
        z[:, unknown] -= off
        curve.append((float(off), balanced_nll(z, labels), balanced_accuracy(z.argmax(1), labels)))
    best = min(curve, key=lambda c: c[1])
    return best[0], best[2], curve


def output_layer(model: nn.Module, num_classes: int) -> nn.Module:
    """The last registered linear or 1x1-conv layer with ``num_classes`` outputs and a bias
    (the classifier of every kws-okd model)."""
    found = None
    for m in model.modules():
        if isinstance(m, nn.Linear) and m.out_features == num_classes and m.bias is not None:
            found = m
        elif isinstance(m, (nn.Conv1d, nn.Conv2d)) and m.out_channels == num_classes and m.bias is not None:
            found = m
    if found is None:
        raise ConfigError(f"{type(model).__name__}: no output layer with {num_classes} outputs and a bias "
                          f"to fold the _unknown_ calibration into")
    return found


@torch.no_grad()
def fold_offset(model: nn.Module, num_classes: int, unknown: int, offset: float) -> None:
    """Subtract ``offset`` from the ``unknown`` logit for good, through the output bias."""
    output_layer(model, num_classes).bias[unknown] -= offset


@torch.no_grad()
def logits_of(model: nn.Module, inputs: torch.Tensor, batch: int = 256) -> torch.Tensor:
    model.eval()
    return torch.cat([model(inputs[i:i + batch]) for i in range(0, len(inputs), batch)])


@torch.no_grad()
def calibrate_unknown(model: nn.Module, dataset, classes: list[str], unknown_name: str = "_unknown_") -> dict:
    """Choose the ``_unknown_`` offset on ``dataset`` (the select speakers), fold it into
    ``model`` and return what was done (stored in the model's info)."""
    if unknown_name not in classes:
        raise ConfigError(f"the _unknown_ calibration needs an {unknown_name} class; classes: {classes}")
    unknown = classes.index(unknown_name)
    before = logits_of(model, dataset.inputs)
    labels = dataset.labels.numpy()
    offset, acc, curve = choose_offset(before.numpy(), labels, unknown)
    fold_offset(model, len(classes), unknown, offset)
    after = logits_of(model, dataset.inputs)
    expect = before.clone()
    expect[:, unknown] -= offset
    if not torch.allclose(after, expect, atol=1e-4):   # the bias found was not the last layer's
        fold_offset(model, len(classes), unknown, -offset)
        raise ConfigError(f"{type(model).__name__}: its output bias does not move the {unknown_name} logit "
                          f"alone; no calibration folded in")
    return dict(unknown_offset=offset, chosen_on=str(getattr(dataset, "path", "")), clips=len(labels),
                balanced_acc_before=balanced_accuracy(before.argmax(1).numpy(), labels),
                balanced_acc_after=acc, curve=curve)
