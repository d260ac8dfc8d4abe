"""Layering (issue 13): the data modules import one another in no circle, in any order,
and the speech trainer binds networks to augmentations without knowing about images."""
import ast
import os
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
DATA_TRIO = ("kws_okd.data.images", "kws_okd.data.registry", "kws_okd.data.sources")


def imported_modules(path: Path, package: str) -> set[str]:
    """Every ``kws_okd`` module ``path`` imports, at module level or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module if node.level == 0 else f"{package}.{node.module}"
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)  # ``from pkg import module``
    return {m for m in out if m.startswith("kws_okd.")}


def import_cycles(folder: Path, package: str) -> list[list[str]]:
    """Cycles among the modules of one package folder (lazy imports count too)."""
    mods = {f"{package}.{p.stem}": p for p in folder.glob("*.py") if p.stem != "__init__"}
    graph = {m: sorted(imported_modules(p, package) & set(mods) - {m}) for m, p in mods.items()}
    cycles, state = [], {}

    def visit(m, stack):
        state[m] = "open"
        for n in graph[m]:
            if state.get(n) == "open":
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n, stack + [n])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return cycles


def test_the_data_package_has_no_import_cycle():
    cycles = import_cycles(ROOT / "kws_okd" / "data", "kws_okd.data")
    assert cycles == [], " ; ".join(" -> ".join(c) for c in cycles)


# One subprocess tries every order; before each, every ``kws_okd`` module is dropped from
# sys.modules, so the three import fresh (third-party libraries stay loaded: they are
# not under test, and importing torch six times would cost half a minute).
CHECK = """
import importlib, itertools, sys
trio = sys.argv[1:]
for order in itertools.permutations(trio):
    for name in [m for m in sys.modules if m == "kws_okd" or m.startswith("kws_okd.")]:
        del sys.modules[name]
    try:
        for name in order:
            importlib.import_module(name)
        from kws_okd.data import kinds, registry
        registry.load_builtins()
        assert {"synth", "gsc", "image_folder", "digits"} <= set(kinds.DATA_KINDS), sorted(kinds.DATA_KINDS)
        assert {"audio", "image"} <= set(kinds.DATASETS), sorted(kinds.DATASETS)
        assert registry.DATA_KINDS is kinds.DATA_KINDS
    except Exception as e:
        print(" then ".join(order), "->", type(e).__name__, e)
"""


def test_images_registry_and_sources_import_fresh_in_every_order():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", CHECK, *DATA_TRIO], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "", run.stdout


# -- the trainer and network-driven augmentations ---------------------------------------

def test_the_speech_brain_does_not_import_image_code():
    mods = imported_modules(ROOT / "kws_okd" / "train" / "brain.py", "kws_okd.train")
    assert not any("image" in m for m in mods), sorted(mods)


class NeedsNetworks(nn.Module):
    """A made-up, modality-free augmentation that declares it needs the networks."""
    needs_networks = True

    def __init__(self):
        super().__init__()
        self.bound = None

    def bind(self, student=None, teacher=None):
        self.bound = (student, teacher)

    def forward(self, x):
        return x


def test_the_brain_binds_every_augmentation_that_declares_needs_networks():
    from kws_okd.train.brain import KWSBrain
    inner = NeedsNetworks()
    augment = nn.Sequential(nn.Identity(), nn.Sequential(inner))  # nested, as in one_of
    student, teacher = nn.Linear(2, 2), nn.Linear(2, 2)
    KWSBrain(modules={"student": student}, opt_class=lambda p: torch.optim.SGD(p, lr=0.1),
             hparams={"augment": augment}, run_opts={"device": "cpu", "noprogressbar": True},
             teacher=teacher)
    assert inner.bound is not None and inner.bound[0] is student and inner.bound[1] is teacher


def test_fgsm_declares_needs_networks_and_binds_through_the_generic_walker():
    from kws_okd.augment import build_augmentation
    from kws_okd.augment.registry import bind_networks
    aug = build_augmentation({"name": "one_of", "transforms": [{"name": "fgsm", "eps": 1e-3}]})
    fgsm = next(m for m in aug.modules() if type(m).__name__ == "FGSM")
    assert fgsm.needs_networks
    student = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    bind_networks(aug, student=student, teacher=None)
    assert fgsm.network() is student


# -- issue 36: the models package, the distillation core, the image branch, the CLI ------

def test_the_models_package_has_no_import_cycle():
    cycles = import_cycles(ROOT / "kws_okd" / "models", "kws_okd.models")
    assert cycles == [], " ; ".join(" -> ".join(c) for c in cycles)


def test_the_embedding_weights_converter_does_not_import_the_model():
    mods = imported_modules(ROOT / "kws_okd" / "models" / "embedding_weights.py", "kws_okd.models")
    assert not any("speech_embedding" in m for m in mods), sorted(mods)
    from kws_okd.models import embedding_weights
    from kws_okd.models.speech_embedding import SpeechEmbedding
    assert SpeechEmbedding.LAYERS is embedding_weights.LAYERS        # one description, shared
    assert (SpeechEmbedding.LEAKY, SpeechEmbedding.FLOOR) == (embedding_weights.LEAKY, embedding_weights.FLOOR)


def test_the_distillation_core_imports_no_audio_or_image_code():
    allowed = ("kws_okd.distill", "kws_okd.errors", "kws_okd.utils")
    for path in (ROOT / "kws_okd" / "distill").glob("*.py"):
        mods = imported_modules(path, "kws_okd.distill")
        assert all(m.startswith(allowed) for m in mods), (path.name, sorted(mods))
    code = ("import sys, kws_okd.distill\n"
            "print(sorted(m for m in sys.modules if m.startswith(('kws_okd.', 'torchaudio', 'PIL'))"
            " and not m.startswith(('kws_okd.distill', 'kws_okd.errors', 'kws_okd.utils'))))")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "[]", run.stdout


def test_the_image_branch_is_a_subpackage():
    assert not (ROOT / "kws_okd" / "image_cli.py").exists() and not (ROOT / "kws_okd" / "image_lodo.py").exists()
    from kws_okd.image.cli import add_image_commands
    from kws_okd.image.lodo import IMAGE_RECIPES, run_lodo  # noqa: F401
    assert callable(add_image_commands)
    gone = [f"kws_okd{sep}image_{m}" for sep in "./" for m in ("cli", "lodo")]   # the old module paths
    files = [ROOT / "README.md", ROOT / "Makefile", ROOT / "pyproject.toml", *(ROOT / "docs").glob("*.md")]
    for folder in ("kws_okd", "tests", "tools"):
        files += (ROOT / folder).rglob("*.py")
    for path in files:
        text = path.read_text()
        assert not any(g in text for g in gone), path


HELP = """
import sys
from kws_okd.cli import main
try:
    main(["--help"])
