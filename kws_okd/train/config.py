"""Compose recipe configs with Hydra, turning its errors into ones that name the key."""
from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from kws_okd.errors import ConfigError

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


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
