"""Issue 13's four averaging defects, each pinned by a test that failed before its fix:

1. BN refits ran on the class-sorted manifest in order (1-2 classes a batch);
2. SMA scored the raw student, never the averaged candidate;
3. averaging under DDP kept the ``module.`` prefix and the student could not load it;
4. ``train_summary.json`` reported the raw best checkpoint's accuracy for averaged runs.
"""
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from kws_okd.data.registry import load_dataset
from kws_okd.train import averaging as cb_averaging  # noqa: F401  (registers the callbacks)
from kws_okd.train.callbacks import Callback, build_callback, register_callback
from kws_okd.train.checkpoint import load_model
from kws_okd.train.config import load_recipe
from kws_okd.train.run import train

from test_train import overrides

ROOT = Path(__file__).resolve().parents[1]


@register_callback("test_refit_probe")
class RefitProbe(Callback):
    """Records the labels of every batch of the loader run.py hands over for BN refits
    (two passes, to check that each pass gives the same batches)."""
    passes: list = []

    def on_fit_end(self, brain, train_loader):
        RefitProbe.passes = [[batch[1].tolist() for batch in train_loader] for _ in range(2)]
        return None


@pytest.fixture(scope="module")
def sma_run(tiny_corpus, tmp_path_factory):
    """One tiny SMA run (BC-ResNet-1 has batch norm), shared by the end-to-end checks."""
    tmp = tmp_path_factory.mktemp("sma")
    RefitProbe.passes = []
    cfg = load_recipe("student", overrides(tiny_corpus, tmp, "distill=erm", "averaging=sma",
                                           "averaging.start_step=0", "epochs=2", "seed=3",
                                           "callbacks=[{name:test_refit_probe}]"))
    pt = train(cfg)
    return SimpleNamespace(pt=pt, manifests=tmp / "manifests", passes=RefitProbe.passes,
                           summary=json.loads((pt.parent / "train_summary.json").read_text()))


def _distinct_per_batch(batches):
    return sum(len(set(b)) for b in batches) / len(batches)


# -- 1. BN refit on shuffled batches --------------------------------------------------------

def test_bn_refit_batches_are_shuffled_and_the_same_every_pass(sma_run):
    labels = load_dataset(sma_run.manifests / "train.csv").labels.tolist()
    first, second = sma_run.passes
    size = len(first[0])
    seen = sum(first, [])
    assert len(seen) > len(labels) - size and all(seen.count(c) <= labels.count(c) for c in set(seen))
    in_order = [labels[i:i + size] for i in range(0, len(labels), size)]
    # The manifest is sorted by class: consecutive clips share one or two classes.
    assert _distinct_per_batch(in_order) < 4
    assert _distinct_per_batch(first) > 3 * _distinct_per_batch(in_order)
    assert first == second  # a seeded order: every refit (and a resumed run) sees the same batches


def test_bn_refit_loader_order_depends_only_on_the_seed():
    from kws_okd.train.run import bn_refit_loader
    ds = torch.utils.data.TensorDataset(torch.arange(100.0), torch.arange(100))
    order = lambda seed: torch.cat([b[1] for b in bn_refit_loader(ds, 20, seed)]).tolist()  # noqa: E731
    torch.manual_seed(0)
    a = order(5)
    torch.manual_seed(1)  # the global RNG plays no part
    assert order(5) == a and order(6) != a and sorted(a) == list(range(100))


# -- 2. SMA scores the averaged model, with refitted BN --------------------------------------

def test_sma_selection_scores_the_averaged_model(sma_run):
    sel = sma_run.summary["selection"]
    assert sel.startswith("SMA:")
    assert "the averaged model's validation accuracy" in sel, sel
    assert "student's validation accuracy" not in sel


