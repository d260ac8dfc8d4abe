"""Training objectives: ERM, KD and OKD. One small class per method.

Every objective is called as ``objective(student, teacher, x, y, augment)`` and
returns ``(loss, student_logits_on_x, logs)``. ``student`` and ``teacher`` are
callables from inputs to logits; the teacher is always frozen (no gradient).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from kws_okd.errors import ConfigError
from kws_okd.utils.registry import Registry

OBJECTIVES = Registry("objective", name_attr="name")
register_objective = OBJECTIVES.register


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


def fold_into(logits, rows, into: int, keep, temperature: float, share: float = 1.0) -> torch.Tensor:
    """Teacher logits in which, on ``rows`` (bool mask), ``share`` of the probability at
    ``temperature`` of every class except ``into`` and ``keep`` is moved onto class
    ``into``; other rows are unchanged. The move is made on probabilities; their log (at
    T) is again a logit, floored at 1e-30 so that a class folded whole stays finite and
    the KL's ``0 * log 0`` stays 0."""
    fold = torch.ones(logits.shape[-1], dtype=torch.bool, device=logits.device)
    fold[into] = False
    fold[list(keep)] = False
    if not rows.any() or not fold.any() or share <= 0:
        return logits
    p = torch.softmax(logits[rows] / temperature, dim=-1)
    moved = share * p[:, fold].sum(-1)
    p[:, fold] *= 1.0 - share
    p[:, into] += moved
    out = logits.clone()
    out[rows] = temperature * p.clamp_min(1e-30).log()
    return out


@register_objective("okd")
class OKD(KD):
    """KD plus distillation on disruptively augmented inputs (Zhou et al., 2022):
    ``0.1 CE(s(x), y) + 0.9 KD(s(x), t(x)) + 0.9 KD(s(x_ood), t(x_ood))`` with the same
    ``x_ood = augment(x)`` fed to both networks and no label loss on ``x_ood``.

    ``reject_class`` (a class name, e.g. ``_unknown_``): on the ``x_ood`` rows that the
    augmentation marks as holding no target (``augment.known_reject``, a bool mask, e.g.
    a real recording alone), the teacher's probability of every class but this one and
    ``_silence_`` is moved onto it (``reject_share`` of it: 1 = all), so a teacher that
    hears a keyword in such audio does not teach the student to. ``auto``: ``_unknown_``
    when the task has it, off when it does not. Needs :meth:`set_classes`."""
    needs_augment = True

    def __init__(self, ce_weight=0.1, kd_weight=0.9, ood_weight=0.9, temperature=4.0,
                 reject_class=None, reject_share=1.0):
        super().__init__(ce_weight, kd_weight, temperature)
        self.ood_weight = ood_weight
        if not 0.0 < float(reject_share) <= 1.0:
            raise ConfigError(f"distill.reject_share must be in (0, 1], got {reject_share!r}")
        self.reject_share = float(reject_share)
        self.reject_class = reject_class
        self._reject, self._classes_set = None, False

    def set_classes(self, classes) -> None:
        classes = list(classes)
        into = self.reject_class
        if into == "auto":   # the task's _unknown_ if it has one (12-class), else off (35-class)
            into = "_unknown_" if "_unknown_" in classes else None
        if into is not None and into not in classes:
            raise ConfigError(f"distill.reject_class: {into!r} not among the task's classes {classes}")
        keeps = [c for c in ("_silence_",) if c in classes and c != into]
        self._reject = None if into is None else (classes.index(into), [classes.index(c) for c in keeps])
        self._classes_set = True

    def __call__(self, student, teacher, x, y, augment=None):
        if augment is None:
            raise ValueError("OKD needs an augmentation callable to synthesise x_ood")
        if self.reject_class is not None and not self._classes_set:
            raise ConfigError("distill.reject_class is set but set_classes() was never called")
        x_ood = augment(x)
        s, s_ood = student(x), student(x_ood)
        t_all = self.teach(teacher, torch.cat([x, x_ood]))
        t, t_ood = t_all[: len(x)], t_all[len(x):]
        if self._reject is not None:
            known = getattr(augment, "known_reject", None)
            if known is None:
                raise ConfigError(f"distill.reject_class: the augmentation {type(augment).__name__} does not "
                                  "mark which x_ood rows hold no target (known_reject); use real_audio")
            t_ood = fold_into(t_ood, known.to(t_ood.device), self._reject[0], self._reject[1], self.temperature,
                              self.reject_share)
        ce = F.cross_entropy(s, y)
        kd = kd_loss(s, t, self.temperature)
        kd_ood = kd_loss(s_ood, t_ood, self.temperature)
        loss = self.ce_weight * ce + self.kd_weight * kd + self.ood_weight * kd_ood
        return loss, s, {"ce": ce.detach(), "kd": kd.detach(), "kd_ood": kd_ood.detach()}


