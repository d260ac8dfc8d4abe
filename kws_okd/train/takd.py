"""TAKD in one command: teacher -> assistant -> student.

    python -m kws_okd.train.takd [--assistant dscnn] [--student bcresnet1] [overrides ...]

Stage 1 trains the assistant (default DS-CNN, ~25 k parameters, between the 395 k
teacher and the 10 k student) by KD from the teacher with the student recipe
(``distill=kd``, so it lands in ``<results>/<data>/<assistant>-kd/seed<N>`` and is
reused if that run is finished). Stage 2 trains the student with ``distill=takd``,
whose teacher is the assistant's ``model.pt``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kws_okd.errors import KWSError
from kws_okd.train.config import load_recipe
from kws_okd.train.run import train


def run_takd(overrides=(), assistant: str = "dscnn", student: str = "bcresnet1",
             assistant_distill: str = "kd") -> dict[str, Path]:
    """Train (or reuse) the assistant, then the student; return both ``model.pt`` paths."""
    overrides = list(overrides)
    a_cfg = load_recipe("student", overrides + [f"student={assistant}", f"distill={assistant_distill}"])
    a_pt = Path(a_cfg.exp_dir) / "model.pt"
    if not a_pt.exists():
        a_pt = train(a_cfg)
    s_cfg = load_recipe("student", overrides + [
        f"student={student}", "distill=takd", f"distill.assistant={assistant}",
        f"distill.assistant_ckpt={a_pt}", f"teacher_ckpt={a_pt}"])
    s_pt = Path(s_cfg.exp_dir) / "model.pt"
    if not s_pt.exists():
        s_pt = train(s_cfg)
    return {"assistant": a_pt, "student": s_pt}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--assistant", default="dscnn", help="assistant model group (recipes/kws/student)")
    ap.add_argument("--student", default="bcresnet1")
    ap.add_argument("overrides", nargs="*", help="recipe overrides, e.g. seed=1 epochs=10")
    args = ap.parse_args(argv)
    try:
        paths = run_takd(args.overrides, args.assistant, args.student)
    except KWSError as e:
        print(f"kws-okd: error: {e}", file=sys.stderr)
        return 2
    for k, v in paths.items():
        print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
