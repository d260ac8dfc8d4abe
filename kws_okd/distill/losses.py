"""Training objectives: ERM, KD and OKD. One small class per method.

Every objective is called as ``objective(student, teacher, x, y, augment)`` and
returns ``(loss, student_logits_on_x, logs)``. ``student`` and ``teacher`` are
callables from inputs to logits; the teacher is always frozen (no gradient).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

OBJECTIVES: dict[str, type["Objective"]] = {}


def register_objective(name):
    def deco(cls):
        OBJECTIVES[name] = cls
        cls.name = name
        return cls
    return deco


def build_objective(name: str, **kwargs) -> "Objective":
    if name not in OBJECTIVES:
        raise KeyError(f"unknown distillation method {name!r}; known: {sorted(OBJECTIVES)}")
    return OBJECTIVES[name](**kwargs)


def kd_loss(student_logits, teacher_logits, temperature: float) -> torch.Tensor:
    """Hinton KD: ``T^2 * KL(softmax(t/T) || softmax(s/T))``, averaged over the batch."""
    t = temperature
    log_p_s = F.log_softmax(student_logits / t, dim=-1)
    log_p_t = F.log_softmax(teacher_logits / t, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=-1)
    return t * t * kl.mean()


class Objective:
    name = ""
    needs_teacher = True
    needs_augment = False

    @staticmethod
    def teach(teacher, x):
        with torch.no_grad():
            return teacher(x)

    def __call__(self, student, teacher, x, y, augment=None):
        raise NotImplementedError


@register_objective("erm")
class ERM(Objective):
    """Plain cross-entropy on labels; no teacher."""
    needs_teacher = False

    def __call__(self, student, teacher, x, y, augment=None):
        s = student(x)
        loss = F.cross_entropy(s, y)
        return loss, s, {"ce": loss.detach()}


@register_objective("kd")
class KD(Objective):
    """``ce_weight * CE(s(x), y) + kd_weight * KD(s(x), t(x))`` (OKD paper's KD baseline)."""

    def __init__(self, ce_weight=0.1, kd_weight=0.9, temperature=4.0):
        self.ce_weight, self.kd_weight, self.temperature = ce_weight, kd_weight, temperature

    def __call__(self, student, teacher, x, y, augment=None):
        s, t = student(x), self.teach(teacher, x)
        ce = F.cross_entropy(s, y)
        kd = kd_loss(s, t, self.temperature)
        return self.ce_weight * ce + self.kd_weight * kd, s, {"ce": ce.detach(), "kd": kd.detach()}


@register_objective("okd")
class OKD(KD):
    """KD plus distillation on disruptively augmented inputs (Zhou et al., 2022):
    ``0.1 CE(s(x), y) + 0.9 KD(s(x), t(x)) + 0.9 KD(s(x_ood), t(x_ood))`` with the same
    ``x_ood = augment(x)`` fed to both networks and no label loss on ``x_ood``."""
    needs_augment = True

    def __init__(self, ce_weight=0.1, kd_weight=0.9, ood_weight=0.9, temperature=4.0):
        super().__init__(ce_weight, kd_weight, temperature)
        self.ood_weight = ood_weight

    def __call__(self, student, teacher, x, y, augment=None):
        if augment is None:
            raise ValueError("OKD needs an augmentation callable to synthesise x_ood")
        x_ood = augment(x)
        s, s_ood = student(x), student(x_ood)
        t_all = self.teach(teacher, torch.cat([x, x_ood]))
        t, t_ood = t_all[: len(x)], t_all[len(x):]
        ce = F.cross_entropy(s, y)
        kd = kd_loss(s, t, self.temperature)
        kd_ood = kd_loss(s_ood, t_ood, self.temperature)
        loss = self.ce_weight * ce + self.kd_weight * kd + self.ood_weight * kd_ood
        return loss, s, {"ce": ce.detach(), "kd": kd.detach(), "kd_ood": kd_ood.detach()}