# ---------------------------------------------------------------------------------------
# Further objectives from the distillation literature (DESIGN.md, "Other distillation
# ideas"): curriculum temperature, balanced forward/reverse KL, teacher assistants.
# ---------------------------------------------------------------------------------------

def kl_per_sample(log_p, log_q) -> torch.Tensor:
    """``KL(p || q)`` per row from log-probabilities."""
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1)


@register_objective("ctkd")
class CTKD(KD):
    """Curriculum temperature KD (after Li et al., 2023):
    ``ce_weight * CE + kd_weight * KD(s, t; T)`` with a temperature that changes during
    training and always stays in ``[t_min, t_max]``.

    ``mode: learned`` (default): ``T = t_min + (t_max - t_min) * sigmoid(theta)`` is
    trained *adversarially* - to raise the KD loss the student lowers - with a strength
    ``lambda`` that follows a cosine curriculum from 0 to ``lambda_max`` over training.
    This is gradient reversal done explicitly: the student's loss uses ``T`` detached,
    and ``theta`` gets its own optimiser step on ``-lambda * KD`` (so the trainer's
    optimiser never needs to know about ``theta``).

    ``mode: schedule``: ``T`` moves from ``t_start`` to ``t_end`` along a half cosine of
    the training progress (no learning).

    The Brain calls :meth:`set_progress` with the fraction of training done before each
    step."""

    MODES = ("learned", "schedule")

    def __init__(self, ce_weight=0.1, kd_weight=0.9, t_min=1.0, t_max=10.0, mode="learned",
                 t_init=4.0, lambda_max=1.0, lr=0.05, t_start=None, t_end=None):
        super().__init__(ce_weight, kd_weight, float(t_init))
        if not 0 < float(t_min) <= float(t_init) <= float(t_max) or float(t_min) == float(t_max):
            raise ConfigError(f"distill: CTKD needs 0 < t_min <= t_init <= t_max and t_min < t_max, "
                              f"got {t_min}, {t_init}, {t_max}")
        if mode not in self.MODES:
            raise ConfigError(f"distill.mode: {mode!r} is not one of {self.MODES}")
        self.t_min, self.t_max, self.mode = float(t_min), float(t_max), mode
        self.lambda_max = float(lambda_max)
        self.t_start = float(t_max if t_start is None else t_start)
        self.t_end = float(t_min if t_end is None else t_end)
        frac = (float(t_init) - self.t_min) / (self.t_max - self.t_min)
        frac = min(max(frac, 1e-4), 1 - 1e-4)
        self.theta = torch.nn.Parameter(torch.tensor(float(torch.logit(torch.tensor(frac)))))
        self.optimizer = torch.optim.SGD([self.theta], lr=float(lr))
        self.progress = 0.0

    def set_progress(self, fraction: float) -> None:
        self.progress = min(1.0, max(0.0, float(fraction)))

    def curriculum(self) -> float:
        """Adversarial strength ``lambda`` at the current progress (cosine 0 -> lambda_max)."""
        return self.lambda_max * 0.5 * (1 - math.cos(math.pi * self.progress))

    def current_temperature(self) -> torch.Tensor:
        if self.mode == "schedule":
            w = 0.5 * (1 - math.cos(math.pi * self.progress))
            t = self.t_start + (self.t_end - self.t_start) * w
            return torch.tensor(min(self.t_max, max(self.t_min, t)))
        t = self.t_min + (self.t_max - self.t_min) * torch.sigmoid(self.theta)
        return t.clamp(self.t_min, self.t_max)

    def recoverables(self) -> dict:
        return {"ctkd_temperature": _ParamHolder(self.theta), "ctkd_optimizer": self.optimizer}

    def __call__(self, student, teacher, x, y, augment=None):
        s, t = student(x), self.teach(teacher, x)
        if self.mode == "learned":
            lam = self.curriculum()
            if lam > 0:
                self.theta.data = self.theta.data.to(s.device)
                adv = -lam * kd_loss(s.detach(), t, self.current_temperature())
                (g,) = torch.autograd.grad(adv, [self.theta])
                self.theta.grad = g
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
        temp = float(self.current_temperature().detach())
        self.temperature = temp
        ce = F.cross_entropy(s, y)
        kd = kd_loss(s, t, temp)
        return (self.ce_weight * ce + self.kd_weight * kd, s,
                {"ce": ce.detach(), "kd": kd.detach(), "temperature": torch.tensor(temp)})


