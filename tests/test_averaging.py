import copy
import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from kws_okd.distill.averaging import ExponentialMean, LossValley, RunningMean, find_valley, recompute_bn
from kws_okd.train import averaging as cb_averaging  # noqa: F401  (registers the callbacks)
from kws_okd.train.callbacks import Callback, build_callback, register_callback
from kws_okd.train.checkpoint import load_model
from kws_okd.train.config import load_recipe
from kws_okd.train.run import train

from test_train import overrides


def small_net():
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))


def test_running_mean_is_the_arithmetic_mean_of_what_it_saw():
    torch.manual_seed(0)
    net, mean, snaps = small_net(), RunningMean(), []
    for i in range(7):
        for p in net.parameters():
            p.data.normal_()
        net[1].running_mean.normal_()
        net[1].num_batches_tracked.fill_(i * 10)
        snaps.append(copy.deepcopy(net.state_dict()))
        mean.update(net)
    out = mean.result(net.state_dict())
    for k, v in out.items():
        if v.is_floating_point():
            assert torch.allclose(v, torch.stack([s[k] for s in snaps]).mean(0), atol=1e-6), k
    assert out["1.num_batches_tracked"].item() == 60  # counters: newest, not averaged
    assert mean.count == 7
    # merging two partial means gives the same as one mean over everything
    a, b = RunningMean(), RunningMean()
    for s in snaps[:3]:
        a.update(s)
    for s in snaps[3:]:
        b.update(s)
    a.merge(b)
    assert torch.allclose(a.result()["0.weight"], out["0.weight"], atol=1e-6)


def test_exponential_mean_by_hand():
    ema = ExponentialMean(decay=0.9)
    for v in (1.0, 2.0, 4.0):
        ema.update({"w": torch.tensor([v])})
    # 1 -> 0.9*1 + 0.1*2 = 1.1 -> 0.9*1.1 + 0.1*4 = 1.39
    assert ema.result()["w"].item() == pytest.approx(1.39, rel=1e-6)


CURVE = [5, 4, 3, 2, 1.0, 1.1, 1.2, 1.05, 1.0, 1.2, 1.5, 2, 2.5, 3, 3.5, 4, 4.5]


def test_swad_valley_start_and_end_on_a_synthetic_curve():
    lv = LossValley(n_converge=3, n_tolerance=6, tolerance_ratio=1.3)
    events = [lv.update(v) for v in CURVE]
    # window [1.0, 1.1, 1.2] (indices 4..6) is the first whose oldest is its minimum
    assert events.index("start") == 6 and lv.start == 4
    assert lv.threshold == pytest.approx(1.1 * 1.3)
    # [1.5 .. 4] (indices 10..15) is the first window of 6 entirely above 1.43
    assert events.index("end") == 15 and lv.end == 9
    assert lv.update(0.1) is None and lv.end == 9  # one valley per run
    assert find_valley(CURVE) == (4, 9)
    assert find_valley([5, 4, 3, 2, 1]) == (None, None)  # still falling: no valley
    assert find_valley([3, 2, 2.5, 2.6, 2.7]) == (1, 4)  # open at the end


def test_recompute_bn_sets_running_mean_to_the_data_mean():
    torch.manual_seed(0)
    net = small_net()
    data = torch.randn(64, 3) * 2 + torch.tensor([1.0, -3.0, 0.5])
    loader = [(data[i:i + 16], torch.zeros(16), torch.arange(16)) for i in range(0, 64, 16)]
    before = net[1].running_mean.clone()
    net.eval()
    assert recompute_bn(net, loader)
    with torch.no_grad():
        h = net[0](data)
    assert not torch.allclose(before, net[1].running_mean)
    assert torch.allclose(net[1].running_mean, h.mean(0), atol=1e-5)
    assert not net.training  # mode restored
    assert recompute_bn(nn.Linear(2, 2), loader) is False


class Scalar(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))


def fake_brain(epochs, steps):
    return SimpleNamespace(global_step=0, device="cpu", modules=SimpleNamespace(student=Scalar()),
                           hparams=SimpleNamespace(epochs=epochs, steps_per_epoch=steps))


def drive(cb, brain, losses, steps):
    """Weight after global step k is k; epoch e validates with losses[e-1]."""
    for e, loss in enumerate(losses, 1):
        for s in range(1, steps + 1):
            brain.global_step = (e - 1) * steps + s
            brain.modules.student.w.data.fill_(float(brain.global_step))
            cb.on_train_step(brain)
        cb.on_valid_end(brain, {"loss": loss, "acc": 1.0 / loss}, e)
    return cb.on_fit_end(brain, None)


