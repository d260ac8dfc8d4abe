"""Exact resume after SIGKILL, and DDP with torchrun on CPU (gloo)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from kws_okd.train.config import load_recipe
from kws_okd.train.run import train
from tests.test_train import overrides as _overrides

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "kws_okd.cli"]


def overrides(corpus, tmp, *extra):
    """The tiny-corpus overrides, with ``results_dir`` given once (the last of ``extra``)."""
    base = [o for o in _overrides(corpus, tmp) if not o.startswith("results_dir=")]
    if not any(e.startswith("results_dir=") for e in extra):
        base.append(f"results_dir={tmp}/results")
    return base + list(extra)


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def teacher(tiny_corpus, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("teacher")
    return train(load_recipe("teacher", overrides(tiny_corpus, tmp)))


def _intra_epoch_ckpt(save_dir: Path) -> bool:
    # SpeechBrain marks mid-epoch checkpoints with this meta key.
    return any("brain_intra_epoch_ckpt" in y.read_text() for y in save_dir.glob("CKPT*/CKPT.yaml"))


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tiny_corpus, teacher, tmp_path):
    def args(results):
        return ["train", *overrides(tiny_corpus, tmp_path, f"results_dir={results}", "epochs=2",
                                    "distill=okd", f"teacher_ckpt={teacher}", "threads=1",
                                    "ckpt_interval_steps=2", "batch_size=16")]
    ref = subprocess.run(CLI + args(tmp_path / "ref"), env=_env(), capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr[-2000:]

    proc = subprocess.Popen(CLI + args(tmp_path / "cut"), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    save = tmp_path / "cut" / "gsc_task35" / "bcresnet2-okd+context0.5" / "seed0" / "save"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if save.exists() and _intra_epoch_ckpt(save):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "training ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (save.parent / "model.pt").exists()
    done = subprocess.run(CLI + args(tmp_path / "cut"), env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]

    a = torch.load(tmp_path / "ref/gsc_task35/bcresnet2-okd+context0.5/seed0/model.pt", weights_only=True)
    b = torch.load(save.parent / "model.pt", weights_only=True)
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k  # bitwise on CPU


def test_ddp_two_processes_match_single_process(tiny_corpus, tmp_path):
    driver = str(ROOT / "tests" / "ddp_driver.py")
    # Speech around the word draws per process from its own shard: no bitwise match to ask for.
    common = overrides(tiny_corpus, tmp_path, "distill=erm", "student.name=tiny_linear",
                       "threads=1", "epochs=2", "optim.lr=0.01", "context_speech.p=0")
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
         driver, *common, f"results_dir={tmp_path}/ddp", "batch_size=8",
         f"callbacks=[{{name: dump_weights, folder: {tmp_path}/ddp_w}}]"],
        env=_env(), capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = subprocess.run(
        [sys.executable, driver, *common, f"results_dir={tmp_path}/one", "batch_size=16",
         f"callbacks=[{{name: dump_weights, folder: {tmp_path}/one_w}}]"],
        env=_env(), capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    r0 = torch.load(tmp_path / "ddp_w/rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "ddp_w/rank1.pt", weights_only=True)
    one = torch.load(tmp_path / "one_w/rank0.pt", weights_only=True)
    for k in r0:
        assert torch.equal(r0[k], r1[k]), f"ranks diverged on {k}"
        # Same global batch (2 x 8 vs 16) and the same sample order: equal up to the
        # float summation order of the gradient all-reduce.
        assert torch.allclose(r0[k], one[k], atol=1e-4, rtol=1e-4), k


def test_training_seconds_carry_across_a_resume(tmp_path):
    from kws_okd.train.state import AtomicCheckpointer, TrainClock
    net = torch.nn.Linear(2, 2)
    first = TrainClock()
    first.resume_from(100.0)                    # 100 s trained before this checkpoint
    AtomicCheckpointer(tmp_path, recoverables={"net": net}, clock=first).save_checkpoint()
    clock = TrainClock()
    clock.start()
    assert clock.elapsed() < 1.0
    ckpt = AtomicCheckpointer(tmp_path, recoverables={"net": net}, clock=clock).recover_if_possible()
    assert ckpt.meta["train_seconds"] == pytest.approx(100.0, abs=1.0)
    assert 100.0 <= clock.elapsed() < 101.0     # the resumed run counts on from there
    # A checkpoint written before the clock existed leaves the count alone.
    legacy = tmp_path / "legacy"
    AtomicCheckpointer(legacy, recoverables={"net": net}).save_checkpoint()
    fresh = TrainClock()
    fresh.start()
    AtomicCheckpointer(legacy, recoverables={"net": net}, clock=fresh).recover_if_possible()
    assert fresh.elapsed() < 1.0
