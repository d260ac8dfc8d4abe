"""Weight-averaging trainer callbacks: WAKD, SWAD, SMA and EMA (``averaging=...``).

Each callback watches the student after every optimiser step, keeps its averaging
state in SpeechBrain's checkpoints (so an interrupted run resumes with it) and, at
the end of training, hands back the averaged weights with batch-norm statistics
re-estimated on the training data; run.py saves those as ``model.pt`` instead of
the best-validation checkpoint, and validates them for ``train_summary.json``. The
maths lives in :mod:`kws_okd.distill.averaging`; docs/averaging.md explains each
schedule and how SWAD is adapted to per-epoch validation.

Snapshots are taken of the plain student (:func:`~kws_okd.train.callbacks.unwrap`): under
DDP ``brain.modules.student`` is the wrapper, whose keys carry a ``module.`` prefix the
student that run.py saves does not have.
"""
from __future__ import annotations

import copy
import logging
from collections.abc import Sequence

import torch
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks

from kws_okd.distill.averaging import ExponentialMean, LossValley, RunningMean, recompute_bn
from kws_okd.errors import ConfigError
from kws_okd.train.callbacks import Callback, register_callback, unwrap

log = logging.getLogger(__name__)


def accuracy(model, loader, device=None) -> float:
    """Top-1 accuracy of ``model`` (as it is: put it in eval mode first) on a loader of
    ``(x, y, ...)`` batches."""
    correct = seen = 0
    with torch.no_grad():
        for batch in loader:
            x, y = batch[0].to(device), batch[1].to(device)
            correct += int((model(x).argmax(-1) == y).sum())
            seen += len(y)
    return correct / max(1, seen)


@register_checkpoint_hooks
class AveragingState:
    """Adapter between a callback's ``state_dict`` and SpeechBrain's checkpointer.

    Loading never moves the state backwards: after ``fit`` run.py recovers the
    best-validation checkpoint (to read its metadata and weights), which would otherwise
    roll the average back to that epoch and drop every later snapshot."""

    def __init__(self, owner):
        self.owner = owner

    @mark_as_saver
    def _save(self, path):
        torch.save(self.owner.state_dict(), path)

    @mark_as_loader
    def _load(self, path, end_of_epoch):
        del end_of_epoch
        state = torch.load(path, map_location="cpu", weights_only=True)
        if int(state.get("seen_step", -1)) < self.owner.seen_step:
            return
        self.owner.load_state_dict(state)


