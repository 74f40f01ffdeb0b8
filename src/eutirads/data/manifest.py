"""The manifest: one CSV beside the images that links every stage.

Core columns are `path` (relative to the dataset folder), `label` (may be empty),
`patient_id`, `split`, the optional nodule box `x0, y0, x1, y1` and `source`. Any further
column is kept as it is, so a spreadsheet user or a later stage can add its own.
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from ..errors import ManifestError

__all__ = [
    "MANIFEST_NAME",
    "CORE_COLUMNS",
    "Row",
    "read_manifest",
    "write_manifest",
    "manifest_columns",
    "image_path",
    "row_bbox",
    "rows_in_split",
]

MANIFEST_NAME = "manifest.csv"
CORE_COLUMNS: tuple[str, ...] = ("path", "label", "patient_id", "split",
                                 "x0", "y0", "x1", "y1", "source")
REQUIRED_COLUMNS: tuple[str, ...] = ("path",)

Row = dict[str, str]


def _manifest_file(dataset: str | os.PathLike[str]) -> Path:
    path = Path(dataset)
    return path if path.suffix.lower() == ".csv" else path / MANIFEST_NAME


def read_manifest(dataset: str | os.PathLike[str]) -> list[Row]:
    """Rows of a dataset's manifest (a folder holding manifest.csv, or the CSV itself).

    Every core column is present in every row (empty string when absent in the file).
    """
    file = _manifest_file(dataset)
    if not file.is_file():
        raise ManifestError(f"{file}: no manifest here (expected {MANIFEST_NAME}; "
                            "create one with 'eutirads dataset import' or 'eutirads ingest')")
    try:
        with file.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise ManifestError(f"{file}: missing column(s) {', '.join(missing)}")
            rows = []
            for row in reader:
                clean = {k: (v or "").strip() for k, v in row.items() if k is not None}
                for column in CORE_COLUMNS:
                    clean.setdefault(column, "")
                rows.append(clean)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ManifestError(f"{file}: not a readable CSV ({exc})") from None
    return rows


def manifest_columns(rows: Iterable[Mapping[str, str]]) -> list[str]:
    """Core columns first, then every other column in first-seen order."""
    extra: dict[str, None] = {}
    for row in rows:
        for key in row:
            if key not in CORE_COLUMNS:
                extra[key] = None
    return list(CORE_COLUMNS) + list(extra)


def write_manifest(dataset: str | os.PathLike[str], rows: Sequence[Mapping[str, object]],
                   columns: Sequence[str] | None = None) -> Path:
    """Write rows atomically (temporary file then rename), so a crash never leaves half a
    manifest behind and a reader never sees one."""
    file = _manifest_file(dataset)
    file.parent.mkdir(parents=True, exist_ok=True)
    columns = list(columns) if columns is not None else manifest_columns(rows)
    fd, tmp = tempfile.mkstemp(prefix=".manifest-", suffix=".csv", dir=file.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return file


def image_path(dataset: str | os.PathLike[str], row: Mapping[str, str]) -> Path:
    """Absolute path of a row's image; refuses paths that leave the dataset folder."""
    root = Path(dataset).resolve()
    if root.suffix.lower() == ".csv":
        root = root.parent
    path = (root / row["path"]).resolve()
    if not path.is_relative_to(root):
        raise ManifestError(f"{root / MANIFEST_NAME}: path {row['path']!r} leaves the dataset folder")
    return path


def row_bbox(row: Mapping[str, str]) -> tuple[int, int, int, int] | None:
    """The nodule box (x0, y0, x1, y1) in pixels, or None when the row has none."""
    values = [row.get(k, "") for k in ("x0", "y0", "x1", "y1")]
    if any(v in ("", None) for v in values):
        return None
    try:
        x0, y0, x1, y1 = (int(round(float(v))) for v in values)
    except ValueError:
        raise ManifestError(f"row {row.get('path', '?')!r}: bbox is not numeric") from None
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def rows_in_split(rows: Iterable[Row], split: str) -> list[Row]:
    return [row for row in rows if row.get("split", "") == split]
