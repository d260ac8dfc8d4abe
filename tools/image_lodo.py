"""Run the image leave-one-domain-out study without the ``kws-okd`` entry point:

    python tools/image_lodo.py --quick
    python tools/image_lodo.py data=folder data.root=/data/PACS data.dataset=pacs epochs=30
"""
import argparse
import sys

from kws_okd.errors import KWSError
from kws_okd.image.cli import add_image_commands

if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="image_lodo")
    sub = p.add_subparsers(dest="cmd")
    add_image_commands(sub)
    args = p.parse_args(["image-lodo", *sys.argv[1:]])
    try:
        args.fn(args)
    except KWSError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
