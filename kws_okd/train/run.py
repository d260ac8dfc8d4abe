"""Train one network from a composed recipe config (teacher or student)."""
from __future__ import annotations

import logging
import random
import time
from functools import partial
from pathlib import Path

import numpy as np
import speechbrain as sb
import torch
from omegaconf import OmegaConf
from speechbrain.utils.checkpoints import Checkpointer
from speechbrain.utils.epoch_loop import EpochCounter
from speechbrain.utils.train_logger import FileTrainLogger
from torch.utils.data import DataLoader

from kws_okd.augment import build_augmentation
from kws_okd.data.manifest import read_classes
from kws_okd.data.registry import load_dataset, prepare_data
from kws_okd.distill import OBJECTIVES, build_objective
from kws_okd.errors import ConfigError
from kws_okd.models import build_model, count_macs, count_params
from kws_okd.train.brain import KWSBrain
from kws_okd.train.checkpoint import load_model, save_model
from kws_okd.utils.atomic import write_json, write_text

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def model_config(net_cfg) -> dict:
    cfg = OmegaConf.to_container(net_cfg, resolve=True)
    cfg.pop("label", None)
    return cfg


def build_callbacks(cfg) -> list:
    """Trainer callbacks from the ``averaging`` group (unless ``name: none``) and the
    ``callbacks`` list, each ``{name: ..., **kwargs}`` looked up in
    :data:`kws_okd.train.callbacks.CALLBACKS`."""
    from kws_okd.train.callbacks import build_callback
    specs = OmegaConf.to_container(cfg.callbacks, resolve=True) if cfg.get("callbacks") else []
    averaging = cfg.get("averaging")
    if averaging is not None and averaging.get("name", "none") != "none":
        specs = [OmegaConf.to_container(averaging, resolve=True)] + list(specs)
    return [build_callback(dict(s)) for s in specs]


def train(cfg) -> Path:
    """Train the network the recipe names; return the path of its ``model.pt``."""
    exp_dir = Path(cfg.exp_dir)
    exp_dir.mkdir(parents=True, exist_ok=True)
    write_text(exp_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    gen = seed_everything(int(cfg.seed))
    torch.set_num_threads(int(cfg.threads)) if cfg.get("threads") else None

    manifest_dir = prepare_data(cfg.data, progress=cfg.progress)
    classes = read_classes(manifest_dir / "classes.txt")
    train_set = load_dataset(manifest_dir / "train.csv", progress=cfg.progress)
    valid_set = load_dataset(manifest_dir / "valid.csv", progress=cfg.progress)
    loader = partial(DataLoader, batch_size=int(cfg.batch_size), num_workers=0)
    train_loader = loader(train_set, shuffle=True, generator=gen, drop_last=len(train_set) > cfg.batch_size)
    valid_loader = loader(valid_set, shuffle=False)

    net_cfg = cfg.teacher if cfg.role == "teacher" else cfg.student
    model_cfg = model_config(net_cfg)
    student = build_model(**{**model_cfg, "num_classes": len(classes)})

    method = cfg.distill.name
    if method not in OBJECTIVES:
        raise ConfigError(f"distill.name: unknown method {method!r}; known: {sorted(OBJECTIVES)}")
    kwargs = {k: v for k, v in OmegaConf.to_container(cfg.distill, resolve=True).items() if k != "name"}
    objective = build_objective(method, **kwargs)
    teacher = None
    if objective.needs_teacher:
        teacher, blob = load_model(cfg.teacher_ckpt)
        if blob["classes"] != classes:
            raise ConfigError(f"{cfg.teacher_ckpt}: teacher classes {blob['classes']} differ from "
                              f"the data's {classes}")
    augment = None
    if objective.needs_augment:
        augment = build_augmentation(OmegaConf.to_container(cfg.augment, resolve=True))

    callbacks = build_callbacks(cfg)
    counter = EpochCounter(int(cfg.epochs))
    recoverables = {"student": student, "counter": counter}
    for owner in (objective, *callbacks):
        recoverables.update(getattr(owner, "recoverables", lambda: {})())
    checkpointer = Checkpointer(exp_dir / "save", recoverables=recoverables)
    hparams = dict(objective=objective, augment=augment, lr=float(cfg.optim.lr),
                   epochs=int(cfg.epochs), warmup_epochs=int(cfg.optim.warmup_epochs),
                   steps_per_epoch=len(train_loader), callbacks=callbacks,
                   train_logger=FileTrainLogger(str(exp_dir / "train_log.txt")))
    opt = cfg.optim
    brain = KWSBrain(
        modules={"student": student},
        opt_class=lambda params: torch.optim.AdamW(params, lr=float(opt.lr),
                                                   weight_decay=float(opt.weight_decay)),
        hparams=hparams, run_opts={"device": cfg.device, "noprogressbar": not cfg.progress},
        checkpointer=checkpointer, teacher=teacher)
    t0 = time.time()
    brain.fit(counter, train_loader, valid_loader)
    train_seconds = time.time() - t0

    # Keep the checkpoint that was best on training-domain validation accuracy, unless a
    # callback (weight averaging) provides the final weights itself.
    best = checkpointer.recover_if_possible(max_key="acc")
    selection = "best validation accuracy (training domains)"
    for cb in callbacks:
        final = cb.on_fit_end(brain, train_loader)
        if final is not None:
            student.load_state_dict(final["state_dict"])
            selection = final["selection"]
    student.eval()
    example = train_set.inputs[:1]
    info = dict(role=cfg.role, method=method, seed=int(cfg.seed), epochs=int(cfg.epochs),
                selection=selection, averaging=[type(cb).__name__ for cb in callbacks],
                valid_acc=float(best.meta["acc"]) if best else None,
                best_epoch=int(best.meta["epoch"]) if best else None,
                params=count_params(student), macs=count_macs(student, example=example),
                train_seconds=round(train_seconds, 1), label=str(net_cfg.get("label", net_cfg.name)))
    out = exp_dir / "model.pt"
    save_model(out, student, model_cfg, classes, info)
    write_json(exp_dir / "train_summary.json", info)
    return out
