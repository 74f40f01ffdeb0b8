"""`manifest.csv` and `quarantine.csv` assembled from the journal, sorted. Rows another
stage wrote (other images, labels, splits, extra columns) are kept."""

from __future__ import annotations

from pathlib import Path

from ..data.manifest import MANIFEST_NAME, read_manifest, write_manifest
from .records import MANIFEST_COLUMNS, QUARANTINE_COLUMNS, QUARANTINE_NAME, FileResult

__all__ = ["assemble"]


def assemble(out: Path, journal: dict[str, FileResult]) -> tuple[Path, Path]:
    ours = {}
    for record in journal.values():
        if record.status == "done":
            for row in record.rows:
                ours[row["path"]] = row
    existing = []
    if (out / MANIFEST_NAME).is_file():
        existing = read_manifest(out)
    merged: dict[str, dict[str, str]] = {}
    for row in existing:
        merged[row["path"]] = dict(row)
    for path, row in ours.items():
        old = merged.get(path, {})
        new = {**old, **row}
        for keep in ("label", "split", "x0", "y0", "x1", "y1"):
            if old.get(keep) and not row.get(keep):
                new[keep] = old[keep]  # a label or split added later is not lost
        merged[path] = new
    rows = [merged[p] for p in sorted(merged)]
    columns = list(MANIFEST_COLUMNS)
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    manifest = write_manifest(out, rows, columns)
    quarantined = [{"source_key_hash": r.key_hash, "reason_code": r.reason_code,
                    "reason": r.reason}
                   for r in sorted(journal.values(), key=lambda r: r.key_hash)
                   if r.status == "quarantined"]
    quarantine = write_manifest(out / QUARANTINE_NAME, quarantined, list(QUARANTINE_COLUMNS))
    return manifest, quarantine
