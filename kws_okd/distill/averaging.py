"""Weight averaging for distilled students (WAKD, SWAD, SMA, EMA): the maths only.

Nothing here knows about audio, images or the trainer. A *state* is a model's
``state_dict``; floating-point entries are averaged, integer entries (batch-norm's
``num_batches_tracked``) are copied from the newest snapshot because a mean of
counters means nothing. Averaged batch-norm statistics are only a first guess:
:func:`recompute_bn` re-estimates them on training inputs (DESIGN.md: needed for
students trained from scratch).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn
from torch.optim.swa_utils import update_bn


def _snapshot(model_or_state) -> dict[str, torch.Tensor]:
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    return {k: v.detach() for k, v in state.items()}


class RunningMean:
    """Uniform mean of every snapshot given to :meth:`update` (WAKD, SMA, SWAD).

    Kept as ``mean += (w - mean) / n`` so memory is one copy of the weights and the
    result is the arithmetic mean regardless of how many snapshots were seen. Snapshots
    can carry a weight (``count``) so means of disjoint groups merge exactly.
    """

    def __init__(self):
        self.mean: dict[str, torch.Tensor] | None = None
        self.count = 0

    def update(self, model_or_state, count: int = 1) -> None:
        if count <= 0:
            return
        state = _snapshot(model_or_state)
        if self.mean is None:
            self.mean = {k: v.clone().float() if v.is_floating_point() else v.clone() for k, v in state.items()}
            self.count = count
            return
        self.count += count
        frac = count / self.count
        for k, v in state.items():
            if v.is_floating_point():
                self.mean[k].add_(v.float() - self.mean[k], alpha=frac)
            else:
                self.mean[k].copy_(v)

    def merge(self, other: "RunningMean") -> None:
        """Fold another mean in as if its snapshots had been given here one by one."""
        if other.mean is not None:
            self.update(other.mean, count=other.count)

    def result(self, like: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The averaged state, cast back to the dtypes of ``like`` (a model's state_dict)."""
        if self.mean is None:
            raise ValueError("no snapshot has been averaged yet")
        if like is None:
            return {k: v.clone() for k, v in self.mean.items()}
        return {k: self.mean[k].to(like[k].dtype).clone() for k in like}

    def state_dict(self) -> dict:
        return {"count": self.count, "mean": self.mean}

    def load_state_dict(self, state: dict) -> None:
        self.count, self.mean = int(state["count"]), state["mean"]


class ExponentialMean(RunningMean):
    """EMA of the weights: ``mean = decay * mean + (1 - decay) * w`` (first snapshot copied)."""

    def __init__(self, decay: float = 0.999):
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = decay

    def update(self, model_or_state, count: int = 1) -> None:
        if self.mean is None:
            return super().update(model_or_state, count)
        state = _snapshot(model_or_state)
        self.count += count
        w = 1.0 - self.decay ** count
        for k, v in state.items():
            if v.is_floating_point():
                self.mean[k].add_(v.float() - self.mean[k], alpha=w)
            else:
                self.mean[k].copy_(v)


class LossValley:
    """SWAD's loss-valley detector over a sequence of validation losses.

    Fed one loss per evaluation (index ``i = 0, 1, ...``):

    - *start*: the first time the oldest of the last ``n_converge`` losses is their
      minimum, the valley opens at that oldest index and
      ``threshold = mean(last n_converge) * tolerance_ratio``;
    - *end*: afterwards, the first time the minimum of the last ``n_tolerance`` losses
      exceeds ``threshold`` the valley is closed; those ``n_tolerance`` evaluations are
      outside it, so it ends at ``i - n_tolerance``.

    ``start``/``end`` are indices (``end`` inclusive; None while open). One valley per
    run, as in SWAD: later losses are ignored once it has closed.
    """

    def __init__(self, n_converge: int = 3, n_tolerance: int = 6, tolerance_ratio: float = 1.3):
        if n_converge < 1 or n_tolerance < 1 or tolerance_ratio <= 0:
            raise ValueError("need n_converge >= 1, n_tolerance >= 1, tolerance_ratio > 0")
        self.n_converge, self.n_tolerance, self.tolerance_ratio = n_converge, n_tolerance, tolerance_ratio
        self.losses: list[float] = []
        self.start: int | None = None
        self.end: int | None = None
        self.threshold: float | None = None

    @property
    def converged(self) -> bool:
        return self.start is not None

    @property
    def dead(self) -> bool:
        return self.end is not None

    def update(self, loss: float) -> str | None:
        """Record one loss; return ``"start"``, ``"end"`` or None for what it triggered."""
        if self.dead:
            return None
        self.losses.append(float(loss))
        i = len(self.losses) - 1
        if not self.converged:
            if len(self.losses) >= self.n_converge:
                window = self.losses[-self.n_converge:]
                if min(window) == window[0]:
                    self.start = i - self.n_converge + 1
                    self.threshold = sum(window) / len(window) * self.tolerance_ratio
                    return "start"
            return None
        # The closing window must lie inside the valley (indices >= start): a valley
        # cannot be declared dead by losses from before it opened.
        if i - self.start + 1 >= self.n_tolerance:
            window = self.losses[-self.n_tolerance:]
            if min(window) > self.threshold:
                self.end = i - self.n_tolerance
                return "end"
        return None

    def state_dict(self) -> dict:
        return {"losses": list(self.losses), "start": self.start, "end": self.end, "threshold": self.threshold}

    def load_state_dict(self, state: dict) -> None:
        self.losses = [float(v) for v in state["losses"]]
        self.start, self.end, self.threshold = state["start"], state["end"], state["threshold"]


def find_valley(losses: Sequence[float], n_converge=3, n_tolerance=6, tolerance_ratio=1.3):
    """``(start, end)`` of SWAD's valley in a finished loss curve (``end`` inclusive).

    ``start`` is None when the curve never converged; an open valley ends at the last
    index."""
    lv = LossValley(n_converge, n_tolerance, tolerance_ratio)
    for v in losses:
        lv.update(v)
    if lv.start is None:
        return None, None
    return lv.start, lv.end if lv.end is not None else len(losses) - 1


def recompute_bn(model: nn.Module, inputs: Iterable, device=None) -> bool:
    """Re-estimate every batch-norm layer's running statistics from ``inputs``.

    ``inputs`` yields input tensors, or tuples whose first element is the input (the
    project's loaders yield ``(x, y, idx)``). Uses a cumulative average over the whole
    pass (``torch.optim.swa_utils.update_bn``). Returns False when the model has no
    batch norm (nothing to do)."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return False

    def only_inputs():
        for batch in inputs:
            yield batch[0] if isinstance(batch, (list, tuple)) else batch

    with torch.no_grad():
        update_bn(only_inputs(), model, device=device)
    return True