class BNNet(nn.Module):
    """Linear + BatchNorm: the averaged BN statistics of a candidate are wrong for data
    whose mean sits far from where the running mean was left."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2, bias=False)
        self.bn = nn.BatchNorm1d(2, affine=False)
        with torch.no_grad():
            self.lin.weight.copy_(torch.eye(2))

    def forward(self, x):
        return self.bn(self.lin(x))


def test_sma_refits_bn_before_scoring_a_candidate():
    # Class 0 has x[0] > x[1] and class 1 the reverse, both around (10, 10): with the
    # untouched running statistics (mean 0, var 1) every input predicts class 0 or is a
    # coin toss; with statistics refitted on the data the argmax separates the classes.
    torch.manual_seed(0)
    n = 200
    base = 10 + torch.randn(n, 1) * 0.1
    y = torch.arange(n) % 2
    delta = torch.where(y == 0, 1.0, -1.0)[:, None] * torch.tensor([[1.0, -1.0]]) + torch.randn(n, 2) * 0.1
    x = base + delta + torch.tensor([[3.0, 0.0]])  # a shift that only BN statistics undo
    loader = [(x[i:i + 50], y[i:i + 50], torch.arange(i, i + 50)) for i in range(0, n, 50)]
    net = BNNet()
    brain = SimpleNamespace(global_step=0, device="cpu", modules=SimpleNamespace(student=net),
                            hparams=SimpleNamespace(epochs=1, steps_per_epoch=1))
    cb = build_callback({"name": "sma", "start_step": 0})
    cb.set_loaders(bn_loader=loader, valid_loader=loader)
    brain.global_step = 1
    cb.on_train_step(brain)
    cb.on_valid_end(brain, {"loss": 1.0, "acc": 0.0}, 1)
    assert cb.best_score == pytest.approx(1.0)
    assert "averaged model" in cb.scored_by and "re-estimated" in cb.scored_by
    assert net.bn.running_mean.abs().max() == 0  # the student itself is untouched


# -- 3. Averaging under DDP -----------------------------------------------------------------

class Scalar(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return x * self.w


def _average_under_ddp(name):
    """Drive callback ``name`` over a DDP-wrapped :class:`Scalar` (weight = global step);
    return what ``on_fit_end`` hands back. The wrapper lives only in this frame."""
    from torch.nn.parallel import DistributedDataParallel as DDP
    raw = Scalar()
    brain = SimpleNamespace(global_step=0, device="cpu", modules=SimpleNamespace(student=DDP(raw)),
                            hparams=SimpleNamespace(epochs=3, steps_per_epoch=2))
    spec = {"name": name, "bn_recompute": False}
    if name != "swad":
        spec["start_step"] = 0
    cb = build_callback(spec)
    for e, loss in enumerate([3, 2, 1], 1):
        for s in (1, 2):
            brain.global_step = (e - 1) * 2 + s
            raw.w.data.fill_(float(brain.global_step))
            cb.on_train_step(brain)
        cb.on_valid_end(brain, {"loss": loss, "acc": 1.0 / loss}, e)
    return cb.on_fit_end(brain, None)


@pytest.mark.parametrize("name", ["wakd", "sma", "swad", "ema"])
def test_averaging_a_ddp_wrapped_student_gives_the_plain_modules_keys(name, tmp_path):
    import gc

    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        # The DDP reducer must be freed while its process group lives (its destructor
        # hangs otherwise): no traceback may keep the wrapper past this block.
        try:
            out, err = _average_under_ddp(name), None
        except Exception as e:  # noqa: BLE001
            out, err = None, f"{type(e).__name__}: {e}"
        gc.collect()
    finally:
        dist.destroy_process_group()
    assert err is None, err
    assert out is not None and list(out["state_dict"]) == ["w"]
    Scalar().load_state_dict(out["state_dict"])  # strict: the key run.py's student has


def test_ddp_run_with_averaging_saves_the_average(tiny_corpus, tmp_path):
    """The issue's reproduction: torchrun, gloo, world size 1, WAKD."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    args = [a for a in overrides(tiny_corpus, tmp_path) if not a.startswith("epochs=")]
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=1", "--master_port=29541",
         str(ROOT / "tests" / "ddp_driver.py"), *args, "distill=erm", "student.name=tiny_linear",
         "threads=1", "epochs=2", "averaging=wakd", "averaging.start_step=1"],
        env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    (pt,) = (tmp_path / "results").rglob("model.pt")
    blob = torch.load(pt, weights_only=True)
    assert blob["info"]["selection"].startswith("WAKD: uniform mean")
    assert not any(k.startswith("module.") for k in blob["state_dict"])


# -- 4. train_summary.json describes the saved model ----------------------------------------

def test_summary_valid_acc_is_the_saved_models_accuracy(sma_run):
    model, blob = load_model(sma_run.pt)
    valid = load_dataset(sma_run.manifests / "valid.csv")
    with torch.no_grad():
        acc = (model(valid.inputs).argmax(-1) == valid.labels).float().mean().item()
    s = sma_run.summary
    assert s["valid_acc"] == pytest.approx(acc, abs=1e-6)
    assert blob["info"]["valid_acc"] == s["valid_acc"]
    assert 0.0 <= s["raw_best_valid_acc"] <= 1.0 and s["raw_best_epoch"] in (1, 2)
    # best_epoch names the epoch the saved model comes from: SMA's chosen candidate.
    assert f"epoch {s['best_epoch']} " in s["selection"]
