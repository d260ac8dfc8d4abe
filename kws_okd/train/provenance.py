"""What a run was trained from: its config, its data and its teacher's weights.

A run folder is named by a few settings only (corpus name, model, method, seed), so the
same folder can hold a run of an older checkout: another corpus, another teacher, an
option since added. A finished run is reused, and an unfinished one resumed, only when
what it was trained from matches; otherwise it is set aside (renamed, nothing deleted)
and trained again."""
from __future__ import annotations

import copy
import csv
import hashlib
import json
import warnings
from pathlib import Path

import torch
import yaml
from omegaconf import OmegaConf

from kws_okd.utils.atomic import write_json

PROVENANCE_FILE = "provenance.json"
# Settings of how a run is executed or where it is written, not of what it learns.
EXECUTION_KEYS = frozenset({"progress", "device", "threads", "ckpt_interval_minutes", "ckpt_interval_steps",
                            "distributed_backend", "results_dir", "exp_dir"})
# A run's length: a finished run asked for more (or fewer) steps is not reused as it is,
# but it is resumed from where it stopped rather than set aside.
BUDGET_KEYS = frozenset({"epochs", "steps"})
# Augmentations only a student hears (the builders return None for a teacher's training):
# a teacher's run is not judged by them, so `kws-okd run context_speech.p=0` reuses it.
# A new student-only augmentation belongs here too.
STUDENT_ONLY_KEYS = frozenset({"context_speech"})
# Options removed in the #36 prune, each with the value that turned it off (for a section,
# its ``p``). A run recorded with one of them off is judged as if it never had it, so the
# runs of an older checkout are still reused; one recorded with it on learnt from
# something else.
REMOVED_OFF = {"background_noise.p": 0.0, "band_limit.p": 0.0, "spec_augment.p": 0.0,
               "context_speech.teacher_hears": "clean", "data.piper_noise": 0.0,
               "distil_from": "calibrated", "distill.ood_teacher": "calibrated"}
# Manifest columns that depend on where the checkout lives, not on the data.
PLACE_COLUMNS = frozenset({"wav"})


def run_config(cfg) -> dict:
    """The resolved config without the execution keys."""
    c = OmegaConf.to_container(cfg, resolve=True) if not isinstance(cfg, dict) else dict(cfg)
    return {k: v for k, v in c.items() if k not in EXECUTION_KEYS}


def manifest_digest(train_csv, manifest_dir) -> str:
    """A digest of the rows a run trains and validates on (every column but the file's
    absolute path), its classes and the corpus stamp of the manifests' protocol."""
    h = hashlib.sha1()
    manifest_dir = Path(manifest_dir)
    for path in (Path(train_csv), manifest_dir / "valid.csv"):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                h.update(json.dumps({k: v for k, v in row.items() if k not in PLACE_COLUMNS},
                                    sort_keys=True).encode())
        h.update(b"\0")
    h.update((manifest_dir / "classes.txt").read_bytes())
    proto = manifest_dir / "protocol.json"
    if proto.exists():
        h.update(str(json.loads(proto.read_text()).get("corpus_stamp", "")).encode())
    return h.hexdigest()[:16]