class AveragingCallback(Callback):
    """Shared plumbing: start step, BN re-estimation, checkpointing, the final model.

    ``start_fraction`` is the fraction of all optimiser steps after which snapshots are
    taken; ``start_step`` (an absolute step) overrides it."""

    label = "weight averaging"

    def __init__(self, start_fraction: float = 0.1, start_step: int | None = None,
                 bn_recompute: bool = True):
        self.check_fraction(start_fraction)
        if start_step is not None and int(start_step) < 0:
            raise ConfigError(f"averaging.start_step: must be >= 0, got {start_step}")
        self.start_fraction = float(start_fraction)
        self.start_step = None if start_step is None else int(start_step)
        self.bn_recompute = bool(bn_recompute)
        self.seen_step = -1
        self.first_step = None
        self.last_step = None

    @staticmethod
    def student(brain):
        """The student being trained, outside any DDP wrapper."""
        return unwrap(brain.modules.student)

    @staticmethod
    def epoch_of(brain, step) -> int:
        return -(-int(step) // max(1, int(brain.hparams.steps_per_epoch)))

    @staticmethod
    def check_fraction(start_fraction) -> None:
        if not 0.0 <= float(start_fraction) < 1.0:
            raise ConfigError(f"averaging.start_fraction: must be in [0, 1), got {start_fraction}")

    # -- schedule -------------------------------------------------------------------
    def mark(self, step: int) -> None:
        self.seen_step = step
        self.first_step = step if self.first_step is None else self.first_step
        self.last_step = step

    # -- checkpointing ----------------------------------------------------------------
    def recoverables(self) -> dict:
        return {f"averaging_{self.registry_name}": AveragingState(self)}

    def state_dict(self) -> dict:
        return {"seen_step": self.seen_step, "first_step": self.first_step, "last_step": self.last_step}

    def load_state_dict(self, state: dict) -> None:
        self.seen_step = int(state["seen_step"])
        self.first_step, self.last_step = state["first_step"], state["last_step"]

    # -- the final model ----------------------------------------------------------------
    def candidate(self, brain, averaged: dict, bn_loader):
        """A copy of the student holding ``averaged``, in eval mode, with its batch-norm
        statistics re-estimated on ``bn_loader`` (when ``bn_recompute`` and a loader is
        given). Returns ``(model, refitted)``."""
        student = self.student(brain)
        like = student.state_dict()
        model = copy.deepcopy(student)
        model.load_state_dict({k: v.to(like[k].device) for k, v in averaged.items()})
        refitted = bool(self.bn_recompute and bn_loader is not None
                        and recompute_bn(model, bn_loader, device=brain.device))
        model.eval()
        return model, refitted

    def finalize(self, brain, train_loader, averaged: dict, selection: str,
                 epoch: int | None = None, built: tuple | None = None) -> dict:
        """The final model from ``averaged``; ``built`` is its :meth:`candidate` when the
        caller already made it (BN refit included), so it is not refitted twice."""
        model, refitted = built or self.candidate(
            brain, averaged, train_loader if train_loader is not None else self.bn_loader)
        if refitted:
            selection += "; batch-norm statistics re-estimated on the training data"
        return {"state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
                "selection": selection, "epoch": epoch}


@register_callback("wakd")
class WAKDAveraging(AveragingCallback):
    """WAKD's schedule (Berezovskiy & Morozov, 2023): a uniform running mean of the
    student's weights after every step from ``start`` to the end. Needs no validation.

    ``start_fraction`` may be a list of candidates. One running mean is kept per
    candidate (a copy of the weights each, updated every step), and at the end of
    training the candidate whose average, after its batch-norm refit, scores best on the
    training-domain validation loader is kept. WAKD's 10 % start assumes a student that
    is already good (fine-tuned from pretrained weights); a student trained from scratch
    is still far from its final weights there, and where the average should begin is a
    question for validation data (docs/averaging.md)."""

    label = "WAKD"

    def __init__(self, start_fraction=0.1, start_step: int | None = None,
                 bn_recompute: bool = True):
        fractions = ([float(f) for f in start_fraction]
                     if isinstance(start_fraction, Sequence) and not isinstance(start_fraction, str)
                     else [float(start_fraction)])
        if not fractions:
            raise ConfigError("averaging.start_fraction: an empty list of candidates")
        for f in fractions:
            self.check_fraction(f)
        # An absolute start step overrides the fractions: one running mean, from there.
        self.fractions = sorted(set(fractions)) if start_step is None else [fractions[0]]
        super().__init__(self.fractions[0], start_step, bn_recompute)
        self.means = [RunningMean() for _ in self.fractions]

    @property
    def mean(self):
        return self.means[0]

    def require_valid_loader(self) -> None:
        """Several candidate starts are told apart on the validation loader only."""
        if self.valid_loader is None:
            raise ConfigError("averaging.start_fraction: choosing among several starts needs the "
                              "trainer's validation loader (set_loaders)")

    def resolve_starts(self, brain) -> list[int]:
        if self.start_step is not None:
            return [self.start_step]
        total = int(brain.hparams.epochs) * int(brain.hparams.steps_per_epoch)
        return [int(f * total) for f in self.fractions]

    def on_train_step(self, brain):
        step = int(brain.global_step)
        if step <= self.seen_step:
            return
        starts = self.resolve_starts(brain)
        if step > min(starts):
            for start, mean in zip(starts, self.means):
                if step > start:
                    mean.update(self.student(brain))
            self.mark(step)

    def pick(self, brain) -> tuple[int, dict, tuple | None]:
        """Index of the candidate start whose average scores best on validation (ties: the
        earlier start, which averages more), every candidate's score keyed by its fraction,
        and the chosen candidate as :meth:`candidate` built it (None with one candidate)."""
        if len(self.means) == 1:
            return 0, {}, None
        self.require_valid_loader()
        like = self.student(brain).state_dict()
        scores, best, built = {}, None, None
        for i, (f, mean) in enumerate(zip(self.fractions, self.means)):
            if mean.count:
                cand = self.candidate(brain, mean.result(like), self.bn_loader)
                scores[f"{f:g}"] = accuracy(cand[0], self.valid_loader, brain.device)
                if best is None or scores[f"{f:g}"] > scores[f"{self.fractions[best]:g}"]:
                    best, built = i, cand
        return best, scores, built

    def on_fit_end(self, brain, train_loader):
        if self.mean.count == 0:
            log.warning("%s: no step after the start step; keeping the best-validation checkpoint",
                        self.label)
            return None
        i, scores, built = self.pick(brain)
        mean = self.means[i]
        like = self.student(brain).state_dict()
        chosen = "" if not scores else (
            ", start chosen among fractions on training-domain validation accuracy ("
            + ", ".join(f"{k}: {100 * v:.1f} %" for k, v in scores.items()) + ")")
        sel = (f"{self.label}: uniform mean of the student's weights over steps "
               f"{self.last_step - mean.count + 1}-{self.last_step} ({mean.count} snapshots{chosen})")
        out = self.finalize(brain, train_loader, mean.result(like), sel, self.epoch_of(brain, self.last_step),
                            built=built)
        if scores:
            out["candidates"] = dict(scores, chosen=f"{self.fractions[i]:g}")
        return out

    def state_dict(self):
        return {**super().state_dict(), "means": [m.state_dict() for m in self.means]}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        saved = state["means"] if "means" in state else [state["mean"]]
        if len(saved) != len(self.means):
            raise ConfigError(f"averaging: the checkpoint holds {len(saved)} running means, this run "
                              f"expects {len(self.means)} (start_fraction changed?)")
        for m, s in zip(self.means, saved):
            m.load_state_dict(s)


@register_callback("ema")
class EMAAveraging(WAKDAveraging):
    """Exponential moving average of the weights, ``decay`` per step, from ``start``."""

    label = "EMA"

    def __init__(self, decay: float = 0.999, start_fraction: float = 0.0,
                 start_step: int | None = None, bn_recompute: bool = True):
        super().__init__(start_fraction, start_step, bn_recompute)
        try:
            self.means = [ExponentialMean(float(decay))]
        except ValueError as e:
            raise ConfigError(f"averaging.decay: {e}") from None
        self.decay = float(decay)

    def on_fit_end(self, brain, train_loader):
        if self.mean.count == 0:
            return None
        like = self.student(brain).state_dict()
        sel = (f"EMA (decay {self.decay}) of the student's weights over steps {self.first_step}-"
               f"{self.last_step}")
        return self.finalize(brain, train_loader, self.mean.result(like), sel,
                             self.epoch_of(brain, self.last_step))


@register_callback("sma")
class SMAAveraging(WAKDAveraging):
    """SMA (Arpit et al.): a running mean from ``start``; at each validation the current
    mean is a candidate and the candidate with the best validation accuracy is kept.

    ``start_fraction`` may be a list, as for WAKD: one running mean per start, and at
    each validation every started mean is a candidate, so validation chooses the start
    and the end of the average together (ties go to the candidate that averaged more:
    the later epoch, then the earlier start).

    The candidate itself is scored on the validation loader the trainer gives
    (``set_loaders``), after its batch-norm statistics are re-estimated on the
    ``bn_loader`` (one forward pass over the training data per candidate and epoch; with
    ``bn_recompute: false`` the averaged statistics are used). Without a validation
    loader (unit tests driving the callback by hand) a single start falls back to the
    student's own validation accuracy at that epoch; the selection string says which
    rule was used."""

    label = "SMA"

    def __init__(self, start_fraction=0.1, start_step: int | None = None,
                 bn_recompute: bool = True):
        super().__init__(start_fraction, start_step, bn_recompute)
        self.best: dict | None = None
        self.best_score = -1.0
        self.best_epoch = None
        self.best_count = 0
        self.best_start = 0  # index into self.fractions
        self.best_step = 0
        self.scored_by = None
        self.history: dict[str, dict[int, float]] = {}  # fraction -> epoch -> score

    def score(self, brain, stats, mean):
        loader = self.valid_loader
        if loader is None:
            if len(self.means) > 1:
                self.require_valid_loader()
            return float(stats["acc"]), "the student's validation accuracy at that epoch"
        like = self.student(brain).state_dict()
        model, refitted = self.candidate(brain, mean.result(like), self.bn_loader)
        how = ("batch-norm statistics re-estimated on the training data" if refitted
               else "averaged batch-norm statistics")
        return accuracy(model, loader, brain.device), f"the averaged model's validation accuracy ({how})"

    def on_valid_end(self, brain, stats, epoch):
        # Later starts first, so that within one epoch an earlier start (more snapshots)
        # wins a tie; across epochs the later epoch wins it.
        for i in reversed(range(len(self.means))):
            mean = self.means[i]
            if mean.count == 0:
                continue
            score, self.scored_by = self.score(brain, stats, mean)
            self.history.setdefault(f"{self.fractions[i]:g}", {})[int(epoch)] = score
            if score >= self.best_score:
                self.best = mean.result()
                self.best_score, self.best_epoch, self.best_count = score, int(epoch), mean.count
                self.best_start, self.best_step = i, self.last_step
        self.seen_step = max(self.seen_step, int(brain.global_step))

    def on_fit_end(self, brain, train_loader):
        if self.best is None:
            return None
        like = self.student(brain).state_dict()
        best = {k: self.best[k].to(like[k].dtype) for k in like}
        chosen = "" if len(self.means) == 1 else (
            f", start {self.fractions[self.best_start]:g} chosen among "
            + ", ".join(f"{f:g}" for f in self.fractions))
        sel = (f"SMA: running mean of the student's weights over steps "
               f"{self.best_step - self.best_count + 1}-{self.best_step}, snapshot after epoch "
               f"{self.best_epoch} ({self.best_count} snapshots{chosen}) chosen by {self.scored_by} "
               f"(best {100 * self.best_score:.1f} %, training domains)")
        out = self.finalize(brain, train_loader, best, sel, self.best_epoch)
        if len(self.means) > 1:
            out["candidates"] = {f: max(h.values()) for f, h in self.history.items()}
            out["candidates"]["chosen"] = f"{self.fractions[self.best_start]:g}"
        return out

    def state_dict(self):
        return {**super().state_dict(), "best": self.best, "best_score": self.best_score,
                "best_epoch": self.best_epoch, "best_count": self.best_count,
                "best_start": self.best_start, "best_step": self.best_step, "scored_by": self.scored_by,
                "history": {f: {str(e): v for e, v in h.items()} for f, h in self.history.items()}}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.best, self.best_score = state["best"], float(state["best_score"])
        self.best_epoch, self.best_count = state["best_epoch"], int(state["best_count"])
        self.best_start = int(state.get("best_start", 0))
        self.best_step = int(state.get("best_step", self.last_step or 0))
        self.scored_by = state["scored_by"]
        self.history = {f: {int(e): float(v) for e, v in h.items()}
                        for f, h in state.get("history", {}).items()}


@register_callback("swad")
class SWADAveraging(AveragingCallback):
    """SWAD (Cha et al.) adapted to per-epoch validation.

    SWAD validates every ``frequency`` steps and averages every step inside the loss
    valley. Here validation happens once per epoch, so a *segment* is ``frequency``
    epochs: the mean of the per-step snapshots of each segment is kept, the segment's
    last validation loss feeds :class:`LossValley`, and the model is the step-weighted
    mean of the segments inside the valley, i.e. the mean of every per-step snapshot
    of those epochs. Only ``max(n_converge, n_tolerance) + 1`` segment means are held
    at once: the rest are folded into the valley mean as soon as they are certain to
    be inside it. If the loss never forms a valley (still falling at the end) the
    segments from the lowest validation loss to the end are averaged instead."""

    label = "SWAD"

    def __init__(self, frequency: int = 1, n_converge: int = 3, n_tolerance: int = 6,
                 tolerance_ratio: float = 1.3, bn_recompute: bool = True):
        super().__init__(0.0, 0, bn_recompute)
        if int(frequency) < 1:
            raise ConfigError(f"averaging.frequency: must be >= 1 epoch, got {frequency}")
        try:
            self.detector = LossValley(int(n_converge), int(n_tolerance), float(tolerance_ratio))
        except ValueError as e:
            raise ConfigError(f"averaging (swad): {e}") from None
        self.frequency = int(frequency)
        self.segment = RunningMean()
        self.pending: list[RunningMean] = []  # segments whose valley membership is undecided
        self.pending_loss: list[float] = []
        self.valley = RunningMean()
        self.segment_epochs: list[int] = []  # last epoch of every segment fed to the detector

    def on_train_step(self, brain):
        step = int(brain.global_step)
        if step <= self.seen_step:
            return
        if self.detector.dead:
            self.seen_step = step  # keeps checkpoints ordered after the valley closed
        else:
            self.segment.update(self.student(brain))
            self.mark(step)

    def on_valid_end(self, brain, stats, epoch):
        last = int(epoch) >= int(brain.hparams.epochs)
        if self.detector.dead or (int(epoch) % self.frequency and not last) or self.segment.count == 0:
            return
        seg, self.segment = self.segment, RunningMean()
        self.segment_epochs.append(int(epoch))
        was_converged = self.detector.converged
        event = self.detector.update(float(stats["loss"]))
        self.pending.append(seg)
        self.pending_loss.append(float(stats["loss"]))
        if not was_converged and event is None:
            # Before convergence only the last n_converge segments can open the valley.
            self.pending = self.pending[-self.detector.n_converge:]
            self.pending_loss = self.pending_loss[-self.detector.n_converge:]
        elif event == "end":
            keep = len(self.pending) - self.detector.n_tolerance
            for m in self.pending[:max(0, keep)]:
                self.valley.merge(m)
            self.pending, self.pending_loss = [], []
        else:
            if event == "start":
                n = len(self.detector.losses) - self.detector.start
                self.pending, self.pending_loss = self.pending[-n:], self.pending_loss[-n:]
            while len(self.pending) > self.detector.n_tolerance:
                self.valley.merge(self.pending.pop(0))
                self.pending_loss.pop(0)

    def on_fit_end(self, brain, train_loader):
        det = self.detector
        if det.converged and not det.dead:
            for m in self.pending:
                self.valley.merge(m)
            self.pending = []
            end = len(det.losses) - 1
            how = "valley still open at the end of training"
        elif det.dead:
            end = det.end
            how = "valley closed"
        else:
            if not self.pending:
                return None
            # Never converged: the lowest loss is within the last n_converge - 1 segments
            # (else the window starting there would have opened a valley).
            lo = min(range(len(self.pending_loss)), key=self.pending_loss.__getitem__)
            for m in self.pending[lo:]:
                self.valley.merge(m)
            start = len(det.losses) - len(self.pending) + lo
            sel = (f"SWAD fallback: validation loss formed no valley, so the per-step snapshots of "
                   f"epochs {self.segment_epochs[start - 1] + 1 if start else 1}-{self.segment_epochs[-1]} "
                   f"(from the lowest validation loss on) were averaged ({self.valley.count} snapshots)")
            return self.finalize(brain, train_loader, self.valley.result(self.student(brain).state_dict()),
                                 sel, self.segment_epochs[-1])
        if self.valley.count == 0:
            return None
        first_epoch = self.segment_epochs[det.start - 1] + 1 if det.start else 1
        sel = (f"SWAD: mean of every per-step snapshot in the training-domain validation-loss valley, "
               f"epochs {first_epoch}-{self.segment_epochs[end]} ({how}; {self.valley.count} snapshots)")
        return self.finalize(brain, train_loader, self.valley.result(self.student(brain).state_dict()),
                             sel, self.segment_epochs[end])

    def state_dict(self):
        return {**super().state_dict(), "detector": self.detector.state_dict(),
                "segment": self.segment.state_dict(), "pending": [m.state_dict() for m in self.pending],
                "pending_loss": list(self.pending_loss), "valley": self.valley.state_dict(),
                "segment_epochs": list(self.segment_epochs)}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.detector.load_state_dict(state["detector"])
        self.segment.load_state_dict(state["segment"])
        self.pending = []
        for s in state["pending"]:
            m = RunningMean()
            m.load_state_dict(s)
            self.pending.append(m)
        self.pending_loss = [float(v) for v in state["pending_loss"]]
        self.valley.load_state_dict(state["valley"])
        self.segment_epochs = [int(e) for e in state["segment_epochs"]]
