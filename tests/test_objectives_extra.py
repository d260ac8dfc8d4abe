import math

import pytest
import torch
import torch.nn.functional as F

from kws_okd.distill import build_objective, kd_loss
from kws_okd.errors import ConfigError
from kws_okd.train.config import load_recipe


def softmax(v):
    e = [math.exp(a) for a in v]
    return [a / sum(e) for a in e]


def kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q))


S = [[1.0, 2.0, 0.0], [0.5, -1.0, 1.5]]
T_ = [[0.0, 4.0, 2.0], [1.0, 1.0, -2.0]]
Y = [1, 2]


class Fixed(torch.nn.Module):
    """Returns fixed logits whatever the input (the value of an objective is then known)."""

    def __init__(self, logits, trainable=True):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.tensor(logits), requires_grad=trainable)

    def forward(self, x):
        return self.logits * 1.0


def call(obj):
    return obj(Fixed(S), Fixed(T_, False), torch.zeros(2, 1), torch.tensor(Y))


def ce_by_hand():
    return sum(-math.log(softmax(s)[y]) for s, y in zip(S, Y)) / 2


def test_bdkd_fixed_and_adaptive_weights_by_hand():
    T = 2.0
    ps = [softmax([v / T for v in s]) for s in S]
    pt = [softmax([v / T for v in t]) for t in T_]
    fkl = [kl(b, a) for a, b in zip(ps, pt)]
    rkl = [kl(a, b) for a, b in zip(ps, pt)]
    loss, _, logs = call(build_objective("bdkd", temperature=T, forward_weight=0.3, reverse_weight=0.7))
    kd = T * T * sum(0.3 * f + 0.7 * r for f, r in zip(fkl, rkl)) / 2
    assert loss.item() == pytest.approx(0.1 * ce_by_hand() + 0.9 * kd, rel=1e-5)
    assert logs["rkl"].item() == pytest.approx(sum(rkl) / 2, rel=1e-5)

    def H(p):
        return -sum(a * math.log(a) for a in p)
    kd_a = T * T * sum((2 * H(b) * f + 2 * H(a) * r) / (H(a) + H(b))
                       for a, b, f, r in zip(ps, pt, fkl, rkl)) / 2
    loss, _, _ = call(build_objective("bdkd", temperature=T, adaptive=True, ce_weight=0.0, kd_weight=1.0))
    assert loss.item() == pytest.approx(kd_a, rel=1e-5)


def test_ctkd_value_and_temperature_bounds():
    obj = build_objective("ctkd", t_min=2.0, t_max=6.0, t_init=3.0, lr=50.0)
    assert obj.current_temperature().item() == pytest.approx(3.0, rel=1e-5)
    obj.set_progress(0.0)  # lambda = 0: no adversarial step, T = t_init
    loss, _, logs = call(obj)
    T = 3.0
    kd = T * T * sum(kl(softmax([v / T for v in t]), softmax([v / T for v in s])) for s, t in zip(S, T_)) / 2
    assert loss.item() == pytest.approx(0.1 * ce_by_hand() + 0.9 * kd, rel=1e-4)
    assert logs["temperature"].item() == pytest.approx(3.0, rel=1e-5)
    seen = []
    for i in range(30):  # a huge learning rate drives theta far: T must stay in bounds
        obj.set_progress(i / 29)
        _, _, logs = call(obj)
        seen.append(logs["temperature"].item())
    assert all(2.0 <= v <= 6.0 for v in seen) and max(seen) != min(seen)
    with pytest.raises(ConfigError, match="t_min"):
        build_objective("ctkd", t_min=5.0, t_max=4.0)


def test_ctkd_learned_temperature_ascends_the_kd_loss():
    obj = build_objective("ctkd", t_min=1.0, t_max=10.0, t_init=4.0, lr=0.5)
    s, t = torch.tensor(S), torch.tensor(T_)
    before = obj.current_temperature().detach()
    obj.set_progress(1.0)
    call(obj)
    after = obj.current_temperature().detach()
    assert after != before
    assert kd_loss(s, t, after).item() > kd_loss(s, t, before).item()


def test_ctkd_schedule_mode():
    obj = build_objective("ctkd", mode="schedule", t_min=1.0, t_max=8.0, t_start=8.0, t_end=2.0)
    for p, want in [(0.0, 8.0), (0.5, 5.0), (1.0, 2.0), (7.0, 2.0)]:
        obj.set_progress(p)
        assert obj.current_temperature().item() == pytest.approx(want)


def test_wakd_and_takd_objectives():
    loss, _, _ = call(build_objective("wakd"))
    T = 5.0
    kd = T * T * sum(kl(softmax([v / T for v in t]), softmax([v / T for v in s])) for s, t in zip(S, T_)) / 2
    assert loss.item() == pytest.approx(kd, rel=1e-5)  # pure KD, T = 5, no CE
    with pytest.raises(ConfigError, match="distill.assistant_ckpt"):
        build_objective("takd")
    takd = build_objective("takd", assistant_ckpt="/some/assistant.pt")
    loss, _, _ = call(takd)
    s, t = torch.tensor(S), torch.tensor(T_)
    want = 0.1 * F.cross_entropy(s, torch.tensor(Y)) + 0.9 * kd_loss(s, t, 4.0)
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)


@pytest.mark.parametrize("name", ["wakd", "ctkd", "bdkd", "hard", "hard_okd"])
def test_recipes_build(name):
    from omegaconf import OmegaConf
    from kws_okd.augment import learnable  # noqa: F401
    cfg = load_recipe("student", [f"distill={name}"])
    kwargs = {k: v for k, v in OmegaConf.to_container(cfg.distill, resolve=True).items() if k != "name"}
    assert build_objective(cfg.distill.name, **kwargs).name == name
