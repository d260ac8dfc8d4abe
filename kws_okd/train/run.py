"""Train one network from a composed recipe config (teacher or student)."""
from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from speechbrain.utils.distributed import if_main_process, run_on_main
from speechbrain.utils.epoch_loop import EpochCounter
from speechbrain.utils.train_logger import FileTrainLogger
from torch.utils.data import DataLoader

from kws_okd.augment import build_augmentation
from kws_okd.augment.context import build_context
from kws_okd.data.manifest import manifest_without_domains, read_classes
from kws_okd.data.registry import load_dataset, prepare_data
from kws_okd.distill import OBJECTIVES, build_objective
from kws_okd.errors import ConfigError
from kws_okd.models import build_model, count_macs, count_params
from kws_okd.train import averaging as _averaging  # noqa: F401  (wakd/swad/sma/ema callbacks)
from kws_okd.train.averaging import accuracy
from kws_okd.train.brain import PROGRESS_FILE, KWSBrain
from kws_okd.train.checkpoint import load_model, save_model
from kws_okd.train.config import validate_config
from kws_okd.train.provenance import prepare_run_dir, run_provenance, stale_reasons
from kws_okd.train.state import AtomicCheckpointer, RNGState, TrainClock, distributed_launch, init_distributed
from kws_okd.utils.atomic import write_json, write_text

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def model_config(net_cfg) -> dict:
    cfg = OmegaConf.to_container(net_cfg, resolve=True)
    cfg.pop("label", None)
    return cfg


def bn_refit_loader(dataset, batch_size: int, seed: int) -> DataLoader:
    """Training batches for re-estimating batch-norm statistics: one shuffled order drawn
    from ``seed`` alone (not the global RNG), the same on every pass, so each refit of a
    run, a resumed run and every DDP rank see the same batches. The manifests are sorted
    by class, so batches in file order would hold one or two classes each and give the
    wrong running variance. A last partial batch is dropped, as in training (``update_bn``
    weighs every batch equally)."""
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(int(seed))).tolist()
    return DataLoader(dataset, batch_size=batch_size, sampler=order, num_workers=0,
                      drop_last=len(dataset) > batch_size)


def build_callbacks(cfg) -> list:
    """Trainer callbacks from the ``averaging`` group (unless ``name: none``) and the
    ``callbacks`` list, each ``{name: ..., **kwargs}`` looked up in
    :data:`kws_okd.train.callbacks.CALLBACKS`."""
    from kws_okd.train.callbacks import build_callback
    specs = OmegaConf.to_container(cfg.callbacks, resolve=True) if cfg.get("callbacks") else []
    averaging = cfg.get("averaging")
    if averaging is not None and averaging.get("name", "none") != "none":
        spec = OmegaConf.to_container(averaging, resolve=True)
        spec.pop("suffix", None)  # names the run folder, not a callback argument
        specs = [spec] + list(specs)
    return [build_callback(dict(s)) for s in specs]


def training_manifests(cfg, progress: bool = False) -> tuple[Path, Path]:
    """The manifest folder and the training manifest a run reads (prepared if missing).
    A run may leave domains out of its training set (the teacher's real-speech windows)."""
    manifest_dir = prepare_data(cfg.data, progress=progress)
    without = list(cfg.get("train_without_domains") or [])
    return manifest_dir, manifest_without_domains(manifest_dir / "train.csv", without)


def teacher_checkpoint(cfg) -> Path | None:
    """The model file a run's objective learns from, or None (ERM, a teacher's own run).
    TAKD's student learns from the assistant, which stands in for the teacher."""
    method = cfg.distill.name
    if method not in OBJECTIVES:
        raise ConfigError(f"distill.name: unknown method {method!r}; known: {sorted(OBJECTIVES)}")
    if not OBJECTIVES[method].needs_teacher:
        return None
    return Path(cfg.distill.get("assistant_ckpt") or cfg.teacher_ckpt)


def finished_run(cfg) -> bool:
    """True when ``cfg.exp_dir`` holds a finished run trained from this config, data and
    teacher (kws_okd/train/provenance.py); a run of anything else is not finished."""
    exp_dir = Path(cfg.exp_dir)
    if not (exp_dir / "model.pt").exists():
        return False
    teacher_ckpt = teacher_checkpoint(cfg)
    if teacher_ckpt is not None and not teacher_ckpt.exists():
        return False
    manifest_dir, train_csv = training_manifests(cfg)
    return not stale_reasons(exp_dir, run_provenance(cfg, train_csv, manifest_dir, teacher_ckpt), teacher_ckpt)


