"""The manifest: one CSV beside the images that links every stage.

Core columns are `path` (relative to the dataset folder), `label` (may be empty),
`patient_id`, `split`, the optional nodule box `x0, y0, x1, y1`, `source`, `mask` (a PNG
at the image's size, 0 = background, 255 = nodule, relative to the dataset folder) and the
five EU-TIRADS descriptors named in `eutirads.categories.DESCRIPTORS`. Empty means
unknown everywhere. Any further column is kept as it is, so a spreadsheet user or a later
stage can add its own.
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
from PIL import Image

from ..categories import DESCRIPTORS, normalize_descriptor
from ..errors import InputError, ManifestError
from .masks import MASK_COLUMN, read_mask

__all__ = [
    "MANIFEST_NAME",
    "CORE_COLUMNS",
    "DESCRIPTOR_COLUMNS",
    "MASK_COLUMN",
    "Row",
    "read_manifest",
    "write_manifest",
    "manifest_columns",
    "image_path",
    "row_bbox",
    "rows_in_split",
    "mask_path",
    "load_mask",
    "row_descriptors",
    "clean_descriptors",
]

MANIFEST_NAME = "manifest.csv"
DESCRIPTOR_COLUMNS: tuple[str, ...] = tuple(DESCRIPTORS)
CORE_COLUMNS: tuple[str, ...] = ("path", "label", "patient_id", "split",
                                 "x0", "y0", "x1", "y1", "source", MASK_COLUMN,
                                 *DESCRIPTOR_COLUMNS)
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


def _inside(dataset: str | os.PathLike[str], relative: str, column: str) -> Path:
    root = Path(dataset).resolve()
    if root.suffix.lower() == ".csv":
        root = root.parent
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise ManifestError(f"{root / MANIFEST_NAME}: {column} {relative!r} leaves the "
                            "dataset folder")
    return path


def image_path(dataset: str | os.PathLike[str], row: Mapping[str, str]) -> Path:
    """Absolute path of a row's image; refuses paths that leave the dataset folder."""
    return _inside(dataset, row["path"], "path")


def mask_path(dataset: str | os.PathLike[str], row: Mapping[str, str]) -> Path | None:
    """Absolute path of a row's mask, None when unknown; refuses paths leaving the dataset."""
    relative = (row.get(MASK_COLUMN) or "").strip()
    return _inside(dataset, relative, MASK_COLUMN) if relative else None


def load_mask(dataset: str | os.PathLike[str], row: Mapping[str, str], *,
              image_size: tuple[int, int] | None = None) -> np.ndarray | None:
    """A row's nodule mask as a HxW bool array (True = nodule), or None when unknown.

    The mask must be at its image's size: `image_size` (width, height) when the caller has
    decoded the image already, else the image file's header is read. Raises `InputError`
    (one line naming the mask, and the image when sizes differ) for a missing, undecodable,
    wrongly sized or all-white mask.
    """
    path = mask_path(dataset, row)
    if path is None:
        return None
    if image_size is None:
        image = image_path(dataset, row)
        try:
            with Image.open(image) as handle:
                image_size = handle.size
        except (OSError, ValueError) as exc:
            raise InputError(f"{image}: cannot read its size for mask {path} "
                             f"({type(exc).__name__})") from None
    return read_mask(path, image_size=image_size, image_name=row["path"])


def row_descriptors(row: Mapping[str, str], *, where: str = "",
                    on_problem: Callable[[str], None] | None = None) -> dict[str, str]:
    """The row's five descriptor values in our vocabulary ("" = unknown).

    A value outside the vocabulary is kept as unknown, with one warning line naming the
    row (`where`, e.g. "D/manifest.csv row 12") and the column passed to `on_problem`.
    """
    values = {}
    for column in DESCRIPTOR_COLUMNS:
        try:
            values[column] = normalize_descriptor(column, row.get(column) or "")
        except InputError as exc:
            values[column] = ""
            if on_problem:
                on_problem(f"warning: {where or row.get('path', '?')}: column {column}: "
                           f"{exc}; kept as unknown")
    return values


def clean_descriptors(rows: Sequence[Row], *, dataset: str | os.PathLike[str] = "",
                      on_problem: Callable[[str], None] | None = None) -> int:
    """Put every row's descriptors into our vocabulary in place (bad values become
    unknown, each with one warning naming manifest row and column); returns how many
    values were cleared. Rows are numbered as in the CSV file (the header is line 1)."""
    file = _manifest_file(dataset) if dataset else Path(MANIFEST_NAME)
    cleared = 0
    for number, row in enumerate(rows, start=2):
        values = row_descriptors(row, where=f"{file} row {number} ({row.get('path', '?')})",
                                 on_problem=on_problem)
        cleared += sum(1 for c in DESCRIPTOR_COLUMNS if (row.get(c) or "") and not values[c])
        row.update(values)
    return cleared


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
