"""Trainer callbacks: small objects the Brain tells about training progress.

A callback may implement any of:

- ``on_train_step(brain)``: after every optimiser step (``brain.global_step``,
  ``brain.modules.student``);
- ``on_valid_end(brain, stats, epoch)``: after each validation (``stats`` has
  ``loss`` and ``acc``);
- ``on_fit_end(brain, train_loader) -> None | {"state_dict": ..., "selection": str,
  "epoch": int}``: return final weights to replace the best-validation checkpoint
  (``epoch``, optional: the last epoch whose weights are in them); ``train_loader``
  is the batch-norm refit loader below;
- ``recoverables() -> dict``: extra state for SpeechBrain's checkpointer (resume).

Before ``fit`` the trainer calls ``set_loaders(bn_loader=..., valid_loader=...)``:
``bn_loader`` yields training batches in one seeded, shuffled order (the same every
pass) for re-estimating batch-norm statistics, ``valid_loader`` the training-domain
validation set. ``brain.modules.student`` may be wrapped for DDP; weights a callback
keeps or returns must use the plain module's keys (:func:`unwrap`).

Adding one is a decorated class plus a YAML file in ``recipes/kws/callbacks/``.
"""
from __future__ import annotations

from kws_okd.errors import ConfigError
from kws_okd.utils.registry import Registry

CALLBACKS = Registry("callback")
register_callback = CALLBACKS.register


def unwrap(module):
    """The plain module inside a DDP / DataParallel wrapper (whose ``state_dict`` keys
    carry a ``module.`` prefix); any other module as it is."""
    from torch.nn.parallel import DataParallel, DistributedDataParallel
    return module.module if isinstance(module, (DataParallel, DistributedDataParallel)) else module


class Callback:
    bn_loader = None
    valid_loader = None

    def set_loaders(self, bn_loader=None, valid_loader=None):
        self.bn_loader, self.valid_loader = bn_loader, valid_loader

    def on_train_step(self, brain):
        pass

    def on_valid_end(self, brain, stats, epoch):
        pass

    def on_fit_end(self, brain, train_loader):
        return None

    def recoverables(self) -> dict:
        return {}


def build_callback(spec: dict) -> Callback:
    spec = dict(spec)
    name = spec.pop("name", None)
    if name not in CALLBACKS:
        raise ConfigError(f"callbacks: unknown callback {name!r}; known: {sorted(CALLBACKS)}")
    try:
        return CALLBACKS[name](**spec)
    except TypeError as e:
        raise ConfigError(f"callbacks: {name!r} got bad arguments ({e})") from None
