"""Trainer callbacks: small objects the Brain tells about training progress.

A callback may implement any of:

- ``on_train_step(brain)``: after every optimiser step (``brain.global_step``,
  ``brain.modules.student``);
- ``on_valid_end(brain, stats, epoch)``: after each validation (``stats`` has
  ``loss`` and ``acc``);
- ``on_fit_end(brain, train_loader) -> None | {"state_dict": ..., "selection": str}``:
  return final weights to replace the best-validation checkpoint;
- ``recoverables() -> dict``: extra state for SpeechBrain's checkpointer (resume).

Adding one is a decorated class plus a YAML file in ``recipes/kws/callbacks/``.
"""
from __future__ import annotations

from kws_okd.errors import ConfigError
from kws_okd.utils.registry import Registry

CALLBACKS = Registry("callback")
register_callback = CALLBACKS.register


class Callback:
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
