"""Hydra application for sweeps: ``python -m kws_okd.train.hydra_app -m seed=0,1,2 distill=kd,okd``.

Same recipes as ``kws-okd train``; ``--config-name teacher`` trains teachers. Each job
writes into its own ``exp_dir`` (derived from its overrides through the recipe's
interpolations); Hydra's own logs go under ``${results_dir}/multirun``.
"""
from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from kws_okd.errors import KWSError
from kws_okd.train.config import RECIPES
from kws_okd.train.run import train


@hydra.main(config_path=str(RECIPES / "kws"), config_name="student", version_base="1.3")
def app(cfg: DictConfig) -> float | None:
    try:
        path = train(cfg)
    except KWSError as e:
        print(f"kws-okd: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    summary = path.parent / "train_summary.json"  # written by the main process only
    if not summary.exists():
        return None
    import json
    return json.loads(summary.read_text()).get("valid_acc")


if __name__ == "__main__":
    app()
