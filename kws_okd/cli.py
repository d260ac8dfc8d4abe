"""``kws-okd`` command line.

Start-up is kept short (``kws-okd --help`` in well under a second): this module imports
only the standard library at the top, and ``main`` imports the module that defines the
sub-command named on the command line, and nothing else; each command imports PyTorch,
SpeechBrain, Hydra or the pipeline inside its own function, when it runs.
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import NamedTuple

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


def _shift(a):
    from kws_okd.data.shift import build_suite
    out = build_suite(a.data, a.out, suite=a.suite, seed=a.seed, noise_dir=a.noise_dir, rir_dir=a.rir_dir,
                      batch_size=a.batch_size)
    sets = json.loads((out / "protocol.json").read_text())["eval_sets"]
    print(f"shift suite ready: {out} ({len(sets)} sets); evaluate with "
          f"`kws-okd eval --data {out} --model ...`")


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
                 shift_suite=None if a.shift_suite == "none" else a.shift_suite, jobs=a.jobs,
                 results_page=a.results_page)


class Command(NamedTuple):
    group: str
    help: str
    example: str           # one command line, shown at the end of ``kws-okd NAME --help``
    adder: str             # "module:function" that adds the sub-command's parser


CORE = "kws_okd.cli:add_core_commands"
STREAM = "kws_okd.stream.cli:add_stream_commands"

# Every sub-command, in the order of the help text's groups. The one-line help here is
# what ``kws-okd --help`` lists (without importing the module that defines the command;
# tests/test_imports.py checks that each module adds exactly the commands listed here).
COMMANDS: dict[str, Command] = {
    "corpus": Command("data", "synthesise the embedded TTS keyword corpus",
                      "kws-okd corpus --size tiny --out data/synth_tiny", CORE),
    "prepare": Command("data", "write manifests for a GSC-layout folder",
                       "kws-okd prepare /data/speech_commands_v0.02 --out data/gsc12 --task 12", CORE),
    "shift": Command("data", "write a shifted-speech evaluation suite from a test manifest",
                     "kws-okd shift --data data/synth_default_manifests/task12 --out data/shift_compact "
                     "--suite compact", CORE),
    "make-long-audio": Command("data", "compose a long test recording with keyword labels",
                               "kws-okd make-long-audio --manifest data/synth_default_manifests/task12/"
                               "test_id.csv --out long.wav --minutes 10", STREAM),
    "train-teacher": Command("train", "train a teacher with recipes/kws/teacher.yaml + Hydra overrides",
                             "kws-okd train-teacher data=gsc data.root=/data/speech_commands_v0.02 "
                             "data.task=12", CORE),
    "train": Command("train", "train a student with recipes/kws/student.yaml + Hydra overrides",
                     "kws-okd train distill=okd student=bcresnet1 seed=2", CORE),
    "keywords": Command("train", "train, distil and export a detector for your own words",
                        'kws-okd keywords "marvin,sheila,lights on" --out models/home',
                        "kws_okd.keywords.cli:add_keywords_command"),
    "run": Command("train", "the default job: corpus, teachers, ERM/KD/OKD students, report",
                   "kws-okd run --seeds 0,1,2", CORE),
    "eval": Command("evaluate", "evaluate models on ID/OOD manifests and write a report",
                    "kws-okd eval --model teacher=results/teacher/model.pt --model okd=results/okd/model.pt "
                    "--data data/synth_default_manifests/task12 --out results/eval", CORE),
    "eval-stream": Command("evaluate", "FRR at a fixed false-alarm rate, DET curve and latency",
                           "kws-okd eval-stream --model okd=results/okd/model.pt --wav long.wav "
                           "--out results/stream_eval", STREAM),
    "stream": Command("stream", "detect keywords live from a microphone, a file or stdin",
                      "kws-okd stream --model results/okd/model.pt --mic", STREAM),
    "export": Command("export", "TorchScript / ONNX / int8 / streaming exports and a model card",
                      "kws-okd export --model results/okd/model.pt --out results/export/okd "
                      "--calib data/synth_default_manifests/task12/train.csv", "kws_okd.export.cli:add_export_command"),
    "digits-domains": Command("image", "render the embedded digit image domains",
                              "kws-okd digits-domains --size 32 --seed 0", "kws_okd.image.cli:add_image_commands"),
    "image-lodo": Command("image", "leave-one-domain-out: teacher + ERM/KD/OKD students per held-out "
                                   "image domain, one table per domain", "kws-okd image-lodo --quick", "kws_okd.image.cli:add_image_commands"),
}
GROUPS = ("data", "train", "evaluate", "stream", "export", "image")


def add_core_commands(sub) -> None:
    """The commands defined in this module: corpus, prepare, shift, train, train-teacher, eval, run."""
    c = sub.add_parser("corpus", help=COMMANDS["corpus"].help)
    c.add_argument("--size", default="default", choices=["tiny", "default", "large"])
    c.add_argument("--out")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--families", help="comma-separated synthesiser families")
    c.set_defaults(fn=_corpus)

    c = sub.add_parser("prepare", help=COMMANDS["prepare"].help)
    c.add_argument("root")
    c.add_argument("--out", required=True)
    c.add_argument("--task", default="35", choices=["12", "35"])
    c.add_argument("--ood", help="comma-separated domains to hold out as OOD tests")
    c.add_argument("--train-domains")
    c.set_defaults(fn=_prepare)

    c = sub.add_parser("shift", help=COMMANDS["shift"].help)
    c.add_argument("--data", required=True, help="test manifest CSV, or a manifest folder with test_id.csv")
    c.add_argument("--out", required=True, help="suite folder to write")
    c.add_argument("--suite", default="compact", choices=["compact", "full"])
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--noise-dir", help="extra held-out noise: a folder of WAVs (MUSAN-style, recursive)")
    c.add_argument("--rir-dir", help="extra room condition from real RIRs: a folder of WAVs or a CSV")
    c.add_argument("--batch-size", type=int, default=256)
    c.set_defaults(fn=_shift)

    for name, recipe in (("train", "student"), ("train-teacher", "teacher")):
        c = sub.add_parser(name, help=COMMANDS[name].help)
        c.add_argument("overrides", nargs="*", help="e.g. distill=okd student=bcresnet1 seed=2")
        c.add_argument("--recipe-dir", help="folder of recipe YAMLs (default recipes/kws)")
        c.set_defaults(fn=_train(recipe))

    c = sub.add_parser("eval", help=COMMANDS["eval"].help)
    c.add_argument("--model", action="append", required=True, help="[name=]path/to/model.pt")
    c.add_argument("--data", required=True, help="manifest folder (with protocol.json) or CSV")
    c.add_argument("--out", default="results/eval")
    c.add_argument("--teacher", help="name of the model the gaps are measured against")
    c.set_defaults(fn=_eval)

    c = sub.add_parser("run", help=COMMANDS["run"].help)
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
    c.add_argument("--results-page", help="also copy the run's summary.md here (make run: docs/results.md), "
                                           "its links pointing into the report folder")
    c.add_argument("--student", default="bcresnet2_20ms",
                   help="student recipe (recipes/kws/student/); bcresnet1 is the 10 k-parameter one")
    c.add_argument("--jobs", type=int, default=None,
                   help="worker processes for training the students (one thread each) and scoring the long "
                        "recordings (default: one per core, at most 4)")
    c.set_defaults(fn=_run)


def _listing() -> str:
    """The grouped command list at the end of ``kws-okd --help``."""
    width = max(map(len, COMMANDS)) + 2
    lines = ["commands:"]
    for group in GROUPS:
        lines.append(f"  {group}:")
        lines += [f"    {name:<{width}}{cmd.help}" for name, cmd in COMMANDS.items() if cmd.group == group]
    lines += ["", "`kws-okd COMMAND --help` lists a command's options and ends with an example."]
    return "\n".join(lines)


def _command(argv) -> str | None:
    """The sub-command named on the command line (the first word not starting with -);
    None when there is none or when -h/--help comes before it (the main help then)."""
    for w in argv:
        if w in ("-h", "--help"):
            return None
        if not w.startswith("-"):
            return w
    return None


def add_command(sub, name: str) -> argparse.ArgumentParser:
    """Import the module that defines ``name``, add its parser(s) to ``sub`` and return
    ``name``'s, with the one-line help as description and the example as epilog."""
    module, _, function = COMMANDS[name].adder.partition(":")
    getattr(importlib.import_module(module), function)(sub)
    c = sub.choices[name]
    c.description = c.description or COMMANDS[name].help
    c.epilog = f"example:\n  {COMMANDS[name].example}"
    c.formatter_class = argparse.RawDescriptionHelpFormatter
    return c


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(prog="kws-okd", description="Keyword spotting with knowledge distillation: "
                                "tiny keyword spotters\ndistilled to survive acoustic shift (OKD).",
                                epilog=_listing(), formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND", help="one of the commands below")
    cmd = _command(argv)
    if cmd in COMMANDS:
        add_command(sub, cmd)
    else:
        # The main help, or a misspelt command: list every name, import no command module.
        for name in COMMANDS:
            sub.add_parser(name)

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
