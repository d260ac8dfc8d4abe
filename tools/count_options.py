"""Count the recipe options: the leaf keys of every recipe YAML file.

    python tools/count_options.py              # the working tree's recipes
    python tools/count_options.py --rev f8ec227  # the recipes as committed at a revision
    python tools/count_options.py -v           # and the count per file

Each file under recipes/kws/ and recipes/image/ is flattened to dotted keys; a leaf is a
key whose value is not a mapping (a list counts as one leaf). The ``defaults`` list and
the ``hydra:`` subtree are Hydra's, not options, and are left out. A key set in two files
(a method overriding a distill default) counts in each file.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TREES = ("recipes/kws", "recipes/image")


def leaves(node, prefix: str = "") -> list[str]:
    if not isinstance(node, dict):
        return [prefix]
    out: list[str] = []
    for key, value in node.items():
        if not prefix and key in ("defaults", "hydra"):
            continue
        out += leaves(value, f"{prefix}.{key}" if prefix else str(key))
    return out


def recipe_texts(rev: str | None) -> dict[str, str]:
    if rev is None:
        paths = sorted(str(p.relative_to(ROOT)) for tree in TREES for p in (ROOT / tree).rglob("*.yaml"))
        return {n: (ROOT / n).read_text() for n in paths}
    names = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev, *TREES], cwd=ROOT,
                           check=True, capture_output=True, text=True).stdout.split()
    return {n: subprocess.run(["git", "show", f"{rev}:{n}"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout
            for n in sorted(names) if n.endswith(".yaml")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", help="a git revision instead of the working tree")
    ap.add_argument("-v", "--verbose", action="store_true", help="the count per file")
    args = ap.parse_args(argv)
    total = 0
    texts = recipe_texts(args.rev)
    for name, text in texts.items():
        n = len(leaves(yaml.safe_load(text) or {}))
        total += n
        if args.verbose:
            print(f"{n:4d}  {name}")
    print(f"{total} options in {len(texts)} recipe files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
