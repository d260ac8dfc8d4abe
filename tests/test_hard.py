import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kws_okd.augment import build_augmentation
from kws_okd.augment import learnable, learnable_image  # noqa: F401  (registration, HARD's factory)
from kws_okd.distill import build_objective, kd_loss
from kws_okd.distill import hard  # noqa: F401  (registers hard, hard_okd)
from kws_okd.errors import ConfigError


class Linear(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w))

    def forward(self, x):
        return x @ self.w


class Shift(nn.Module):
    """A deterministic learnable augmenter: x + b."""

    def __init__(self, b):
        super().__init__()
        self.b = nn.Parameter(torch.tensor(b))

    def forward(self, x):
        return x + self.b


X = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
Y = torch.tensor([0, 1, 0])


def nets():
    s, t = Linear([[1.0, -1.0], [0.5, 0.5]]), Linear([[2.0, 0.0], [0.0, 3.0]])
    t.w.requires_grad_(False)
    return s, t


def test_augmenter_moves_to_raise_teacher_student_kl():
    s, t = nets()
    aug = Shift([0.1, -0.2])
    obj = build_objective("hard", augmenter=aug, lr=0.05, penalty_weight=0.0, grad_clip=None)

    def disagreement(b):
        xh = X + b
        return kd_loss(xh @ s.w, xh @ t.w, 4.0)

    b0 = aug.b.detach().clone()
    b = b0.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(disagreement(b), [b])
    obj(s, t, X, Y)
    step = aug.b.detach() - b0
    assert torch.all(torch.sign(step) == torch.sign(grad))  # ascent on the KL (Adam: lr * sign)
    assert torch.allclose(step.abs(), torch.full_like(step, 0.05), rtol=1e-3)
    assert disagreement(aug.b.detach()) > disagreement(b0)


def test_student_loss_value_and_no_stray_gradients():
    s, t = nets()
    aug = Shift([0.3, -0.1])
    b0 = aug.b.detach().clone()
    obj = build_objective("hard", augmenter=aug, lr=0.01)
    loss, logits, logs = obj(s, t, X, Y)
    assert s.w.grad is None and t.w.grad is None  # the augmenter step left no gradient on the nets
    xh = X + b0  # the hard batch is the one made before the augmenter's update
    sl, tl = X @ s.w, X @ t.w
    expected = (0.1 * F.cross_entropy(sl, Y) + 0.9 * kd_loss(sl, tl, 4.0)
                + 0.9 * kd_loss(xh @ s.w, xh @ t.w, 4.0))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert torch.equal(logits, sl)
    loss.backward()
    assert s.w.grad is not None and aug.b.grad is None


def test_penalties_by_hand():
    s, t = nets()
    b = [0.2, 0.4]
    xh = X + torch.tensor(b)
    th, tc = xh @ t.w, X @ t.w
    for penalty, expected in [
        ("label", F.cross_entropy(th, Y)),
        ("teacher", (F.softmax(tc, -1) * (F.log_softmax(tc, -1) - F.log_softmax(th, -1))).sum(-1).mean()),
    ]:
        obj = build_objective("hard", augmenter=Shift(b), penalty=penalty, penalty_weight=2.0)
        loss, _, _, logs = obj.augmenter_loss(s, t, X, Y, tc)
        assert logs["aug_penalty"].item() == pytest.approx(expected.item(), rel=1e-5)
        want = -kd_loss(xh @ s.w, th, 4.0) + 2.0 * expected
        assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    with pytest.raises(ConfigError, match="distill.penalty"):
        build_objective("hard", augmenter=Shift(b), penalty="nope")


def test_speech_augmenter_from_config_learns_and_is_checkpointable():
    torch.manual_seed(0)
    spec = {"name": "compose", "transforms": [{"name": "learnable_eq", "bands": 4},
                                              {"name": "learnable_noise"}, {"name": "learnable_time"},
                                              {"name": "learnable_reverb", "rt60_max": 0.2},
                                              {"name": "learnable_gain"}]}
    obj = build_objective("hard", augmenter=spec, lr=0.01)
    params0 = [p.detach().clone() for p in obj.augmenter.parameters()]
    feat = nn.Sequential(nn.Unfold((1, 100), stride=(1, 100)))
    s = nn.Sequential(nn.Unflatten(1, (1, 1, 1600)), feat, nn.Flatten(), nn.Linear(1600, 5))
    t = nn.Sequential(nn.Unflatten(1, (1, 1, 1600)), feat, nn.Flatten(), nn.Linear(1600, 5)).requires_grad_(False)
    x, y = torch.randn(4, 1600) * 0.1, torch.tensor([0, 1, 2, 3])
    loss, _, logs = obj(s, t, x, y)
    moved = [not torch.equal(a, b.detach()) for a, b in zip(params0, obj.augmenter.parameters())]
    assert sum(moved) >= 6  # every stage's mean/spread got a gradient
    assert torch.isfinite(loss) and logs["aug_kl"] >= 0
    rec = obj.recoverables()
    assert rec["hard_augmenter"] is obj.augmenter and isinstance(rec["hard_optimizer"], torch.optim.Adam)
    with pytest.raises(ConfigError, match="no learnable parameters"):
        build_objective("hard", augmenter={"name": "gaussian_noise"})


def test_learnable_augmenters_bounds_and_identity():
    torch.manual_seed(0)
    x = torch.randn(3, 8000) * 0.1
    for name in ("learnable_gain", "learnable_eq", "learnable_time"):
        a = build_augmentation({"name": name}).eval()
        assert torch.allclose(a(x), x, atol=2e-3), name  # mu = 0, no noise: the clean clip
    g = build_augmentation({"name": "learnable_gain", "max_db": 6.0}).train()
    with torch.no_grad():
        g.db.mu.fill_(50.0)  # pushed far: the bound still holds
    assert torch.allclose(g(x) / x, torch.full_like(x, 10 ** (6 / 20)), rtol=1e-4)
    img = build_augmentation({"name": "learnable_stn_color"})
    xi = torch.rand(2, 3, 16, 16)
    assert torch.allclose(img.eval()(xi), xi, atol=1e-5)
    out = img.train()(xi)
    out.mean().backward()
    assert out.shape == xi.shape and img.linear.mu.grad is not None
    with pytest.raises(ValueError, match="B, 3, H, W"):
        img(torch.rand(2, 1, 8, 8))


def test_hard_okd_adds_the_ood_term():
    s, t = nets()
    obj = build_objective("hard_okd", augmenter=Shift([0.0, 0.0]), lr=1e-9)
    x_ood = torch.tensor([[0.3, 0.7], [0.9, -0.2], [0.0, 0.0]])
    loss, _, logs = obj(s, t, X, Y, lambda v: x_ood)
    assert logs["kd_ood"].item() == pytest.approx(kd_loss(x_ood @ s.w, x_ood @ t.w, 4.0).item(), rel=1e-6)
    base = 0.1 * F.cross_entropy(X @ s.w, Y) + 1.8 * kd_loss(X @ s.w, X @ t.w, 4.0)
    assert loss.item() == pytest.approx((base + 0.9 * logs["kd_ood"]).item(), rel=1e-5)
    with pytest.raises(ValueError, match="x_ood"):
        obj(s, t, X, Y)
