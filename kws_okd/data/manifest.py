"""SpeechBrain-style CSV manifests: one row per clip, read by everything downstream."""
from __future__ import annotations

from pathlib import Path

from kws_okd.errors import DataError
from kws_okd.utils.csvfile import read_csv, write_csv

COLUMNS = ("ID", "wav", "duration", "spk_id", "domain", "word", "label", "offset")
REQUIRED = ("ID", "wav", "word", "label")


def write_manifest(path, rows: list[dict]) -> None:
    write_csv(path, rows, COLUMNS)


def read_manifest(path) -> list[dict]:
    path = Path(path)
    rows = read_csv(path, REQUIRED, "manifest")
    if not rows:
        raise DataError(f"{path}: manifest has no rows")
    root = path.parent
    for i, r in enumerate(rows, start=2):
        try:
            r["label"] = int(r["label"])
            r["offset"] = int(r.get("offset") or 0)
        except ValueError:
            raise DataError(f"{path}, line {i}: label/offset must be integers, got "
                            f"{r.get('label')!r}/{r.get('offset')!r}") from None
        r["domain"] = r.get("domain") or "default"
        wav = Path(r["wav"])
        r["wav"] = str(wav if wav.is_absolute() else (root / wav).resolve())
    return rows


def read_classes(path) -> list[str]:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: class list does not exist")
    classes = [c for c in path.read_text().split("\n") if c]
    if not classes:
        raise DataError(f"{path}: class list is empty")
    return classes


def manifest_without_domains(path, domains) -> Path:
    """A copy of the manifest ``path`` without the rows of ``domains`` (e.g. the teacher's
    training set without the real-speech ``_unknown_`` windows the students keep), written
    once beside it as ``<stem>.without-<domains>.csv``; ``path`` itself when that leaves
    out no row. The copy is rewritten whenever it no longer matches its source."""
    path = Path(path)
    domains = sorted(set(domains))
    if not domains:
        return path
    rows = read_manifest(path)
    kept = [r for r in rows if r["domain"] not in domains]
    if len(kept) == len(rows):
        return path
    if not kept:
        raise DataError(f"{path}: no rows left without the domains {domains}")
    out = path.with_name(f"{path.stem}.without-{'+'.join(domains)}.csv")
    if not out.exists() or read_manifest(out) != kept:
        write_manifest(out, kept)
    return out
