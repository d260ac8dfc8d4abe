"""``kws-okd`` command line."""
from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

from kws_okd.errors import KWSError


def _corpus(a):
    from kws_okd.data.corpus import CorpusSpec, build_corpus
    kw = {"seed": a.seed}
    if a.families:
        kw["families"] = tuple(a.families.split(","))
    root = build_corpus(a.out or f"data/synth_{a.size}", CorpusSpec.sized(a.size, **kw))
    print(f"corpus ready: {root}")


def _prepare(a):
    from kws_okd.data import gsc
    info = gsc.prepare(a.root, a.out, task=a.task,
                       ood_domains=a.ood.split(",") if a.ood else (),
                       train_domains=a.train_domains.split(",") if a.train_domains else None)
    print(f"manifests in {a.out}: {info['sets']}")


def _train(recipe):
    def run(a):
        from kws_okd.train.config import load_recipe
        from kws_okd.train.run import train
        cfg = load_recipe(recipe, a.overrides, a.recipe_dir)
        print(f"model written: {train(cfg)}")
    return run


def _eval(a):
    from kws_okd.evaluate.report import evaluate
    from kws_okd.train.checkpoint import named_model_paths
    models = named_model_paths(a.model)
    rep = evaluate(models, a.data, a.out, teacher=a.teacher)
    print(Path(a.out, "report.md").read_text())
    return rep


def _run(a):
    from kws_okd.pipeline import run_pipeline
    seeds = [int(s) for s in a.seeds.split(",")]
    run_pipeline(a.overrides, methods=a.methods.split(","), seeds=seeds, student=a.student,
                 reference_teachers=[t for t in a.reference_teachers.split(",") if t],
                 shift_suite=None if a.shift_suite == "none" else a.shift_suite, jobs=a.jobs)


STREAM_COMMANDS = ("stream", "eval-stream", "make-long-audio")


def _command(argv) -> str | None:
    """The sub-command named on the command line (the first word not starting with -)."""
    return next((w for w in argv if not w.startswith("-")), None)


def main(argv=None):
    p = argparse.ArgumentParser(prog="kws-okd", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("corpus", help="synthesise the embedded TTS keyword corpus")
    c.add_argument("--size", default="default", choices=["tiny", "default", "large"])
    c.add_argument("--out")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--families", help="comma-separated synthesiser families")
    c.set_defaults(fn=_corpus)

    c = sub.add_parser("prepare", help="write manifests for a GSC-layout folder")
    c.add_argument("root")
    c.add_argument("--out", required=True)
    c.add_argument("--task", default="35", choices=["12", "35"])
    c.add_argument("--ood", help="comma-separated domains to hold out as OOD tests")
    c.add_argument("--train-domains")
    c.set_defaults(fn=_prepare)

    for name, recipe in (("train", "student"), ("train-teacher", "teacher")):
        c = sub.add_parser(name, help=f"train with recipes/kws/{recipe}.yaml + Hydra overrides")
        c.add_argument("overrides", nargs="*", help="e.g. distill=okd student=bcresnet1 seed=2")
        c.add_argument("--recipe-dir", help="folder of recipe YAMLs (default recipes/kws)")
        c.set_defaults(fn=_train(recipe))

    c = sub.add_parser("eval", help="evaluate models on ID/OOD manifests and write a report")
    c.add_argument("--model", action="append", required=True, help="[name=]path/to/model.pt")
    c.add_argument("--data", required=True, help="manifest folder (with protocol.json) or CSV")
    c.add_argument("--out", default="results/eval")
    c.add_argument("--teacher", help="name of the model the gaps are measured against")
    c.set_defaults(fn=_eval)

    c = sub.add_parser("run", help="the default job: corpus, teachers, ERM/KD/OKD students, report")
    c.add_argument("overrides", nargs="*", help="Hydra overrides applied to every recipe")
    c.add_argument("--methods", default="erm,kd,okd_real",
                   help="comma-separated; okd_real = OKD with real-audio x_ood, okd = the paper's "
                        "disruptive x_ood, okd_rnc = the room/noise/channel policy")
    c.add_argument("--reference-teachers", default="",
                   help="comma-separated teachers trained only for comparison in the report ('' for none)")
    c.add_argument("--seeds", default="0")
    c.add_argument("--shift-suite", choices=["none", "compact", "full"], default="none",
                   help="also score every model on this shifted-speech suite (compact: about 2 more "
                        "minutes on 2 CPU cores; left out by default to keep `make run` within 30 min)")
    c.add_argument("--student", default="bcresnet2_20ms",
                   help="student recipe (recipes/kws/student/); bcresnet1 is the 10 k-parameter one")
    c.add_argument("--jobs", type=int, default=None,
                   help="worker processes for training the students (one thread each) and scoring the long "
                        "recordings (default: one per core, at most 4)")
    c.set_defaults(fn=_run)

    # Sub-command modules are imported only when needed: `kws-okd stream` must start in
    # well under 2 s, and kws_okd.data.shift alone pulls in PyTorch, torchaudio and SciPy.
    from kws_okd.stream.cli import add_stream_commands
    if _command(sys.argv[1:] if argv is None else argv) in STREAM_COMMANDS:
        add_stream_commands(sub)
    else:
        from kws_okd.data.shift import add_shift_command
        from kws_okd.export.cli import add_export_command
        from kws_okd.image_cli import add_image_commands
        add_shift_command(sub)
        add_image_commands(sub)
        add_stream_commands(sub)
        add_export_command(sub)

    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    warnings.simplefilter("default")
    try:
        a.fn(a)
    except KWSError as e:
        print(f"kws-okd: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