def test_swad_callback_averages_every_step_of_the_valley_epochs():
    brain = fake_brain(len(CURVE), 2)
    cb = build_callback({"name": "swad", "bn_recompute": False})
    out = drive(cb, brain, CURVE, 2)
    # valley = epochs 5..10 = steps 9..20
    assert out["state_dict"]["w"].item() == pytest.approx(sum(range(9, 21)) / 12)
    assert "epochs 5-10" in out["selection"] and "12 snapshots" in out["selection"]
    assert len(cb.pending) == 0
    # never converges: from the lowest loss (last epoch) to the end
    out = drive(build_callback({"name": "swad", "bn_recompute": False}), fake_brain(4, 2), [4, 3, 2, 1], 2)
    assert out["state_dict"]["w"].item() == pytest.approx(7.5) and "fallback" in out["selection"]


def test_wakd_sma_ema_callbacks_by_hand():
    out = drive(build_callback({"name": "wakd", "start_fraction": 0.3, "bn_recompute": False}),
                fake_brain(5, 2), [1] * 5, 2)
    assert out["state_dict"]["w"].item() == pytest.approx(7.0)  # mean of steps 4..10
    assert "steps 4-10" in out["selection"]
    # SMA: candidates after each epoch; epoch 3 has the best accuracy (lowest "loss" here)
    out = drive(build_callback({"name": "sma", "start_step": 0, "bn_recompute": False}),
                fake_brain(5, 2), [3, 2, 1, 2, 3], 2)
    assert out["state_dict"]["w"].item() == pytest.approx(3.5)  # mean of steps 1..6
    assert "epoch 3" in out["selection"] and "student's validation accuracy" in out["selection"]
    out = drive(build_callback({"name": "ema", "decay": 0.5, "bn_recompute": False}),
                fake_brain(1, 3), [1], 3)
    assert out["state_dict"]["w"].item() == pytest.approx(0.25 * 1 + 0.25 * 2 + 0.5 * 3)


def test_averaging_state_never_rolls_back_and_bad_keys_are_named(tmp_path):
    from kws_okd.errors import ConfigError
    cb = build_callback({"name": "wakd", "start_step": 0})
    brain = fake_brain(2, 2)
    drive(cb, brain, [1], 2)
    (state,) = cb.recoverables().values()
    state._save(tmp_path / "early.ckpt")
    drive(cb, brain, [1, 1], 2)  # epoch 1 again is skipped (already seen), epoch 2 adds
    assert cb.mean.count == 4
    state._load(tmp_path / "early.ckpt", True)  # the best-accuracy recovery after fit
    assert cb.mean.count == 4
    fresh = build_callback({"name": "wakd", "start_step": 0})
    next(iter(fresh.recoverables().values()))._load(tmp_path / "early.ckpt", True)  # resume
    assert fresh.mean.count == 2
    with pytest.raises(ConfigError, match="start_fraction"):
        build_callback({"name": "wakd", "start_fraction": 1.5})
    with pytest.raises(ConfigError, match="frequency"):
        build_callback({"name": "swad", "frequency": 0})


@register_callback("test_recorder")
class Recorder(Callback):
    snaps = []

    def on_train_step(self, brain):
        Recorder.snaps.append((brain.global_step, copy.deepcopy(brain.modules.student.state_dict())))


def test_end_to_end_train_saves_the_wakd_average(tiny_corpus, tmp_path):
    Recorder.snaps.clear()
    cfg = load_recipe("student", overrides(tiny_corpus, tmp_path, "distill=erm", "averaging=wakd",
                                           "averaging.start_step=2", "epochs=2",
                                           "callbacks=[{name:test_recorder}]"))
    pt = train(cfg)
    summary = json.loads((pt.parent / "train_summary.json").read_text())
    assert summary["selection"].startswith("WAKD: uniform mean")
    assert "batch-norm statistics re-estimated" in summary["selection"]
    model, blob = load_model(pt)
    assert blob["info"]["selection"] == summary["selection"]
    used = [s for step, s in Recorder.snaps if step > 2]
    assert len(used) >= 2
    bn_stats = ("running_mean", "running_var", "num_batches_tracked")
    checked = 0
    for k, v in blob["state_dict"].items():
        if v.is_floating_point() and not k.endswith(bn_stats):
            expected = torch.stack([s[k].float() for s in used]).mean(0)
            assert torch.allclose(v, expected, atol=1e-5), k
            checked += 1
    assert checked > 10
    # the last step's weights differ from the average: the file is not the plain final model
    last = Recorder.snaps[-1][1]
    assert any(not torch.allclose(blob["state_dict"][k], last[k]) for k in last if last[k].is_floating_point())


