"""CSV tables with named columns: atomic writes, and reads that name the file and the
missing columns."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from kws_okd.errors import DataError
from kws_okd.utils.atomic import write_text


def write_csv(path, rows, columns) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: r.get(c, "") for c in columns})
    write_text(path, buf.getvalue())


def read_csv(path, required, what: str, hint: str = "") -> list[dict]:
    """Rows of ``path`` as dicts; ``what`` names the kind of file in errors."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: {what} does not exist{hint}")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: {what} lacks column(s) {missing}; has {reader.fieldnames}")
        return list(reader)
