"""Compose recipe configs with Hydra, turning its errors into ones that name the key."""
from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from kws_okd.errors import ConfigError

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def context_tag(p) -> str:
    """Run-folder tag of a student's ``context_speech`` (kws_okd/augment/context.py): none
    when it is off, so that models trained with speech around the word never reuse, or
    overwrite, the runs trained without it."""
    return "" if float(p) == 0 else f"+context{float(p):g}"


if not OmegaConf.has_resolver("context_tag"):
    OmegaConf.register_new_resolver("context_tag", context_tag)


def load_recipe(name: str, overrides=(), recipe_dir: str | Path | None = None):
    """``name`` is e.g. ``student`` or ``teacher`` in ``recipes/kws``."""
    recipe_dir = Path(recipe_dir or RECIPES / "kws").resolve()
    if not (recipe_dir / f"{name}.yaml").exists():
        raise ConfigError(f"{recipe_dir / (name + '.yaml')}: recipe does not exist")
    try:
        with initialize_config_dir(config_dir=str(recipe_dir), version_base="1.3"):
            cfg = compose(config_name=name, overrides=list(overrides))
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as e:
        msg = str(e).split("\n")[0]
        raise ConfigError(f"recipe {name!r} with overrides {list(overrides)}: {msg}") from None
    OmegaConf.set_struct(cfg, True)
    return cfg


# Keys every training recipe has, with their type and the range they must lie in.
_CHECKS = {
    "seed": (int, lambda v: v >= 0, ">= 0"),
    "epochs": (int, lambda v: v > 0, "> 0"),
    "batch_size": (int, lambda v: v > 0, "> 0"),
    "optim.lr": (float, lambda v: v > 0, "> 0"),
    "optim.weight_decay": (float, lambda v: v >= 0, ">= 0"),
    "optim.warmup_epochs": (int, lambda v: v >= 0, ">= 0"),
    "distill.temperature": (float, lambda v: v > 0, "> 0"),
    "distill.ce_weight": (float, lambda v: v >= 0, ">= 0"),
    "distill.kd_weight": (float, lambda v: v >= 0, ">= 0"),
    "distill.ood_weight": (float, lambda v: v >= 0, ">= 0"),
}


def _walk(node, prefix=""):
    if OmegaConf.is_dict(node):
        for k, v in node.items_ex(resolve=False) if hasattr(node, "items_ex") else node.items():
            yield f"{prefix}{k}", k, v
            yield from _walk(v, f"{prefix}{k}.")
    elif OmegaConf.is_list(node):
        for i, v in enumerate(node):
            yield from _walk(v, f"{prefix}{i}.")


def validate_config(cfg) -> None:
    """Refuse wrong types, out-of-range values and ``_target_`` keys, naming the key.

    kws-okd never instantiates classes named in a recipe (components are looked up in
    its registries), so a ``_target_`` can only be a mistake or an attack."""
    for path, key, _ in _walk(cfg):
        if key == "_target_":
            raise ConfigError(f"{path}: recipes may not name classes to instantiate (_target_); "
                              f"use a registered name instead")
    for key, (typ, ok, rule) in _CHECKS.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is None:
            continue
        if isinstance(value, bool) or (typ is int and isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"{key}: expected {typ.__name__}, got {value!r}")
        try:
            v = typ(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected {typ.__name__}, got {value!r}") from None
        if not ok(v):
            raise ConfigError(f"{key}: must be {rule}, got {value!r}")
