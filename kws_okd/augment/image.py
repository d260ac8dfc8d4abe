"""OKD's image disruptive augmentations on batches (B, C, H, W).

``fusion`` (the OKD default), ``cutmix``, ``jigsaw``, ``pixel_noise`` and ``fgsm``;
plain ``mixup`` is the generic one of :mod:`kws_okd.augment.disruptive` (it works on
any shape). Each transform splits into ``sample(x)`` (its random parameters, returned
as a dict so tests and visualisations can check them) and ``apply(x, params)``.

Models inside augmentations
---------------------------
``fgsm`` needs gradients of a network. Rather than building one, it is *bound* to the
networks being trained: it declares ``needs_networks = True`` and the trainer's
generic :func:`kws_okd.augment.registry.bind_networks` (which walks nested policies
such as ``one_of``) calls its ``bind(student=..., teacher=...)``; the trainer knows
nothing about images. The bound networks are kept outside the module's registered
children, so they are never moved, saved or trained through the augmentation. An
unbound ``fgsm`` raises a ConfigError saying so.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kws_okd.augment.disruptive import Mixup
from kws_okd.augment.registry import bind_networks, register_augmentation
from kws_okd.errors import ConfigError


def bind_models(augment, student=None, teacher=None):
    """Give every network-driven transform inside ``augment`` the networks of this run
    (the generic :func:`~kws_okd.augment.registry.bind_networks`, kept under its old
    name for callers binding by hand)."""
    return bind_networks(augment, student=student, teacher=teacher)


def _beta(alpha, n, like):
    return torch.distributions.Beta(float(alpha), float(alpha)).sample((n,)).to(like)


def _per_sample(v, x):
    return v.view(-1, *([1] * (x.dim() - 1)))


def box_mask(h, w, lam, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """One random box per sample covering about ``1 - lam`` of the image (centre
    uniform, clipped at the borders). Returns the mask (B, 1, H, W), True inside the
    box, and the exact fraction of the image the box covers (B,)."""
    b = lam.shape[0]
    cut = (1.0 - lam).clamp(0, 1).sqrt()
    bh, bw = (cut * h).round(), (cut * w).round()
    cy = torch.rand(b, device=device) * h
    cx = torch.rand(b, device=device) * w
    y0, y1 = (cy - bh / 2).clamp(0, h), (cy + bh / 2).clamp(0, h)
    x0, x1 = (cx - bw / 2).clamp(0, w), (cx + bw / 2).clamp(0, w)
    ys = torch.arange(h, device=device).view(1, h, 1) + 0.5
    xs = torch.arange(w, device=device).view(1, 1, w) + 0.5
    inside = ((ys >= y0.view(-1, 1, 1)) & (ys < y1.view(-1, 1, 1)) &
              (xs >= x0.view(-1, 1, 1)) & (xs < x1.view(-1, 1, 1)))
    area = inside.flatten(1).float().mean(1)
    return inside.unsqueeze(1), area


@register_augmentation("cutmix")
class CutMix(Mixup):
    """Paste a box of another image of the batch; the box covers about ``1 - lam`` of
    the image, lam ~ Beta(alpha, alpha). (A :class:`Mixup` subclass so ``one_of``
    draws partners from the whole batch, not the selected subset.)"""

    def sample(self, x):
        b, _, h, w = x.shape
        perm = torch.randperm(b, device=x.device)
        mask, area = box_mask(h, w, _beta(self.alpha, b, x), device=x.device)
        return {"perm": perm, "mask": mask, "lam": 1.0 - area}

    @staticmethod
    def apply(x, p):
        return torch.where(p["mask"], x[p["perm"]], x)

    def forward(self, x):
        return self.apply(x, self.sample(x))


@register_augmentation("fusion")
class Fusion(Mixup):
    """OKD's default image disruption: mixup and CutMix of the same pair of images,
    blended per sample with a third weight ``w`` ~ Beta(alpha, alpha):
    ``w * (lam x + (1 - lam) x') + (1 - w) * cutmix(x, x')``."""

    def sample(self, x):
        b, _, h, w = x.shape
        perm = torch.randperm(b, device=x.device)
        mask, area = box_mask(h, w, _beta(self.alpha, b, x), device=x.device)
        return {"perm": perm, "lam": _beta(self.alpha, b, x), "mask": mask,
                "cut_lam": 1.0 - area, "w": _beta(self.alpha, b, x)}

    @staticmethod
    def apply(x, p):
        other = x[p["perm"]]
        lam, w = _per_sample(p["lam"], x), _per_sample(p["w"], x)
        mixed = lam * x + (1 - lam) * other
        cut = torch.where(p["mask"], other, x)
        return w * mixed + (1 - w) * cut

    def forward(self, x):
        return self.apply(x, self.sample(x))


@register_augmentation("jigsaw")
class Jigsaw(nn.Module):
    """Cut each image into a ``grid`` x ``grid`` of tiles and shuffle them (never the
    identity order). Rows/columns beyond a multiple of ``grid`` stay in place."""

    def __init__(self, grid: int = 2):
        super().__init__()
        if grid < 2:
            raise ValueError(f"jigsaw: grid must be >= 2, got {grid}")
        self.grid = int(grid)

    def sample(self, x):
        b, n = x.shape[0], self.grid ** 2
        order = torch.argsort(torch.rand(b, n, device=x.device), dim=1)
        ident = (order == torch.arange(n, device=x.device)).all(1)
        order[ident] = order[ident].roll(1, dims=1)  # a cyclic shift is never the identity
        return {"order": order}

    def apply(self, x, p):
        b, c, h, w = x.shape
        g = self.grid
        th, tw = h // g, w // g
        if th == 0 or tw == 0:
            raise ValueError(f"jigsaw: images of {h}x{w} are too small for a {g}x{g} grid")
        core = x[:, :, :th * g, :tw * g]
        tiles = core.reshape(b, c, g, th, g, tw).permute(0, 2, 4, 1, 3, 5).reshape(b, g * g, c, th, tw)
        tiles = tiles[torch.arange(b, device=x.device)[:, None], p["order"]]
        core = tiles.reshape(b, g, g, c, th, tw).permute(0, 3, 1, 4, 2, 5).reshape(b, c, th * g, tw * g)
        out = x.clone()
        out[:, :, :th * g, :tw * g] = core
        return out

    def forward(self, x):
        return self.apply(x, self.sample(x))


@register_augmentation("pixel_noise")
class PixelNoise(nn.Module):
    """Additive Gaussian noise with a standard deviation drawn per image from
    [min_std, max_std] (in units of the normalised input, whose range is [-1, 1])."""

    def __init__(self, min_std: float = 0.1, max_std: float = 0.5):
        super().__init__()
        if not 0 <= min_std <= max_std:
            raise ValueError(f"pixel_noise: need 0 <= min_std <= max_std, got {min_std}, {max_std}")
        self.min_std, self.max_std = min_std, max_std

    def sample(self, x):
        std = torch.empty(x.shape[0], device=x.device).uniform_(self.min_std, self.max_std)
        return {"std": std, "noise": torch.randn_like(x)}

    @staticmethod
    def apply(x, p):
        return x + _per_sample(p["std"], x) * p["noise"]

    def forward(self, x):
        return self.apply(x, self.sample(x))


@register_augmentation("fgsm")
class FGSM(nn.Module):
    """One signed-gradient step of size ``eps`` that increases the cross-entropy of a
    bound network (``model``: ``teacher`` or ``student``) against its *own* prediction
    on the clean input, so no labels are needed. Falls back to the student when no
    teacher is bound. The network is run in eval mode for the step (batch-norm
    statistics untouched) and no parameter gradient is accumulated."""

    needs_networks = True  # bound by kws_okd.augment.registry.bind_networks

    def __init__(self, eps: float = 1e-3, model: str = "teacher"):
        super().__init__()
        if model not in ("teacher", "student"):
            raise ValueError(f"fgsm: model must be 'teacher' or 'student', got {model!r}")
        self.eps, self.model = float(eps), model
        # A plain dict, not attributes: bound networks must not become submodules.
        self._bound: dict = {}

    def bind(self, student=None, teacher=None):
        self._bound = {"student": student, "teacher": teacher}

    bind_models = bind  # the method's former name

    def network(self):
        net = self._bound.get(self.model) or self._bound.get("student")
        if net is None:
            raise ConfigError("augment: fgsm needs a network and none is bound; the trainer binds "
                              "it (kws_okd.augment.registry.bind_networks), by hand call "
                              "bind_models(augment, student=..., teacher=...)")
        return net

    def forward(self, x):
        net = self.network()
        was_training = net.training
        net.eval()
        try:
            with torch.enable_grad():
                x_adv = x.detach().clone().requires_grad_(True)
                logits = net(x_adv)
                loss = F.cross_entropy(logits, logits.detach().argmax(-1))
                (grad,) = torch.autograd.grad(loss, x_adv)
        finally:
            net.train(was_training)
        return (x + self.eps * grad.sign()).detach()