except SystemExit as e:
    assert e.code == 0, e.code
heavy = [m for m in ("torch", "numpy", "speechbrain", "hydra", "omegaconf", "scipy", "kws_okd.pipeline",
                     "kws_okd.data.shift", "kws_okd.stream.cli", "kws_okd.image.cli") if m in sys.modules]
print("HEAVY", heavy, file=sys.stderr)
"""


def test_main_help_lists_every_command_by_group_and_imports_nothing_heavy():
    from kws_okd.cli import COMMANDS, GROUPS
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", HELP], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "HEAVY []" in run.stderr, run.stderr
    out = run.stdout
    assert [g for g in GROUPS if f"  {g}:\n" in out] == list(GROUPS)
    assert {c.group for c in COMMANDS.values()} == set(GROUPS)
    for name, cmd in COMMANDS.items():
        assert f"    {name} " in out and cmd.help in out, name
        # listed under its own group: after its group's heading, before the next one
        heading = out.index(f"  {cmd.group}:\n")
        nxt = [out.index(f"  {g}:\n") for g in GROUPS if out.index(f"  {g}:\n") > heading]
        assert heading < out.index(f"    {name} ") < min(nxt + [len(out)]), name


COMMAND_HELP = """
import sys
from kws_okd.cli import COMMANDS, main
for name in COMMANDS:
    try:
        main([name, "--help"])
    except SystemExit as e:
        assert e.code == 0, (name, e.code)
heavy = [m for m in ("torch", "torchaudio", "speechbrain", "hydra", "scipy", "kws_okd.pipeline") if m in sys.modules]
print("HEAVY", heavy, file=sys.stderr)
"""


def test_no_commands_help_imports_torch():
    """``kws-okd COMMAND --help`` stays well under a second: adding a command's arguments
    imports neither PyTorch nor the pipeline."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", COMMAND_HELP], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "HEAVY []" in run.stderr, run.stderr


def test_each_command_module_adds_exactly_its_listed_commands_and_help_ends_with_an_example(capsys):
    import argparse
    import importlib

    import pytest

    from kws_okd.cli import COMMANDS, main
    for adder in {c.adder for c in COMMANDS.values()}:
        module, _, function = adder.partition(":")
        sub = argparse.ArgumentParser().add_subparsers()
        getattr(importlib.import_module(module), function)(sub)
        assert set(sub.choices) == {n for n, c in COMMANDS.items() if c.adder == adder}, adder
        for action in sub._choices_actions:    # the modules' own one-line help, where they give one
            assert action.help == COMMANDS[action.dest].help, action.dest
    for name, cmd in COMMANDS.items():
        assert cmd.example.startswith(f"kws-okd {name} "), name
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert out.rstrip().endswith(f"example:\n  {cmd.example}"), (name, out[-300:])