def train(cfg) -> Path:
    """Train the network the recipe names; return the path of its ``model.pt``."""
    validate_config(cfg)
    exp_dir = Path(cfg.exp_dir)
    device = init_distributed(cfg.get("distributed_backend")) if distributed_launch() else cfg.device
    seed_everything(int(cfg.seed))
    # SpeechBrain's ReproducibleRandomSampler reads its seed from here; with the epoch it
    # fixes the batch order, which exact resume relies on.
    os.environ["SB_GLOBAL_SEED"] = str(int(cfg.seed))
    torch.set_num_threads(int(cfg.threads)) if cfg.get("threads") else None

    # Data preparation writes files: only the main process does it, the others then
    # find it cached.
    run_on_main(training_manifests, args=[cfg], kwargs={"progress": cfg.progress})
    manifest_dir, train_csv = training_manifests(cfg)
    classes = read_classes(manifest_dir / "classes.txt")
    train_set = load_dataset(train_csv, progress=cfg.progress)
    valid_set = load_dataset(manifest_dir / "valid.csv", progress=cfg.progress)
    batch = int(cfg.batch_size)
    # Own generators: a DataLoader without one draws its worker seed from the global RNG
    # each epoch, which would shift the augmentation draws of a resumed run.
    train_kwargs = dict(batch_size=batch, shuffle=True, drop_last=len(train_set) > batch, num_workers=0,
                        generator=torch.Generator().manual_seed(int(cfg.seed)))
    valid_kwargs = dict(batch_size=batch, num_workers=0, generator=torch.Generator())
    steps_per_epoch = len(train_set) // batch if train_kwargs["drop_last"] else -(-len(train_set) // batch)
    if distributed_launch():
        steps_per_epoch = max(1, steps_per_epoch // int(os.environ.get("WORLD_SIZE", 1)))
    # A budget in optimiser steps (``steps=``) does not change with the data's size;
    # it is rounded up to whole epochs, which validation and the LR schedule work in.
    epochs = -(-int(cfg.steps) // steps_per_epoch) if cfg.get("steps") else int(cfg.epochs)

    net_cfg = cfg.teacher if cfg.role == "teacher" else cfg.student
    model_cfg = model_config(net_cfg)
    student = build_model(**{**model_cfg, "num_classes": len(classes)})

    method = cfg.distill.name
    teacher_ckpt = teacher_checkpoint(cfg)   # also refuses an unknown method
    kwargs = {k: v for k, v in OmegaConf.to_container(cfg.distill, resolve=True).items() if k != "name"}
    objective = build_objective(method, **kwargs)
    if hasattr(objective, "set_classes"):   # objectives that name classes (OKD's reject_class)
        objective.set_classes(classes)
    teacher = teacher_blob = None
    if teacher_ckpt is not None:
        teacher, teacher_blob = load_model(teacher_ckpt)
        if teacher_blob["classes"] != classes:
            raise ConfigError(f"{teacher_ckpt}: teacher classes {teacher_blob['classes']} differ from "
                              f"the data's {classes}")
    augment = None
    if objective.needs_augment:
        augment = build_augmentation(OmegaConf.to_container(cfg.augment, resolve=True))

    # The folder may hold a run of another config, data or teacher (an older checkout's):
    # it is set aside rather than resumed or reused.
    run_on_main(prepare_run_dir, args=[exp_dir, run_provenance(cfg, train_csv, manifest_dir, teacher_blob),
                                       teacher_ckpt])
    if if_main_process():
        write_text(exp_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))

    callbacks = build_callbacks(cfg)
    # Loaders a callback may use outside training: BN refits and scoring candidates.
    refit_loader = bn_refit_loader(train_set, batch, int(cfg.seed))
    valid_loader = DataLoader(valid_set, batch_size=batch, num_workers=0)
    for cb in callbacks:
        cb.set_loaders(bn_loader=refit_loader, valid_loader=valid_loader)
    counter = EpochCounter(epochs)
    recoverables = {"student": student, "counter": counter, "rng": RNGState()}
    for owner in (objective, *callbacks):
        recoverables.update(getattr(owner, "recoverables", lambda: {})())
    clock = TrainClock()  # training seconds, carried across resumes in checkpoint metadata
    checkpointer = AtomicCheckpointer(exp_dir / "save", recoverables=recoverables, clock=clock)
    role = str(cfg.get("role", "student"))

    def entry(name):   # a recipe's augmentation entry as a plain dict, or None when absent
        return OmegaConf.to_container(cfg[name], resolve=True) if cfg.get(name) else None
    context = build_context(entry("context_speech"), classes, role=role)
    hparams = dict(objective=objective, augment=augment, context=context,
                   lr=float(cfg.optim.lr),
                   epochs=epochs, warmup_epochs=int(cfg.optim.warmup_epochs),
                   steps_per_epoch=steps_per_epoch, callbacks=callbacks,
                   train_logger=FileTrainLogger(str(exp_dir / "train_log.txt")),
                   progress_file=exp_dir / PROGRESS_FILE)
    opt = cfg.optim
    brain = KWSBrain(
        modules={"student": student},
        opt_class=lambda params: torch.optim.AdamW(params, lr=float(opt.lr),
                                                   weight_decay=float(opt.weight_decay)),
        hparams=hparams, run_opts={
            "device": device, "noprogressbar": not cfg.progress,
            "distributed_backend": "nccl" if device.startswith("cuda") else "gloo",
            # SpeechBrain takes one of the two; a step interval wins when given.
            "ckpt_interval_minutes": 0.0 if cfg.get("ckpt_interval_steps") else
            float(cfg.get("ckpt_interval_minutes") or 0),
            "ckpt_interval_steps": int(cfg.get("ckpt_interval_steps") or 0)},
        checkpointer=checkpointer, teacher=teacher)
    clock.start()
    brain.fit(counter, train_set, valid_set, train_loader_kwargs=train_kwargs,
              valid_loader_kwargs=valid_kwargs)
    train_seconds = clock.elapsed()  # before the recovery below moves the clock back

    # Keep the checkpoint that was best on training-domain validation accuracy, unless a
    # callback (weight averaging) provides the final weights itself.
    best = checkpointer.recover_if_possible(max_key="acc")
    selection = "best validation accuracy (training domains)"
    raw_acc = float(best.meta["acc"]) if best else None
    raw_epoch = int(best.meta["epoch"]) if best else None
    valid_acc, best_epoch, replaced, candidates = raw_acc, raw_epoch, False, None
    for cb in callbacks:
        final = cb.on_fit_end(brain, refit_loader)
        if final is not None:
            student.load_state_dict(final["state_dict"])
            selection, best_epoch, replaced = final["selection"], final.get("epoch"), True
            candidates = final.get("candidates", candidates)
    student.eval()
    if replaced:  # validate the weights that are saved, not the checkpoint they replaced
        valid_acc = accuracy(student, valid_loader, brain.device)
    calibration = None
    if cfg.get("calibrate_unknown") and "_unknown_" in classes:
        # The _unknown_ offset chosen on real people (the development set's select
        # speakers), folded into the output bias (kws_okd/train/calibrate.py).
        from kws_okd.data.people import people_manifest
        from kws_okd.train.calibrate import calibrate_unknown
        select = load_dataset(people_manifest(manifest_dir, "select"))
        calibration = calibrate_unknown(student, select, classes)
    example = train_set.inputs[:1]
    # valid_acc and best_epoch describe the saved model; raw_best_* the best single
    # checkpoint (the same model unless a callback averaged the weights).
    info = dict(role=cfg.role, method=method, seed=int(cfg.seed), epochs=epochs,
                steps=epochs * steps_per_epoch, train_clips=len(train_set),
                selection=selection, averaging=[type(cb).__name__ for cb in callbacks],
                valid_acc=valid_acc, best_epoch=best_epoch,
                raw_best_valid_acc=raw_acc, raw_best_epoch=raw_epoch,
                params=count_params(student), macs=count_macs(student, example=example),
                train_seconds=round(train_seconds, 1), label=str(net_cfg.get("label", net_cfg.name)))
    if calibration:
        info["calibration"] = calibration
    if getattr(train_set, "num_samples", 16000) != 16000:   # a longer window for a keyword phrase (kws_okd/keywords)
        info["window_s"] = train_set.num_samples / 16000
    if candidates:   # averaging starts tried, with their validation accuracy
        info["averaging_candidates"] = candidates
    out = exp_dir / "model.pt"
    if if_main_process():
        save_model(out, student, model_cfg, classes, info)
        write_json(exp_dir / "train_summary.json", info)
    return out