def weights_digest(model) -> str:
    """A digest of a model file's weights alone (``model``: its path, or the file's dict
    already loaded): storing thresholds or a fast-path entry in the file later does not
    change it."""
    blob = model if isinstance(model, dict) else torch.load(model, map_location="cpu", weights_only=True)
    h = hashlib.sha1(json.dumps(blob.get("model"), sort_keys=True, default=str).encode())
    for k in sorted(blob["state_dict"]):
        h.update(k.encode())
        h.update(blob["state_dict"][k].contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def run_provenance(cfg, train_csv, manifest_dir, teacher=None) -> dict:
    """``teacher``: the teacher's model file (path or loaded dict), None for a run without one."""
    out = {"config": run_config(cfg), "data": manifest_digest(train_csv, manifest_dir)}
    if teacher is not None:
        out["teacher"] = weights_digest(teacher)
    return out


def stored_provenance(exp_dir) -> dict | None:
    """What a run folder says it was trained from: its provenance file, or for a run of a
    checkout older than that file, the config it wrote (the config alone is compared)."""
    exp_dir = Path(exp_dir)
    if (exp_dir / PROVENANCE_FILE).exists():
        return json.loads((exp_dir / PROVENANCE_FILE).read_text())
    if (exp_dir / "config.yaml").exists():
        return {"config": run_config(yaml.safe_load((exp_dir / "config.yaml").read_text()) or {})}
    return None


def _unset(v) -> bool:
    return v is None or v == [] or v == {} or v is False or v == ""


def differences(stored, current, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ. A key one side lacks counts as unset there: an
    option added since, left at its off value (None, [], {}, False, ""), is no change."""
    if isinstance(stored, dict) and isinstance(current, dict):
        out = []
        for k in sorted(set(stored) | set(current), key=str):
            a, b = stored.get(k), current.get(k)
            if k not in stored and _unset(b) or k not in current and _unset(a):
                continue
            out += differences(a, b, f"{prefix}{k}.")
        return out
    return [] if stored == current else [prefix.rstrip(".") or "(value)"]


def _without_removed(config: dict) -> dict:
    """``config`` without the :data:`REMOVED_OFF` options it has at their off value."""
    config = copy.deepcopy(config)
    for key, off in REMOVED_OFF.items():
        *path, leaf = key.split(".")
        if leaf == "p":   # a section switched off by its probability goes as a whole
            *path, leaf = path
        node = config
        for k in path:
            node = node.get(k) if isinstance(node, dict) else None
        if not isinstance(node, dict) or leaf not in node:
            continue
        value = node[leaf].get("p") if key.endswith(".p") and isinstance(node[leaf], dict) else node[leaf]
        if value == off:
            del node[leaf]
    return config


def _judged(config: dict) -> dict:
    """The part of a run's config its run is judged by: without options since removed that
    it had off, and a teacher's without :data:`STUDENT_ONLY_KEYS`."""
    config = _without_removed(config)
    if config.get("role") != "teacher":
        return config
    return {k: v for k, v in config.items() if k not in STUDENT_ONLY_KEYS}


def stale_reasons(exp_dir, current: dict, teacher_ckpt=None, ignore=frozenset()) -> list[str]:
    """Why a run folder's content does not belong to ``current`` ([] when it does, or when
    the folder holds no run). Parts the folder does not record (an old run's data digest)
    are not compared; an old run whose teacher (``teacher_ckpt``) was trained again after
    it started is stale. Config keys in ``ignore`` are not compared."""
    stored = stored_provenance(exp_dir)
    if stored is None:
        return []
    out = []
    if "teacher" not in stored and teacher_ckpt is not None:
        started = Path(exp_dir) / "config.yaml"
        retrained = Path(teacher_ckpt).parent / PROVENANCE_FILE
        if started.exists() and retrained.exists() and retrained.stat().st_mtime > started.stat().st_mtime:
            out.append("teacher trained again after this run started")
    if "config" in stored:
        a, b = _judged(stored["config"]), _judged(current.get("config", {}))
        out += [f"config {k}" for k in differences(a, b) if k not in ignore]
    for part, what in (("data", "training data (manifests)"), ("teacher", "teacher weights")):
        if part in stored and stored[part] != current.get(part):
            out.append(what)
    return out


def set_aside(exp_dir, reasons: list[str]) -> Path:
    """Rename a run folder that holds another run to ``<name>.stale-<n>`` (nothing is
    deleted) and say why. A sweep's lock file stays behind: it belongs to the new run."""
    exp_dir = Path(exp_dir)
    n = 1
    while exp_dir.with_name(f"{exp_dir.name}.stale-{n}").exists():
        n += 1
    dest = exp_dir.with_name(f"{exp_dir.name}.stale-{n}")
    exp_dir.rename(dest)
    if (dest / ".lock").exists():
        exp_dir.mkdir(parents=True)
        (dest / ".lock").rename(exp_dir / ".lock")
    shown = ", ".join(reasons[:5]) + (f" and {len(reasons) - 5} more" if len(reasons) > 5 else "")
    warnings.warn(f"{exp_dir}: holds a run trained from something else ({shown}); moved to {dest.name}, "
                  "training again", stacklevel=2)
    return dest


def prepare_run_dir(exp_dir, current: dict, teacher_ckpt=None) -> None:
    """Make ``exp_dir`` ready for the run ``current`` describes: set a mismatching run
    aside (a run that differs only in its length is resumed), then record ``current``."""
    exp_dir = Path(exp_dir)
    reasons = stale_reasons(exp_dir, current, teacher_ckpt, ignore=BUDGET_KEYS)
    if reasons:
        set_aside(exp_dir, reasons)
    exp_dir.mkdir(parents=True, exist_ok=True)
    write_json(exp_dir / PROVENANCE_FILE, current)