class _ParamHolder(torch.nn.Module):
    """Lets the checkpointer save a bare parameter (it knows modules, not tensors)."""

    def __init__(self, param):
        super().__init__()
        self.param = param


@register_objective("bdkd")
class BDKD(KD):
    """Balanced forward/reverse KL distillation (after BD-KD, Amara et al., 2022):
    ``ce_weight * CE + kd_weight * T^2 * mean_i(w_f,i KL(p_t || p_s) + w_r,i KL(p_s || p_t))``.

    Forward KL (Hinton's KD) is mean-seeking: it spreads the student over all the classes
    the teacher considers; reverse KL is mode-seeking. With ``adaptive: false`` the
    weights are the constants ``forward_weight``/``reverse_weight``. With ``adaptive: true``
    each sample's weights follow the entropies of the two softened distributions,
    ``w_f = 2 H(p_t) / (H(p_t) + H(p_s))`` and ``w_r = 2 H(p_s) / (H(p_t) + H(p_s))`` (this
    project's balancing rule; weights detached, summing to 2): where the student is more
    uncertain than the teacher reverse KL, which sharpens it, gets more weight, and where
    the teacher is the more uncertain one forward KL, which transfers its spread, does."""

    def __init__(self, ce_weight=0.1, kd_weight=0.9, temperature=4.0, forward_weight=0.5,
                 reverse_weight=0.5, adaptive=False):
        super().__init__(ce_weight, kd_weight, temperature)
        self.forward_weight, self.reverse_weight = float(forward_weight), float(reverse_weight)
        self.adaptive = bool(adaptive)

    def divergence(self, s, t):
        T = self.temperature
        log_ps, log_pt = F.log_softmax(s / T, dim=-1), F.log_softmax(t / T, dim=-1)
        fkl, rkl = kl_per_sample(log_pt, log_ps), kl_per_sample(log_ps, log_pt)
        if self.adaptive:
            with torch.no_grad():
                h_t = -(log_pt.exp() * log_pt).sum(-1)
                h_s = -(log_ps.exp() * log_ps).sum(-1)
                total = (h_t + h_s).clamp_min(1e-12)
                w_f, w_r = 2 * h_t / total, 2 * h_s / total
        else:
            w_f, w_r = self.forward_weight, self.reverse_weight
        return T * T * (w_f * fkl + w_r * rkl).mean(), fkl.mean().detach(), rkl.mean().detach()

    def __call__(self, student, teacher, x, y, augment=None):
        s, t = student(x), self.teach(teacher, x)
        ce = F.cross_entropy(s, y)
        kd, fkl, rkl = self.divergence(s, t)
        return (self.ce_weight * ce + self.kd_weight * kd, s,
                {"ce": ce.detach(), "kd": kd.detach(), "fkl": fkl, "rkl": rkl})


@register_objective("takd")
class TAKD(KD):
    """Teacher-assistant KD (Mirzadeh et al., 2020), the student stage: plain KD whose
    "teacher" is an assistant of intermediate size that was itself distilled from the
    real teacher. The loss is KD's; what differs is the network that teaches, so the
    assistant's ``model.pt`` must be given as ``assistant_ckpt`` (kws_okd.train.takd
    trains the assistant first and then sets it, together with ``teacher_ckpt``)."""

    def __init__(self, ce_weight=0.1, kd_weight=0.9, temperature=4.0, assistant="dscnn",
                 assistant_ckpt=None):
        super().__init__(ce_weight, kd_weight, temperature)
        if assistant_ckpt is None:
            raise ConfigError("distill.assistant_ckpt: TAKD needs the assistant's model.pt; run "
                              "`python -m kws_okd.train.takd` (trains the assistant by KD from the "
                              "teacher, then the student from the assistant)")
        self.assistant, self.assistant_ckpt = assistant, str(assistant_ckpt)


@register_objective("wakd")
class WAKDObjective(KD):
    """WAKD's training objective: KD's class with WAKD's published settings as defaults -
    pure KD (no label loss), ``T = 5``. Registered under its own name only so that its
    runs get their own result folder; the weight averaging is the ``averaging=wakd``
    callback."""

    def __init__(self, ce_weight=0.0, kd_weight=1.0, temperature=5.0):
        super().__init__(ce_weight, kd_weight, temperature)
