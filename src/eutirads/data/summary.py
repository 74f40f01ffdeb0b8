"""`summarize`: what a dataset holds, as a dict (JSON-ready) and as a readable table.

Counts per class per split, unlabelled rows, patients, duplicate groups, groups or patients
that straddle splits (should be none after `eutirads dataset split`), images with a mask,
known values per descriptor (a value outside the vocabulary counts as unknown, and as
invalid), and, when `check_files` is on, the images that are missing or fail to decode
and the masks that cannot be used (undecodable, another size than their image, all white).
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from pathlib import Path

from tqdm import tqdm

from ..categories import DESCRIPTORS, sort_labels
from ..errors import EutiradsError
from ..imageio import open_image
from .hashing import PHASH_THRESHOLD, hash_image, is_valid_phash
from .importers import IMPORT_REPORT_NAME
from .manifest import (MASK_COLUMN, image_path, load_mask, read_manifest, row_bbox,
                       row_descriptors)
from .split import SPLITS, duplicate_groups, group_rows, leaking_groups

__all__ = ["summarize", "format_summary"]

NO_SPLIT = "none"
_COLUMNS = SPLITS + (NO_SPLIT,)


def _check_files(dataset: str | os.PathLike[str], rows: list[dict[str, str]],
                 progress: bool) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Decode every image and mask; fill missing fingerprints in `rows` (in memory only).
    Returns the image failures and the mask failures."""
    failures, mask_failures = [], []
    for row in tqdm(rows, desc="summary: checking", unit="image", disable=not progress,
                    leave=False):
        try:
            path = image_path(dataset, row)
            image = open_image(path, name=row["path"])
            if not row.get("pixel_sha256") or not is_valid_phash(row.get("phash", "")):
                hashes = hash_image(image)
                row["pixel_sha256"], row["phash"] = hashes.pixel_sha256, hashes.phash
        except EutiradsError as exc:
            failures.append({"path": row["path"], "reason": str(exc)})
            continue
        try:
            load_mask(dataset, row, image_size=image.size)
        except EutiradsError as exc:
            mask_failures.append({"path": row["path"], "reason": str(exc)})
    return failures, mask_failures


def summarize(dataset: str | os.PathLike[str], *, check_files: bool = True,
              progress: bool = False, threshold: int = PHASH_THRESHOLD) -> dict:
    """A dataset's summary; see the module docstring. Reads nothing but the dataset."""
    rows = read_manifest(dataset)
    failures, mask_failures = _check_files(dataset, rows, progress) if check_files else ([], [])

    split_of = [row["split"] if row["split"] in SPLITS else NO_SPLIT for row in rows]
    labels = sort_labels(row["label"] for row in rows)
    counts = {label: dict.fromkeys(_COLUMNS + ("total",), 0) for label in labels}
    for row, split in zip(rows, split_of):
        if row["label"]:
            counts[row["label"]][split] += 1
            counts[row["label"]]["total"] += 1
    per_split = Counter(split_of)

    patients = {row["patient_id"] for row in rows if row["patient_id"]}
    without_id = sum(1 for row in rows if not row["patient_id"])
    if not rows or without_id == len(rows):
        grouping = "none: no patient ids, each image is its own group"
    elif without_id:
        grouping = f"partial: {without_id} image(s) without patient id are each their own group"
    else:
        grouping = "patient_id"
    patient_splits: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if row["patient_id"] and row["split"] in SPLITS:
            patient_splits[row["patient_id"]].add(row["split"])

    duplicates = duplicate_groups(rows, threshold=threshold)
    groups = group_rows(rows, threshold=threshold)
    import_report = Path(dataset) / IMPORT_REPORT_NAME
    skipped_at_import = None
    if import_report.is_file():
        try:
            skipped_at_import = len(json.loads(import_report.read_text()).get("skipped", []))
        except (ValueError, AttributeError):
            skipped_at_import = None

    return {
        "dataset": str(dataset),
        "images": len(rows),
        "labelled": sum(1 for row in rows if row["label"]),
        "unlabelled": sum(1 for row in rows if not row["label"]),
        "labels": labels,
        "counts": counts,
        "splits": {name: per_split.get(name, 0) for name in _COLUMNS},
        "unlabelled_per_split": {name: sum(1 for row, s in zip(rows, split_of)
                                           if s == name and not row["label"])
                                 for name in _COLUMNS},
        "patients": len(patients),
        "patient_grouping": grouping,
        "patients_in_several_splits": sum(1 for s in patient_splits.values() if len(s) > 1),
        "groups": len(set(groups)),
        "groups_in_several_splits": len(leaking_groups(rows, groups)),
        "duplicate_groups": len(duplicates),
        "duplicate_images": sum(len(group) for group in duplicates),
        "boxes": sum(1 for row in rows if _has_box(row)),
        "masks": sum(1 for row in rows if row.get(MASK_COLUMN)),
        "masks_labelled": sum(1 for row in rows if row.get(MASK_COLUMN) and row["label"]),
        "descriptors": _descriptor_counts(rows),
        "sources": dict(Counter(row["source"] or "unknown" for row in rows)),
        "files_checked": check_files,
        "decode_failures": failures,
        "mask_failures": mask_failures,
        "skipped_at_import": skipped_at_import,
    }