class Threshold(nn.Module):
    """Predicts class 0 when its one weight exceeds 7, else class 1."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.stack([x[:, 0] * 0 + self.w - 7.0, x[:, 0] * 0], dim=1)


@pytest.mark.parametrize("label, chosen, value", [(0, "0.5", 8.0), (1, "0", 5.5)])
def test_wakd_start_chosen_among_candidates_on_validation(label, chosen, value):
    """Weights 1..10 over 10 steps: start 0 averages to 5.5, start 0.2 to 6.5, start 0.5
    (steps 6..10) to 8. Class-0 labels reward a mean above 7; class-1 labels reward
    5.5 and 6.5 equally, and the tie goes to the earlier start, which averages more."""
    brain = fake_brain(5, 2)
    brain.modules.student = Threshold()
    cb = build_callback({"name": "wakd", "start_fraction": [0.5, 0.0, 0.2], "bn_recompute": False})
    x = torch.ones(4, 1)
    cb.set_loaders(bn_loader=None, valid_loader=[(x, torch.full((4,), label))])
    out = drive(cb, brain, [1] * 5, 2)
    assert out["state_dict"]["w"].item() == pytest.approx(value)
    assert out["candidates"]["chosen"] == chosen
    expect = {"0": 0.0, "0.2": 0.0, "0.5": 1.0} if label == 0 else {"0": 1.0, "0.2": 1.0, "0.5": 0.0}
    assert {k: v for k, v in out["candidates"].items() if k != "chosen"} == expect
    assert "start chosen among fractions" in out["selection"]


class Window(nn.Module):
    """Predicts class 0 when its one weight is within 0.5 of 7, else class 1."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.stack([x[:, 0] * 0 + 0.5 - (self.w - 7.0).abs(), x[:, 0] * 0], dim=1)


@pytest.mark.parametrize("label, chosen, value, steps, epoch", [(0, "0.5", 7.0, "6-8", 4),
                                                                 (1, "0", 5.5, "1-10", 5)])
def test_sma_chooses_start_and_epoch_together_on_validation(label, chosen, value, steps, epoch):
    """Weights 1..10 over 5 epochs of 2 steps. Start 0 gives means 1.5, 2.5, .. 5.5 at the
    epoch ends; start 0.5 (steps 6..) gives 6, 7, 8 at epochs 3-5. Class-0 labels reward
    only 7 (start 0.5 after epoch 4); class-1 labels reward every other candidate, and
    the ties go to the latest epoch, then to the earlier start."""
    brain = fake_brain(5, 2)
    brain.modules.student = Window()
    cb = build_callback({"name": "sma", "start_fraction": [0.5, 0.0], "bn_recompute": False})
    x = torch.ones(4, 1)
    cb.set_loaders(bn_loader=None, valid_loader=[(x, torch.full((4,), label))])
    out = drive(cb, brain, [1] * 5, 2)
    assert out["state_dict"]["w"].item() == pytest.approx(value)
    assert out["candidates"]["chosen"] == chosen
    assert f"steps {steps}," in out["selection"] and f"epoch {epoch} " in out["selection"]
    assert {k: v for k, v in out["candidates"].items() if k != "chosen"} == {"0": float(label),
                                                                           "0.5": 1.0}
    assert cb.history["0.5"] == ({3: 0.0, 4: 1.0, 5: 0.0} if label == 0 else {3: 1.0, 4: 0.0, 5: 1.0})
    # the choice survives a checkpoint round trip
    fresh = build_callback({"name": "sma", "start_fraction": [0.0, 0.5]})
    fresh.load_state_dict(cb.state_dict())
    assert fresh.history == cb.history and fresh.best_start == cb.best_start
    assert fresh.best_step == cb.best_step


def test_sma_several_starts_need_a_validation_loader():
    from kws_okd.errors import ConfigError
    cb = build_callback({"name": "sma", "start_fraction": [0.0, 0.5], "bn_recompute": False})
    with pytest.raises(ConfigError, match="validation loader"):
        drive(cb, fake_brain(2, 2), [1, 1], 2)


def test_wakd_several_starts_need_a_validation_loader_and_a_matching_checkpoint(tmp_path):
    from kws_okd.errors import ConfigError
    cb = build_callback({"name": "wakd", "start_fraction": [0.0, 0.5], "bn_recompute": False})
    brain = fake_brain(2, 2)
    brain.modules.student = Threshold()
    with pytest.raises(ConfigError, match="validation loader"):
        drive(cb, brain, [1, 1], 2)
    (state,) = cb.recoverables().values()
    state._save(tmp_path / "two.ckpt")
    one = build_callback({"name": "wakd", "start_step": 0})
    with pytest.raises(ConfigError, match="holds 2 running means"):
        next(iter(one.recoverables().values()))._load(tmp_path / "two.ckpt", True)
    fixed = build_callback({"name": "wakd", "start_fraction": [0.1, 0.5], "start_step": 3})
    assert len(fixed.means) == 1 and fixed.resolve_starts(fake_brain(5, 2)) == [3]  # the step wins
