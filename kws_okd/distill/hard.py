"""HARD: distillation on inputs that a learned augmenter makes hard (after Nix et al., 2023).

The objective owns an augmenter ``g`` (any ``nn.Module`` mapping a batch of inputs to
a batch of the same shape, differentiable in its parameters) and an Adam optimiser
for it. Each call makes one alternating update (docs/hard.md):

1. augmenter step, on ``x_h = g(x)``::

       L_g = -KD(s(x_h), t(x_h)) + penalty_weight * P
       P   = KL(t(x) || t(x_h))        (penalty "teacher": the teacher's reading is kept)
       P   = CE(t(x_h), y)             (penalty "label":   the teacher still sees class y)

   gradients reach ``g`` through both frozen networks; only ``g``'s parameters move
   (computed with ``torch.autograd.grad``, so no gradient lands on the student);
2. student loss, on the same (now detached) ``x_h``::

       ce_weight * CE(s(x), y) + kd_weight * KD(s(x), t(x)) + hard_weight * KD(s(x_h), t(x_h))
       [+ okd_weight * KD(s(x_ood), t(x_ood)),  x_ood = augment(x)   ("hard_okd")]

Knows nothing about audio or images. A config dict for the augmenter is turned into a
module by a factory that the augmentation package registers
(:func:`register_augmenter_factory`); a ready module can be passed directly.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from kws_okd.distill.losses import Objective, kd_loss, register_objective
from kws_okd.errors import ConfigError

_AUGMENTER_FACTORY: Callable[[dict], nn.Module] | None = None


def register_augmenter_factory(factory: Callable[[dict], nn.Module]) -> None:
    """Tell HARD how to build an augmenter from a ``{name: ..., ...}`` dict."""
    global _AUGMENTER_FACTORY
    _AUGMENTER_FACTORY = factory


def build_augmenter(spec) -> nn.Module:
    if isinstance(spec, nn.Module):
        return spec
    if not isinstance(spec, dict) or "name" not in spec:
        raise ConfigError(f"distill.augmenter: expected a module or a {{name: ...}} dict, got {spec!r}")
    if _AUGMENTER_FACTORY is None:
        raise ConfigError("distill.augmenter: no augmenter factory is registered (import the "
                          "package that defines the learnable augmenters before building HARD)")
    module = _AUGMENTER_FACTORY(dict(spec))
    if not isinstance(module, nn.Module) or not any(p.requires_grad for p in module.parameters()):
        raise ConfigError(f"distill.augmenter: {spec.get('name')!r} has no learnable parameters")
    return module


@register_objective("hard")
class HARD(Objective):
    """Student distilled on clean inputs and on inputs a learned augmenter makes hard."""

    PENALTIES = ("teacher", "label")

    def __init__(self, augmenter, lr: float = 1e-3, weight_decay: float = 0.0, temperature: float = 4.0,
                 ce_weight: float = 0.1, kd_weight: float = 0.9, hard_weight: float = 0.9,
                 penalty: str = "teacher", penalty_weight: float = 1.0, okd_weight: float = 0.0,
                 grad_clip: float | None = 5.0):
        if penalty not in self.PENALTIES:
            raise ConfigError(f"distill.penalty: {penalty!r} is not one of {self.PENALTIES}")
        if float(lr) <= 0:
            raise ConfigError(f"distill.lr: the augmenter's learning rate must be > 0, got {lr}")
        self.augmenter = build_augmenter(augmenter)
        self.params = [p for p in self.augmenter.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.params, lr=float(lr), weight_decay=float(weight_decay))
        self.temperature = float(temperature)
        self.ce_weight, self.kd_weight, self.hard_weight = float(ce_weight), float(kd_weight), float(hard_weight)
        self.penalty, self.penalty_weight = penalty, float(penalty_weight)
        self.okd_weight = float(okd_weight)
        self.grad_clip = grad_clip

    def recoverables(self) -> dict:
        return {"hard_augmenter": self.augmenter, "hard_optimizer": self.optimizer}

    def _place(self, x):
        p = self.params[0]
        if p.device != x.device:  # module.to moves parameters in place: the optimiser keeps them
            self.augmenter.to(x.device)

    def augmenter_loss(self, student, teacher, x, y, t_clean):
        """``(L_g, x_h, t(x_h), logs)``; ``L_g`` is differentiable in the augmenter only."""
        self.augmenter.train()
        x_h = self.augmenter(x)
        t_h, s_h = teacher(x_h), student(x_h)
        disagreement = kd_loss(s_h, t_h, self.temperature)
        if self.penalty == "teacher":
            log_t_h = F.log_softmax(t_h, dim=-1)
            p_t = F.softmax(t_clean, dim=-1)
            pen = (p_t * (torch.log(p_t.clamp_min(1e-12)) - log_t_h)).sum(-1).mean()
        else:
            pen = F.cross_entropy(t_h, y)
        loss = -disagreement + self.penalty_weight * pen
        return loss, x_h, t_h, {"aug_kl": disagreement.detach(), "aug_penalty": pen.detach()}

    def update_augmenter(self, student, teacher, x, y, t_clean):
        loss, x_h, t_h, logs = self.augmenter_loss(student, teacher, x, y, t_clean)
        grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        for p, g in zip(self.params, grads):
            p.grad = None if g is None else g.detach()
        if self.grad_clip:
            nn.utils.clip_grad_norm_(self.params, float(self.grad_clip))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return x_h.detach(), t_h.detach(), logs

    def __call__(self, student, teacher, x, y, augment=None):
        if teacher is None:
            raise ValueError("HARD needs a teacher")
        if self.okd_weight and augment is None:
            raise ValueError("HARD with okd_weight > 0 needs an augmentation callable for x_ood")
        self._place(x)
        t = self.teach(teacher, x)
        # The same hard batch serves both alternating updates: one teacher pass saved.
        x_h, t_h, logs = self.update_augmenter(student, teacher, x, y, t)
        s, s_h = student(x), student(x_h)
        ce = F.cross_entropy(s, y)
        kd = kd_loss(s, t, self.temperature)
        kd_h = kd_loss(s_h, t_h, self.temperature)
        loss = self.ce_weight * ce + self.kd_weight * kd + self.hard_weight * kd_h
        logs.update(ce=ce.detach(), kd=kd.detach(), kd_hard=kd_h.detach())
        if self.okd_weight:
            x_ood = augment(x)
            s_ood, t_ood = student(x_ood), self.teach(teacher, x_ood)
            kd_ood = kd_loss(s_ood, t_ood, self.temperature)
            loss = loss + self.okd_weight * kd_ood
            logs["kd_ood"] = kd_ood.detach()
        return loss, s, logs


@register_objective("hard_okd")
class HARDOKD(HARD):
    """HARD plus OKD's term on disruptively augmented inputs (``okd_weight`` 0.9)."""
    needs_augment = True

    def __init__(self, augmenter, okd_weight: float = 0.9, **kwargs):
        super().__init__(augmenter, okd_weight=okd_weight, **kwargs)
