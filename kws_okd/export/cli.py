"""``export`` sub-command (wired into ``kws_okd.cli`` with :func:`add_export_command`)."""
from __future__ import annotations


def _export(a):
    from pathlib import Path

    from kws_okd.export.pipeline import export_all
    card = export_all(a.model, a.out, calib=a.calib, tests=a.test or [], calib_clips=a.calib_clips,
                      int8_frame_planes=a.int8_frame_planes)
    print(Path(a.out, "card.md").read_text())
    return card


def add_export_command(subparsers) -> None:
    c = subparsers.add_parser("export", help="TorchScript / ONNX / int8 / streaming exports and a model card")
    c.add_argument("--model", required=True, help="model.pt")
    c.add_argument("--out", required=True, help="output folder")
    c.add_argument("--calib", help="manifest CSV to calibrate int8 on (training data); no int8 without it")
    c.add_argument("--calib-clips", type=int, default=256)
    c.add_argument("--test", action="append", help="manifest CSV to report accuracy on (repeatable)")
    c.add_argument("--int8-frame-planes", type=int, choices=(1, 2), default=1,
                   help="int8 front-end: each frame as 1 int8 plane (default) or 2 (about ten times less "
                        "rounding error; faster than float at batch 1, not at batch 32: docs/export.md)")
    c.set_defaults(fn=_export)
