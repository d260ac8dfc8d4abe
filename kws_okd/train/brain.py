"""The SpeechBrain ``Brain`` that trains a keyword spotter with any objective of
the distillation core (ERM, KD, OKD, ...)."""
from __future__ import annotations

import math

import speechbrain as sb
import torch
import torch.nn.functional as F
from speechbrain.utils.distributed import if_main_process

from kws_okd.augment.context import TeacherHearsClean
from kws_okd.augment.registry import bind_networks
from kws_okd.train.callbacks import unwrap
from kws_okd.utils.atomic import write_text

PROGRESS_FILE = "progress.txt"   # in the run folder: "steps done, steps in all"
PROGRESS_EVERY = 10   # optimiser steps between writes of it


class KWSBrain(sb.Brain):
    """``modules.student`` is trained; ``self.teacher`` (frozen, not a module of the
    Brain so it is neither trained, checkpointed nor wrapped for DDP) teaches it.

    Expected hparams: ``objective``, ``augment`` (or None), ``lr``, ``epochs``,
    ``warmup_epochs``, ``steps_per_epoch``, ``callbacks``, ``train_logger``; optional
    ``progress_file``, which then holds "steps done, steps in all" as training goes.

    Callbacks (see :mod:`kws_okd.train.callbacks`) are told of every optimiser step
    and every validation; objectives with a ``set_progress`` method (curricula) get
    the fraction of training done before each step. Parts of the augmentation that
    declare ``needs_networks`` are bound to the student and teacher
    (:func:`kws_okd.augment.registry.bind_networks`).
    """

    def __init__(self, *args, teacher=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher = teacher
        if teacher is not None:
            self.teacher.to(self.device).eval()
            for p in self.teacher.parameters():
                p.requires_grad_(False)
        if self.hparams.augment is not None:
            self.hparams.augment.to(self.device)
            # Augmentations that declare ``needs_networks`` (an adversarial step, say) get
            # the networks; the plain student, not its DDP wrapper, whose forward would
            # expect a backward through every parameter.
            bind_networks(self.hparams.augment, student=unwrap(self.modules.student),
                          teacher=self.teacher)

    def _wrap_distributed(self):
        """DDP for the trainable modules only (the teacher is not a module). SyncBatchNorm
        needs GPUs, so on CPU (gloo) each rank keeps its own batch-norm statistics.
        Buffers are not re-broadcast at each forward: OKD runs the student twice before
        one backward, and a broadcast in between would overwrite tensors autograd saved."""
        if not self.distributed_launch:
            return
        from torch.nn.parallel import DistributedDataParallel as DDP
        for name, module in self.modules.items():
            if any(p.requires_grad for p in module.parameters()):
                if self.device_type == "cuda":
                    module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
                    module = DDP(module, device_ids=[self.device], broadcast_buffers=False)
                else:
                    module = DDP(module, broadcast_buffers=False)
                self.modules[name] = module

    def compute_forward(self, batch, stage):
        wav, y, _ = batch
        wav, y = wav.to(self.device), y.to(self.device)
        if stage == sb.Stage.TRAIN:
            teacher = self.teacher
            context = getattr(self.hparams, "context", None)
            if context is not None:   # speech around the word, heard by the student alone
                clean, wav = wav, context(wav, y)
                if teacher is not None and wav is not clean:
                    teacher = TeacherHearsClean(teacher, wav, clean)
            objective = self.hparams.objective
            if hasattr(objective, "set_progress"):
                objective.set_progress(self.progress())
            return objective(self.modules.student, teacher, wav, y, self.hparams.augment)
        return self.modules.student(wav)

    def compute_objectives(self, outputs, batch, stage):
        y = batch[1].to(self.device)
        if stage == sb.Stage.TRAIN:
            loss, logits, logs = outputs
            self.batches += 1
            for k, v in logs.items():
                self.stage_logs[k] = self.stage_logs.get(k, 0.0) + float(v)
        else:
            logits = outputs
            loss = F.cross_entropy(logits, y)
        self.correct += int((logits.argmax(-1) == y).sum())
        self.seen += len(y)
        return loss

    def progress(self) -> float:
        """Fraction of all training steps done, in [0, 1]."""
        return min(1.0, self.global_step / max(1, self.total_steps))

    @property
    def global_step(self) -> int:
        return (self.epoch - 1) * self.hparams.steps_per_epoch + self.step

    @property
    def total_steps(self) -> int:
        return self.hparams.epochs * self.hparams.steps_per_epoch

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        for cb in self.hparams.callbacks:
            cb.on_train_step(self)
        # Runs trained side by side show no bars of their own; the parent reads this.
        done, total = self.global_step, self.total_steps
        path = getattr(self.hparams, "progress_file", None)
        if path is not None and (done % PROGRESS_EVERY == 0 or done == total) and if_main_process():
            write_text(path, f"{done} {total}\n")

    def on_stage_start(self, stage, epoch=None):
        self.correct, self.seen, self.batches, self.stage_logs = 0, 0, 0, {}
        if epoch is not None:
            self.epoch = epoch
        if stage == sb.Stage.TRAIN and epoch is not None:
            # Stateless schedule (linear warm-up then cosine, per epoch) so a resumed
            # run picks up the same learning rate without extra state.
            lr = self.lr_for_epoch(epoch)
            for g in self.optimizer.param_groups:
                g["lr"] = lr

    def lr_for_epoch(self, epoch):
        h = self.hparams
        if epoch <= h.warmup_epochs:
            return h.lr * epoch / max(1, h.warmup_epochs)
        progress = (epoch - h.warmup_epochs - 1) / max(1, h.epochs - h.warmup_epochs)
        return h.lr * 0.5 * (1 + math.cos(math.pi * progress))

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.TRAIN and torch.distributed.is_initialized():
            # Each rank saw its own shard: sum the counts (validation is not sharded).
            counts = torch.tensor([self.correct, self.seen], dtype=torch.float64)
            torch.distributed.all_reduce(counts)
            self.correct, self.seen = int(counts[0]), int(counts[1])
        acc = self.correct / max(1, self.seen)
        if stage == sb.Stage.TRAIN:
            self.train_stats = {"loss": stage_loss, "acc": acc}
            self.train_stats.update({k: v / max(1, self.batches) for k, v in self.stage_logs.items()})
        elif stage == sb.Stage.VALID:
            stats = {"loss": stage_loss, "acc": acc}
            for cb in self.hparams.callbacks:
                cb.on_valid_end(self, stats, epoch)
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"]},
                train_stats=getattr(self, "train_stats", None), valid_stats=stats)
            # Model selection: best accuracy on training-domain validation data.
            self.checkpointer.save_and_keep_only(
                meta={"acc": acc, "loss": stage_loss, "epoch": epoch}, max_keys=["acc"],
                num_to_keep=1)
        else:
            self.test_stats = {"loss": stage_loss, "acc": acc}
