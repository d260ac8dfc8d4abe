"""Extra training state for exact resume and distributed runs."""
from __future__ import annotations

import logging
import os
import pickle
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from speechbrain.utils.checkpoints import (Checkpoint, Checkpointer, mark_as_loader, mark_as_saver,
                                           register_checkpoint_hooks)
from speechbrain.utils.distributed import ddp_barrier, ddp_init_group, if_main_process

from kws_okd.errors import ConfigError

logger = logging.getLogger(__name__)


RNG_FORMAT = "kws-okd/rng-state/2"


def rng_state() -> dict:
    """The Python, NumPy, torch CPU and (when present) CUDA generator states as tensors
    and plain values only (lists, ints, floats, strings, None), so that the file they are
    saved to loads with ``torch.load(..., weights_only=True)``: no pickled code."""
    version, internal, gauss_next = random.getstate()
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    return {"format": RNG_FORMAT,
            "torch": torch.get_rng_state(),
            "numpy": {"bit_generator": str(name), "keys": [int(k) for k in keys], "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
            "python": {"version": int(version), "internal": [int(v) for v in internal],
                       "gauss_next": None if gauss_next is None else float(gauss_next)},
            "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else []}


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["bit_generator"], np.asarray(n["keys"], dtype=np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_rng_state(path) -> dict:
    """Read a file :meth:`RNGState.save` wrote, with ``weights_only=True``. A file holding
    anything but tensors and plain values (an older format, or a crafted pickle) is refused
    with a :class:`ConfigError` naming it; nothing in it is run."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ConfigError(
            f"{path}: refusing to load this resume file: it holds pickled objects other than tensors "
            f"and plain values (written by an older kws-okd, or not by kws-okd at all), and nothing "
            f"in it was run. Delete the checkpoint folder {path.parent} to resume from an earlier "
            f"checkpoint, or its whole save/ folder to start the run afresh") from None
    except Exception as e:
        first = str(e).strip().split("\n")[0]
        raise ConfigError(f"{path}: not a readable kws-okd RNG state ({type(e).__name__}: {first})") from None
    if not isinstance(state, dict) or state.get("format") != RNG_FORMAT:
        raise ConfigError(f"{path}: not a kws-okd RNG state of format {RNG_FORMAT} (found "
                          f"{state.get('format') if isinstance(state, dict) else type(state).__name__!r}); "
                          f"delete the checkpoint folder {path.parent} to resume without it")
    return state


@register_checkpoint_hooks
class RNGState:
    """Saves and restores Python, NumPy and torch random states with each checkpoint, so a
    run resumed from a mid-epoch checkpoint draws the same augmentations and dropout masks
    as the uninterrupted run. The file holds only tensors and plain values and is loaded
    with ``weights_only=True`` (:func:`load_rng_state`)."""

    @mark_as_saver
    def save(self, path):
        torch.save(rng_state(), path)

    @mark_as_loader
    def load(self, path, end_of_epoch=None):
        set_rng_state(load_rng_state(path))


def distributed_launch() -> bool:
    return os.environ.get("RANK") is not None and os.environ.get("LOCAL_RANK") is not None


def init_distributed(backend: str | None) -> str:
    """Join the process group torchrun set up (gloo on CPU, NCCL on GPU); return the device."""
    if not distributed_launch():
        return "cuda:0" if backend == "nccl" else "cpu"
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if not torch.distributed.is_initialized():
        ddp_init_group({"distributed_backend": backend})
    return f"cuda:{os.environ['LOCAL_RANK']}" if backend == "nccl" else "cpu"


class TrainClock:
    """Training wall-clock that survives resume: the seconds spent up to a checkpoint are
    stored in its metadata and a resumed run continues counting from them. Time between
    the last checkpoint and a kill is not counted; redoing that work is."""

    def __init__(self):
        self.base = 0.0
        self.t0 = None

    def start(self) -> None:
        self.t0 = time.time()

    def elapsed(self) -> float:
        return self.base + (0.0 if self.t0 is None else time.time() - self.t0)

    def resume_from(self, seconds: float) -> None:
        self.base, self.t0 = float(seconds), time.time()


class AtomicCheckpointer(Checkpointer):
    """SpeechBrain's checkpointer, made safe against being killed at any moment.

    SpeechBrain writes a checkpoint folder's metadata first and its parameter files
    after, in place, so a kill mid-save leaves a folder that looks valid but holds
    truncated files. Here each checkpoint is written into ``.staging/`` and renamed
    into place only when complete; and a folder missing any parameter file (a kill
    in the middle of deleting an old checkpoint) is never offered for recovery.
    """

    STAGING = ".staging"

    def __init__(self, *args, clock: TrainClock | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.clock = clock

    def recover_if_possible(self, *args, **kwargs):
        ckpt = super().recover_if_possible(*args, **kwargs)
        if ckpt is not None and self.clock is not None and "train_seconds" in ckpt.meta:
            self.clock.resume_from(ckpt.meta["train_seconds"])
        return ckpt

    def _new_checkpoint_dirpath(self):
        return self.checkpoints_dir / self.STAGING / super()._new_checkpoint_dirpath().name

    def _custom_checkpoint_dirpath(self, name):
        return self.checkpoints_dir / self.STAGING / super()._custom_checkpoint_dirpath(name).name

    def save_checkpoint(self, meta={}, end_of_epoch=True, name=None, verbosity=logging.INFO):
        if if_main_process():
            shutil.rmtree(self.checkpoints_dir / self.STAGING, ignore_errors=True)
        if self.clock is not None:
            meta = {**meta, "train_seconds": self.clock.elapsed()}
        ckpt = super().save_checkpoint(meta=meta, end_of_epoch=end_of_epoch, name=name,
                                       verbosity=verbosity)
        result = None
        if ckpt is not None:  # the main process, which wrote it
            dest = self.checkpoints_dir / ckpt.path.name
            if dest.exists():  # a custom name saved again: replace it
                shutil.rmtree(dest)
            os.replace(ckpt.path, dest)
            result = Checkpoint(dest, ckpt.meta, {k: dest / Path(p).name for k, p in ckpt.paramfiles.items()})
        # Every rank must see the renamed folder before any of them lists checkpoints
        # (deleting old ones is a collective step: the lists must agree).
        ddp_barrier()
        return result

    def list_checkpoints(self):
        complete = []
        for ckpt in super().list_checkpoints():
            missing = [n for n in self.recoverables if n not in ckpt.paramfiles and "dataloader" not in n]
            if missing:
                logger.warning("skipping incomplete checkpoint %s (missing %s)", ckpt.path, missing)
                continue
            complete.append(ckpt)
        return complete