def _descriptor_counts(rows: list[dict[str, str]]) -> dict[str, dict]:
    """Per descriptor: rows with a known value, rows with a value outside the vocabulary,
    and the count of each value (in vocabulary order)."""
    known = [row_descriptors(row) for row in rows]
    counts = {}
    for name, values in DESCRIPTORS.items():
        seen = Counter(k[name] for k in known if k[name])
        counts[name] = {
            "known": sum(seen.values()),
            "invalid": sum(1 for row, k in zip(rows, known) if row.get(name) and not k[name]),
            "values": {value: seen[value] for value in values},
        }
    return counts


def _has_box(row: dict[str, str]) -> bool:
    try:
        return row_bbox(row) is not None
    except EutiradsError:
        return False


def format_summary(summary: dict) -> str:
    """The summary as a table a person reads in a terminal."""
    lines = [f"dataset {summary['dataset']}: {summary['images']} image(s), "
             f"{summary['labelled']} labelled, {summary['unlabelled']} unlabelled"]
    header = ["label", *_COLUMNS, "total"]
    table = [header]
    for label in summary["labels"]:
        row = summary["counts"][label]
        table.append([label, *(str(row[c]) for c in _COLUMNS), str(row["total"])])
    unl = summary["unlabelled_per_split"]
    if summary["unlabelled"]:
        table.append(["(unlabelled)", *(str(unl[c]) for c in _COLUMNS),
                      str(summary["unlabelled"])])
    table.append(["all", *(str(summary["splits"][c]) for c in _COLUMNS),
                  str(summary["images"])])
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for r in table:
        lines.append("  " + "  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i])
                                      for i, cell in enumerate(r)))
    lines.append(f"patients: {summary['patients']} ({summary['patient_grouping']}); "
                 f"in more than one split: {summary['patients_in_several_splits']}")
    lines.append(f"groups (patient + duplicates): {summary['groups']}; in more than one split: "
                 f"{summary['groups_in_several_splits']}")
    lines.append(f"duplicate groups: {summary['duplicate_groups']} "
                 f"({summary['duplicate_images']} images); nodule boxes: {summary['boxes']}; "
                 f"masks: {summary['masks']} ({summary['masks_labelled']} labelled)")
    described = ", ".join(
        f"{name} {counts['known']}" + (f" (+{counts['invalid']} invalid)" if counts["invalid"]
                                       else "")
        for name, counts in summary["descriptors"].items())
    lines.append(f"descriptors known: {described}")
    if summary["files_checked"]:
        lines.append(f"failed to decode: {len(summary['decode_failures'])}")
        lines.extend(f"  {item['reason']}" for item in summary["decode_failures"])
        lines.append(f"unusable masks: {len(summary['mask_failures'])}")
        lines.extend(f"  {item['reason']}" for item in summary["mask_failures"])
    else:
        lines.append("failed to decode: not checked")
    if summary["skipped_at_import"] is not None:
        lines.append(f"skipped at import: {summary['skipped_at_import']} "
                     f"(see {IMPORT_REPORT_NAME})")
    return "\n".join(lines)
