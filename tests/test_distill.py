import math

import pytest
import torch
import torch.nn.functional as F

from kws_okd.distill import build_objective, kd_loss


def softmax(v):
    e = [math.exp(a) for a in v]
    return [a / sum(e) for a in e]


def test_kd_loss_matches_hand_computation():
    s = torch.tensor([[1.0, 2.0, 0.0]])
    t = torch.tensor([[0.0, 4.0, 2.0]])
    T = 2.0
    ps, pt = softmax([1 / T, 2 / T, 0]), softmax([0, 4 / T, 2 / T])
    expected = T * T * sum(q * math.log(q / p) for p, q in zip(ps, pt))
    assert kd_loss(s, t, T).item() == pytest.approx(expected, rel=1e-6)


def test_kd_loss_is_zero_for_identical_logits_and_batch_mean():
    x = torch.randn(5, 7)
    assert kd_loss(x, x, 4.0).item() == pytest.approx(0.0, abs=1e-6)
    a, b = torch.randn(2, 3), torch.randn(2, 3)
    both = kd_loss(a, b, 3.0)
    each = (kd_loss(a[:1], b[:1], 3.0) + kd_loss(a[1:], b[1:], 3.0)) / 2
    assert both.item() == pytest.approx(each.item(), rel=1e-6)


class Table(torch.nn.Module):
    """A network whose logits are a fixed linear map of its input (so values are known)."""

    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(w))
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return x @ self.w


def test_kd_objective_is_weighted_ce_plus_kd():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 1])
    s, t = Table([[1.0, -1.0], [0.5, 0.5]]), Table([[2.0, 0.0], [0.0, 3.0]])
    loss, logits, logs = build_objective("kd")(s, t, x, y)
    sl, tl = x @ s.w, x @ t.w
    expected = 0.1 * F.cross_entropy(sl, y) + 0.9 * kd_loss(sl, tl, 4.0)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert torch.equal(logits, sl)


def test_okd_value_and_same_x_ood_to_both_networks():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 1])
    s, t = Table([[1.0, -1.0], [0.5, 0.5]]), Table([[2.0, 0.0], [0.0, 3.0]])
    x_ood = torch.tensor([[0.3, 0.7], [0.9, -0.2]])
    calls = []

    def augment(inp):
        calls.append(inp)
        return x_ood

    loss, _, logs = build_objective("okd")(s, t, x, y, augment)
    assert len(calls) == 1  # one x_ood per batch ...
    assert torch.equal(s.seen[1], x_ood)  # ... fed to the student
    assert torch.equal(t.seen[0][2:], x_ood)  # ... and to the teacher
    sl, tl = x @ s.w, x @ t.w
    so, to = x_ood @ s.w, x_ood @ t.w
    expected = (0.1 * F.cross_entropy(sl, y) + 0.9 * kd_loss(sl, tl, 4.0)
                + 0.9 * kd_loss(so, to, 4.0))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert logs["kd_ood"].item() == pytest.approx(kd_loss(so, to, 4.0).item(), rel=1e-6)


def test_teacher_gets_no_gradient_and_weights_configurable():
    x = torch.randn(4, 2)
    y = torch.tensor([0, 1, 0, 1])
    s, t = Table([[1.0, -1.0], [0.5, 0.5]]), Table([[2.0, 0.0], [0.0, 3.0]])
    okd = build_objective("okd", ce_weight=1.0, kd_weight=0.0, ood_weight=0.0)
    loss, logits, _ = okd(s, t, x, y, lambda v: v * 0.5)
    loss.backward()
    assert t.w.grad is None and s.w.grad is not None
    assert loss.item() == pytest.approx(F.cross_entropy(x @ s.w, y).item(), rel=1e-6)


def test_okd_without_augment_and_unknown_method_are_refused():
    with pytest.raises(ValueError, match="augmentation"):
        build_objective("okd")(Table([[1.0]]), Table([[1.0]]), torch.ones(1, 1), torch.zeros(1, dtype=torch.long))
    with pytest.raises(KeyError, match="unknown distillation method 'nope'"):
        build_objective("nope")


def test_distill_core_imports_no_audio_or_image_code():
    import pathlib
    core = pathlib.Path(__file__).parents[1] / "kws_okd" / "distill"
    for f in core.glob("*.py"):
        text = f.read_text()
        for bad in ("torchaudio", "torchvision", "kws_okd.audio", "kws_okd.augment", "speechbrain"):
            assert bad not in text, f"{f.name} imports {bad}"
