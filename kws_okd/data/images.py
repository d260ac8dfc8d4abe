"""Image domains in the domain-folder layout (PACS, OfficeHome, VLCS and the embedded
digits): ``root/<domain>/<class>/<image>``.

:func:`prepare` writes leave-domain-out manifests: the held-out domain(s) never enter
``train.csv`` or ``valid.csv``; the training domains' images are split, stratified
per (domain, class), into train / valid (model selection) / test_id. Each held-out
domain becomes one OOD set ``test_ood_<domain>``. The manifest columns are the
speech ones (``wav`` holds the image path; the name is historic).

Folders whose names start with ``.`` or ``_`` are not domains (``_previews``).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from tqdm import tqdm

from kws_okd.data.manifest import read_classes, read_manifest, write_manifest
from kws_okd.data.kinds import register_data_kind, register_dataset
from kws_okd.errors import ConfigError, DataError
from kws_okd.utils.atomic import write_json, write_text

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
# Inputs are mapped to [-1, 1] per channel: a fixed, data-independent normalisation so
# a model file needs no statistics of its training domains (which would leak nothing
# but would differ between leave-one-out folds).
MEAN, STD = 0.5, 0.5


def _visible_dirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and p.name[0] not in "._")


def scan_domains(root) -> dict[str, dict[str, list[Path]]]:
    """``{domain: {class: [image paths]}}`` of a domain-folder tree."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: image folder does not exist")
    domains = _visible_dirs(root)
    if len(domains) < 2:
        raise DataError(f"{root}: expected at least two domain folders "
                        f"(root/<domain>/<class>/<image>), found {[d.name for d in domains]}")
    tree: dict[str, dict[str, list[Path]]] = {}
    for d in domains:
        classes = _visible_dirs(d)
        if not classes:
            raise DataError(f"{d}: domain folder has no class folders")
        tree[d.name] = {}
        for c in classes:
            files = sorted(f for f in c.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
            if files:
                tree[d.name][c.name] = files
        if not tree[d.name]:
            raise DataError(f"{d}: no images (extensions {sorted(IMAGE_EXTENSIONS)}) under its class folders")
    return tree


def _stamp(tree) -> str:
    """Fingerprint of the file list and sizes: manifests are rebuilt when images change."""
    h = hashlib.sha1()
    for d, classes in tree.items():
        for c, files in classes.items():
            for f in files:
                h.update(f"{d}/{c}/{f.name}:{f.stat().st_size}\n".encode())
    return h.hexdigest()


def split_indices(n: int, valid_fraction: float, test_fraction: float, rng) -> tuple[list, list, list]:
    """Shuffle ``range(n)`` and cut it into train / valid / test; every non-empty split
    asked for gets at least one item when ``n`` allows it, so tiny classes still
    appear in validation."""
    order = [int(i) for i in rng.permutation(n)]
    n_valid = int(round(n * valid_fraction))
    n_test = int(round(n * test_fraction))
    if valid_fraction > 0 and n_valid == 0 and n >= 3:
        n_valid = 1
    if test_fraction > 0 and n_test == 0 and n >= 3:
        n_test = 1
    return order[n_valid + n_test:], order[:n_valid], order[n_valid:n_valid + n_test]


def prepare(root, out_dir, ood_domains, train_domains=None, valid_fraction: float = 0.1,
            test_fraction: float = 0.1, seed: int = 0, image_size: int = 32,
            classes: list[str] | None = None) -> dict:
    """Write ``train/valid/test_id/test_ood_<d>.csv``, ``classes.txt`` and return the
    protocol (also written to ``protocol.json``)."""
    root, out_dir = Path(root), Path(out_dir)
    tree = scan_domains(root)
    domains = sorted(tree)
    ood_domains = [str(d) for d in (ood_domains or [])]
    if not ood_domains:
        raise ConfigError("data.heldout / data.ood_domains: name at least one domain to hold out "
                          f"(domains of {root}: {domains})")
    train_domains = [str(d) for d in train_domains] if train_domains else \
        [d for d in domains if d not in ood_domains]
    missing = [d for d in (*ood_domains, *train_domains) if d not in tree]
    if missing:
        raise DataError(f"{root}: domain(s) {missing} not found; it has {domains}")
    overlap = sorted(set(ood_domains) & set(train_domains))
    if overlap:
        raise ConfigError(f"data.train_domains: {overlap} are also held out (data.ood_domains)")
    if not (0 <= valid_fraction < 1 and 0 <= test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise ConfigError(f"data.valid_fraction/test_fraction: need fractions summing below 1, "
                          f"got {valid_fraction}, {test_fraction}")
    classes = list(classes) if classes else sorted({c for d in tree.values() for c in d})
    index = {c: i for i, c in enumerate(classes)}
    stray = sorted({c for d in tree.values() for c in d} - set(index))
    if stray:
        raise DataError(f"{root}: class folder(s) {stray} are not in the class list {classes}")

    def row(domain, cls, path):
        return dict(ID=f"{domain}/{cls}/{path.stem}", wav=str(path.resolve()), domain=domain,
                    spk_id=domain, word=cls, label=index[cls], duration="", offset=0)

    rng = np.random.default_rng(seed)
    sets: dict[str, list[dict]] = {"train": [], "valid": [], "test_id": []}
    for d in train_domains:
        for c, files in sorted(tree[d].items()):
            tr, va, te = split_indices(len(files), valid_fraction, test_fraction, rng)
            sets["train"] += [row(d, c, files[i]) for i in tr]
            sets["valid"] += [row(d, c, files[i]) for i in va]
            sets["test_id"] += [row(d, c, files[i]) for i in te]
    for d in ood_domains:
        sets[f"test_ood_{d}"] = [row(d, c, f) for c, files in sorted(tree[d].items()) for f in files]
    empty = [k for k, v in sets.items() if not v and k != "test_id"]
    if empty:
        raise DataError(f"{root}: split(s) {empty} came out empty; add images or change "
                        f"data.valid_fraction")
    if not sets["test_id"]:
        del sets["test_id"]
    for name, rows in sets.items():
        write_manifest(out_dir / f"{name}.csv", rows)
    write_text(out_dir / "classes.txt", "\n".join(classes) + "\n")
    info = dict(modality="image", root=str(root.resolve()), image_size=int(image_size),
                train_domains=train_domains, ood_domains=ood_domains, classes=classes,
                valid_fraction=valid_fraction, test_fraction=test_fraction, split_seed=seed,
                sets={k: len(v) for k, v in sets.items()},
                eval_sets={k: ("ood" if k.startswith("test_ood_") else "id")
                           for k in sets if k.startswith("test")},
                stamp=_stamp(tree))
    write_json(out_dir / "protocol.json", info)
    return info


def _ood_from_cfg(cfg) -> list[str]:
    ood = cfg.get("ood_domains")
    if ood:
        return [str(d) for d in ood]
    if cfg.get("heldout"):
        return [str(cfg.heldout)]
    raise ConfigError("data.heldout: name the domain to hold out (e.g. data.heldout=sketch)")


def _prepare_cached(root, cfg, classes=None) -> Path:
    out = Path(cfg.manifest_dir)
    kw = dict(ood_domains=_ood_from_cfg(cfg),
              train_domains=list(cfg.train_domains) if cfg.get("train_domains") else None,
              valid_fraction=float(cfg.get("valid_fraction", 0.1)),
              test_fraction=float(cfg.get("test_fraction", 0.1)),
              seed=int(cfg.get("split_seed", 0)), image_size=int(cfg.get("image_size", 32)))
    marker = out / "protocol.json"
    if marker.exists():
        have = json.loads(marker.read_text())
        same = (have.get("root") == str(Path(root).resolve()) and have.get("ood_domains") == kw["ood_domains"]
                and have.get("split_seed") == kw["seed"] and have.get("image_size") == kw["image_size"]
                and have.get("valid_fraction") == kw["valid_fraction"]
                and have.get("test_fraction") == kw["test_fraction"]
                and (kw["train_domains"] is None or have.get("train_domains") == kw["train_domains"]))
        if same and have.get("stamp") == _stamp(scan_domains(root)):
            return out
    prepare(root, out, classes=classes, **kw)
    return out


@register_data_kind("image_folder")
def prepare_image_folder(cfg, progress=True) -> Path:
    """A domain-folder dataset from a path the user gives (``data.root``)."""
    if not cfg.get("root"):
        raise ConfigError("data.root: path to a domain-folder image dataset is required "
                          "(root/<domain>/<class>/<image>, e.g. data.root=/data/PACS/kfold)")
    return _prepare_cached(Path(cfg.root), cfg)


@register_data_kind("digits")
def prepare_digits(cfg, progress=True) -> Path:
    """The embedded synthesised digit domains (:mod:`kws_okd.data.digits`)."""
    from kws_okd.data.digits import CLASSES, DigitsSpec, build_digits
    spec = DigitsSpec(seed=int(cfg.get("seed", 0)), image_size=int(cfg.get("image_size", 32)),
                      domains=tuple(cfg.domains),
                      per_domain=None if cfg.get("per_domain") is None else int(cfg.per_domain))
    root = build_digits(cfg.root, spec, progress=progress)
    return _prepare_cached(root, cfg, classes=CLASSES)


def load_image(path, size: int) -> np.ndarray:
    """One image as (3, size, size) float32, normalised to [-1, 1]."""
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            if img.size != (size, size):
                img = img.resize((size, size), Image.BILINEAR)
            arr = np.asarray(img, dtype=np.float32) / 255.0
    except (OSError, UnidentifiedImageError) as e:
        raise DataError(f"{path}: unreadable image ({e})") from None
    return ((arr - MEAN) / STD).transpose(2, 0, 1)


@register_dataset("image")
class ImageDataset(Dataset):
    """Every image of a manifest loaded once into ``inputs`` (N, 3, S, S); ``S`` is the
    ``image_size`` of the manifest folder's ``protocol.json`` (default 32). At S = 64,
    10 000 images take about 0.5 GB."""

    def __init__(self, manifest, progress: bool = False, image_size: int | None = None):
        manifest = Path(manifest)
        self.path = str(manifest)
        self.rows = read_manifest(manifest)
        proto = manifest.parent / "protocol.json"
        if image_size is None:
            image_size = json.loads(proto.read_text()).get("image_size", 32) if proto.exists() else 32
        self.image_size = int(image_size)
        data = np.zeros((len(self.rows), 3, self.image_size, self.image_size), dtype=np.float32)
        for i, r in enumerate(tqdm(self.rows, desc=f"loading {manifest}", disable=not progress,
                                   unit="img", leave=False)):
            data[i] = load_image(r["wav"], self.image_size)
        self.inputs = torch.from_numpy(data)
        self.labels = torch.tensor([r["label"] for r in self.rows], dtype=torch.long)
        self.domains = [r["domain"] for r in self.rows]
        classes = manifest.parent / "classes.txt"
        self.classes = read_classes(classes) if classes.exists() else None

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.inputs[i], self.labels[i], i
