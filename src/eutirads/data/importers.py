"""`import_dataset`: turn image folders, a CSV or the DDTI layout into a dataset.

A dataset is a folder holding `manifest.csv` and the images under `images/`. The import
runs in three steps, so that a bad item never stops the rest and nothing is half-written:

1. *scan* the source (one function per format) into candidates: a source file, a target
   folder we chose, and the manifest fields known so far;
2. *check* every candidate: decode it with `imageio.open_image` (pixel-count limit), read
   its size, fingerprint it (`hashing.hash_image`) and normalise its label; a failure skips
   that one item with a one-line reason naming the file;
3. *write*: the good files (atomic per file) under names we made, their masks (re-written
   as 0/255 PNG under `masks/`, same relative name as the image without `images/`), then
   the manifest atomically, then `import_report.json`. By default each image goes through
   the one clean-frame rule (`eutirads.frame.clean_frame`): everything outside the
   ultrasound image area is blanked and burned-in text inside it redacted, at the same
   size, so boxes and masks keep their coordinates; an image without an area is skipped.
   `blank_outside=False` copies the bytes unchanged instead.

Masks: `folders` and `csv` take a `mask` column (of SRC/manifest.csv or of the CSV; paths
relative to that file's folder), else a parallel folder `masks/` beside the class folders
(or the CSV) holding `<same relative path as the image>` with the suffix `.png`; `ddti`
fills each image's outline polygons. A mask at another size than its image, an all-white
or undecodable one is dropped with one warning line; the row stays, without mask.
Descriptor columns (`eutirads.categories.DESCRIPTORS`) must hold our values: any other
value is cleared with one warning naming the row and the column. DDTI's own fields are
kept as `ddti_<field>` and mapped (`vocabularies.map_ddti`) into the descriptor columns.

With `strict=True` any skipped item makes the import fail before step 3 writes anything.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..categories import normalize_label, sort_labels
from ..errors import EutiradsError, InputError, ManifestError
from ..imageio import DEFAULT_MAX_PIXELS, open_image
from ..parallel import imap_in_order, map_in_order, worker_count
from ..region import Box
from .ddti import CASE_FIELDS, IMAGE_NAME, DdtiCase, Polygon, parse_case
from .hashing import hash_image
from .manifest import (CORE_COLUMNS, MANIFEST_NAME, MASK_COLUMN, read_manifest,
                       row_descriptors, write_manifest)
from .masks import MASKS_DIR, polygons_mask, read_mask, save_mask
from .vocabularies import DDTI_FIELDS, map_ddti

__all__ = ["FORMATS", "IMAGE_SUFFIXES", "IMPORT_REPORT_NAME", "ImportReport", "import_dataset"]

FORMATS: tuple[str, ...] = ("folders", "csv", "ddti")
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp"})
IMPORT_REPORT_NAME = "import_report.json"
IMAGES_DIR = "images"

# Split folder names of the thesis layout (and common variants) -> our split names.
SPLIT_FOLDERS = {"train": "train", "training": "train", "val": "val", "valid": "val",
                 "validation": "val", "test": "test", "testing": "test"}
UNLABELLED_FOLDERS = frozenset({"unlabelled", "unlabeled"})
BOX_COLUMNS = ("x0", "y0", "x1", "y1")

# A path component we keep as it is: plain ASCII letters, digits, dot, dash, underscore,
# not starting with a dot or dash. Anything else is replaced by a name we make.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")

Problem = Callable[[str], None]


@dataclass
class ImportReport:
    """What an import did. `skipped` and `warnings` hold one line each, naming the file."""

    source: str
    dataset: str
    format: str
    imported: int = 0
    labelled: int = 0
    unlabelled: int = 0
    masks: int = 0
    per_label: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    blanked: int = 0
    text_boxes_redacted: int = 0

    def summary_line(self) -> str:
        labels = ", ".join(f"{k}: {v}" for k, v in self.per_label.items()) or "none"
        return (f"imported {self.imported} image(s) into {self.dataset} "
                f"({self.labelled} labelled [{labels}], {self.unlabelled} unlabelled, "
                f"{self.masks} with mask); skipped {len(self.skipped)}, "
                f"warnings {len(self.warnings)}" +
                (f"; {self.blanked} blanked outside the ultrasound area (coordinates "
                 f"unchanged), {self.text_boxes_redacted} burned-in text box(es) redacted"
                 if self.blanked else ""))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Candidate:
    source: Path                # the file to copy
    name: str                   # how messages call it (the path as the user gave SRC)
    target_dir: str             # folder under the dataset, made of safe names
    fields: dict[str, str]      # manifest columns; "label" still raw here
    where: str = ""             # how messages call its row ("list.csv:3"); "" = name
    mask_file: Path | None = None           # a mask file to check and copy
    mask_name: str = ""                     # how messages call it
    polygons: tuple[Polygon, ...] | None = None  # outline polygons to draw (ddti)
    has_mask: bool = False                  # set by _check: the mask is usable
    # Set by _check: the image area it found, for the write pass. Kept here rather than
    # left to find_image_area's memo, which holds 4,096 frames: an import of more
    # images checks them all before writing the first.
    area: Box | None = None


class _Log:
    """Collects problems into the report and passes each line on as it happens."""

    def __init__(self, report: ImportReport, notify: Problem | None):
        self.report, self.notify = report, notify

    def skip(self, line: str) -> None:
        self.report.skipped.append(line)
        if self.notify:
            self.notify(f"skipped: {line}")

    def warn(self, line: str) -> None:
        self.report.warnings.append(line)
        if self.notify:
            self.notify(f"warning: {line}")

    def warn_line(self, line: str) -> None:
        """`warn` for a line that already starts with "warning: " (manifest helpers)."""
        self.warn(line.removeprefix("warning: "))


class _Lines:
    """A _Log's stand-in inside a pool worker: keeps each line, in order, for the parent
    to pass to the real _Log (`replay`), so the report reads as a loop's would."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def skip(self, line: str) -> None:
        self.lines.append(("skip", line))

    def warn(self, line: str) -> None:
        self.lines.append(("warn", line))

    def warn_line(self, line: str) -> None:
        self.warn(line.removeprefix("warning: "))

    def replay(self, log: _Log) -> None:
        for kind, line in self.lines:
            getattr(log, kind)(line)


# --------------------------------------------------------------------------- naming

def _slug(text: str) -> str:
    """A safe folder name derived from `text` ("TIRADS 1" -> "tirads-1")."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")[:60]
    return slug or "folder"


def _safe_dir(parts: Iterable[str]) -> str:
    return "/".join(part if _SAFE_NAME.match(part) else _slug(part) for part in parts)


def _label_dir(label: str) -> str:
    return label if label else "unlabelled"


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


# --------------------------------------------------------------------------- scanners

def _scan_folders(src: Path, log: _Log) -> list[_Candidate]:
    """Class folders, optionally under train/val/test folders; `manifest.csv` merged."""
    extra = _folder_manifest(src, log)
    candidates: list[_Candidate] = []
    unknown: Counter[str] = Counter()
    loose = 0
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        rel = path.relative_to(src)
        if any(part.startswith(".") for part in rel.parts) or not _is_image_name(path):
            continue
        if rel.parts[0] == MASKS_DIR:
            continue  # the parallel masks folder: found below, per image
        listed = extra.pop(rel.as_posix(), {})
        parts = list(rel.parts[:-1])
        split = ""
        if parts and parts[0].lower() in SPLIT_FOLDERS:
            split = SPLIT_FOLDERS[parts.pop(0).lower()]
        if not parts:
            loose += 1
            continue
        class_dir, below = parts[0], parts[1:]
        class_path = src.joinpath(*rel.parts[:len(rel.parts) - 1 - len(below)])
        if class_dir.lower() in UNLABELLED_FOLDERS:
            label = ""
        else:
            try:
                label = normalize_label(class_dir)
            except InputError:
                unknown[str(class_path)] += 1
                continue
        # The folder decides label and split; the source's manifest adds the rest
        # (patient id, box, features, source).
        try:
            listed_label = normalize_label(listed.get("label", ""))
        except InputError:
            listed_label = listed.get("label", "")
        if listed_label and listed_label != label:
            log.warn(f"{path}: manifest label {listed_label[:20]!r} differs from its "
                     f"folder's {label!r}; the folder's is kept")
        fields = {**listed, "label": label, "split": split or listed.get("split", ""),
                  "source": listed.get("source") or "folders"}
        target = "/".join(filter(None, [IMAGES_DIR, split, _label_dir(label), _safe_dir(below)]))
        candidate = _Candidate(path, str(path), target, fields)
        _find_mask(candidate, src, rel, fields.pop(MASK_COLUMN, ""), str(path), log)
        candidates.append(candidate)
    for folder, count in sorted(unknown.items()):
        log.skip(f"{folder}: unknown label folder ({count} image(s) skipped); expected e.g. "
                 "'TIRADS 3', 'EU-TIRADS 3', '3' or '4a'")
    if loose:
        log.warn(f"{src}: {loose} image(s) outside any class folder ignored")
    for rel in sorted(extra):
        log.skip(f"{src / rel}: listed in {src / MANIFEST_NAME} but not found in a class folder")
    return candidates


def _folder_manifest(src: Path, log: _Log) -> dict[str, dict[str, str]]:
    """Rows of SRC/manifest.csv by normalised relative path (empty when there is none)."""
    if not (src / MANIFEST_NAME).is_file():
        return {}
    try:
        rows = read_manifest(src)
    except ManifestError as exc:
        log.warn(f"{exc}; its columns are not merged")
        return {}
    by_path = {}
    for row in rows:
        key = Path(row["path"].replace("\\", "/")).as_posix()
        by_path[key] = {k: v for k, v in row.items() if k != "path"}
    return by_path


def _find_mask(candidate: _Candidate, root: Path, rel: Path, listed: str, where: str,
               log: _Log) -> None:
    """Point the candidate at its mask: the `mask` column's path (relative to `root`), or
    else `root/masks/<rel>` with a .png suffix when that file exists."""
    listed = listed.strip().replace("\\", "/")
    if listed:
        if listed.startswith("/") or re.match(r"^[A-Za-z]:", listed):
            log.warn(f"{where}: absolute mask path refused (paths are relative to "
                     f"{root}); row kept without mask")
            return
        path = (root.resolve() / listed).resolve()
        if not path.is_relative_to(root.resolve()):
            log.warn(f"{where}: mask path leaves {root}; row kept without mask")
            return
        if not path.is_file():
            log.warn(f"{where}: mask {root / listed} not found; row kept without mask")
            return
        candidate.mask_file, candidate.mask_name = path, str(root / listed)
        return
    parallel = root / MASKS_DIR / rel.with_suffix(".png")
    if parallel.is_file():
        candidate.mask_file, candidate.mask_name = parallel, str(parallel)


def _scan_csv(src: Path, log: _Log) -> list[_Candidate]:
    """A CSV with at least `path` and `label`; paths are relative to the CSV's folder."""
    try:
        with src.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            missing = [c for c in ("path", "label") if c not in columns]
            if missing:
                raise InputError(f"{src}: missing column(s) {', '.join(missing)} "
                                 "(a CSV import needs at least path and label)")
            rows = [(reader.line_num, {k: (v or "").strip() for k, v in row.items()
                                       if k is not None}) for row in reader]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{src}: not a readable CSV ({exc})") from None
    root = src.parent.resolve()
    candidates = []
    for line, row in rows:
        raw = row.pop("path").replace("\\", "/")
        where = f"{src}:{line}"
        if not raw:
            log.skip(f"{where}: empty path")
            continue
        if raw.startswith("/") or re.match(r"^[A-Za-z]:", raw):
            log.skip(f"{where}: absolute path refused (paths are relative to the CSV's folder)")
            continue
        path = (root / raw).resolve()
        if not path.is_relative_to(root):
            log.skip(f"{where}: path leaves the CSV's folder")
            continue
        rel = path.relative_to(root)
        fields = {k: v for k, v in row.items()}
        fields["source"] = fields.get("source") or "csv"
        target = "/".join(filter(None, [IMAGES_DIR, _safe_dir(rel.parts[:-1])]))
        candidate = _Candidate(path, str(src.parent / rel), target, fields, where=where)
        _find_mask(candidate, src.parent, rel, fields.pop(MASK_COLUMN, ""), where, log)
        candidates.append(candidate)
    return candidates


def _scan_ddti(src: Path, log: _Log) -> list[_Candidate]:
    """xml/<case>.xml + raw_jpg/<case>_<k>.jpg; label = tirads, patient_id = case."""
    xml_dir, jpg_dir = src / "xml", src / "raw_jpg"
    if not xml_dir.is_dir() or not jpg_dir.is_dir():
        raise InputError(f"{src}: not a DDTI folder (expected xml/ and raw_jpg/ inside)")
    cases: dict[str, DdtiCase | None] = {}
    for file in sorted(xml_dir.glob("*.xml")):
        try:
            case = parse_case(file.read_bytes(), name=str(file))
        except InputError as exc:
            log.skip(f"{exc}; its images are skipped")
            cases[file.stem] = None
            continue
        if case.case != file.stem:
            log.warn(f"{file}: case number {case.case} differs from the file name; "
                     "the file name is used")
        cases[file.stem] = case
    candidates = []
    seen_marks: set[tuple[str, str]] = set()
    for path in sorted(jpg_dir.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        match = IMAGE_NAME.match(path.name)
        if not match:
            log.skip(f"{path}: not named <case>_<image>.jpg")
            continue
        number, image = match.group(1), str(int(match.group(2)))
        if number not in cases:
            log.skip(f"{path}: no case file {xml_dir / (number + '.xml')}")
            continue
        case = cases[number]
        if case is None:
            continue  # already reported with the broken case file
        seen_marks.add((number, image))
        outline = case.outlines.get(image)
        fields = {"label": case.tirads, "patient_id": number, "source": "ddti",
                  "case": number, "image": image, **_ddti_fields(case.fields),
                  "outline": outline.status if outline else "none"}
        if outline is None:
            log.warn(f"{path}: no outline in {xml_dir / (number + '.xml')}; no box, no mask")
        elif outline.status == "broken":
            log.warn(f"{path}: outline in {xml_dir / (number + '.xml')} is not valid JSON; "
                     "no box, no mask")
        elif outline.status == "empty":
            log.warn(f"{path}: outline in {xml_dir / (number + '.xml')} is empty; "
                     "no box, no mask")
        if outline is not None and outline.box is not None:
            fields.update(zip(BOX_COLUMNS, (str(v) for v in outline.box)))
        candidates.append(_Candidate(path, str(path), IMAGES_DIR, fields,
                                     mask_name=f"outline of {path} in {number}.xml",
                                     polygons=outline.polygons if outline else None))
    for number, case in sorted(cases.items()):
        for image in sorted(case.outlines if case else ()):
            if (number, image) not in seen_marks:
                log.warn(f"{xml_dir / (number + '.xml')}: image {image} is outlined but "
                         f"{jpg_dir / f'{number}_{image}.jpg'} is missing")
    return candidates


def _ddti_fields(case_fields: dict[str, str]) -> dict[str, str]:
    """DDTI's own fields (descriptor ones as `ddti_<field>`) and our descriptor columns."""
    fields = {f"ddti_{k}" if k in DDTI_FIELDS else k: v for k, v in case_fields.items()}
    return {**fields, **map_ddti(case_fields)}


_SCANNERS = {"folders": _scan_folders, "csv": _scan_csv, "ddti": _scan_ddti}

# DDTI's feature columns, in the order a reader expects them (after the core columns).
_DDTI_COLUMNS = ("case", "image") + tuple(f"ddti_{k}" if k in DDTI_FIELDS else k
                                          for k in CASE_FIELDS) + ("outline",)


# --------------------------------------------------------------------------- checking

def _clean_box(fields: dict[str, str], width: int, height: int, name: str, log: _Log) -> None:
    """Keep a box only when it is numeric and overlaps the image; clamp it to the image."""
    values = [fields.get(k, "") for k in BOX_COLUMNS]
    if all(v == "" for v in values):
        return
    try:
        x0, y0, x1, y1 = (int(round(float(v))) for v in values)
    except ValueError:
        log.warn(f"{name}: nodule box {values} is incomplete or not numeric; dropped")
        fields.update(dict.fromkeys(BOX_COLUMNS, ""))
        return
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    if x1 <= x0 or y1 <= y0:
        log.warn(f"{name}: nodule box lies outside the {width}x{height} image; dropped")
        fields.update(dict.fromkeys(BOX_COLUMNS, ""))
        return
    fields.update(zip(BOX_COLUMNS, (str(v) for v in (x0, y0, x1, y1))))


def _check(candidate: _Candidate, log: _Log | _Lines, max_pixels: int,
           blank: bool = False) -> dict[str, str] | None:
    """The candidate's manifest row (without path) or None when it must be skipped."""
    fields = dict(candidate.fields)
    try:
        fields["label"] = normalize_label(fields.get("label", ""))
    except InputError as exc:
        log.skip(f"{candidate.name}: {exc}")
        return None
    split = fields.get("split", "").strip().lower()
    if split and split not in SPLIT_FOLDERS:
        log.warn(f"{candidate.name}: unknown split {split[:20]!r} cleared")
    fields["split"] = SPLIT_FOLDERS.get(split, "")
    if not candidate.source.is_file():
        log.skip(f"{candidate.name}: file not found")
        return None
    try:
        image = open_image(candidate.source, name=candidate.name, max_pixels=max_pixels)
        hashes = hash_image(image)
        if blank:
            from ..frame import clean_frame

            candidate.area = clean_frame(np.asarray(image.convert("RGB")),
                                         name=candidate.name).area_box
    except EutiradsError as exc:
        log.skip(str(exc))
        return None
    fields["format"] = (image.format or "").lower()
    fields["width"], fields["height"] = str(image.width), str(image.height)
    fields["pixel_sha256"], fields["phash"] = hashes.pixel_sha256, hashes.phash
    _clean_box(fields, image.width, image.height, candidate.name, log)
    fields.update(row_descriptors(fields, where=candidate.where or candidate.name,
                                  on_problem=log.warn_line))
    try:
        candidate.has_mask = _candidate_mask(candidate, image.width, image.height) is not None
    except EutiradsError as exc:
        log.warn(f"{exc}; row kept without mask")
    return fields


def _check_job(job: tuple[_Candidate, int, bool]
               ) -> tuple[dict[str, str] | None, Box | None, bool, _Lines]:
    """`_check` in a pool worker: the row, what it set on the candidate (its area and
    whether its mask is usable: the worker's copy of the candidate is not the parent's),
    and its problem lines."""
    candidate, max_pixels, blank = job
    lines = _Lines()
    fields = _check(candidate, lines, max_pixels, blank)
    return fields, candidate.area, candidate.has_mask, lines


def _candidate_mask(candidate: _Candidate, width: int, height: int):
    """The candidate's mask as HxW bool, None when it has none; InputError (one line)
    when it has one that cannot be used. Called when checking and again when writing,
    so that no mask is held in memory between the two."""
    if candidate.polygons is not None:
        mask = polygons_mask(candidate.polygons, width, height)
        if not mask.any():
            if candidate.polygons:
                raise InputError(f"{candidate.mask_name}: no polygon with three points")
            return None
        if mask.all():
            raise InputError(f"{candidate.mask_name}: covers the whole image")
        return mask
    if candidate.mask_file is None:
        return None
    return read_mask(candidate.mask_file, name=candidate.mask_name,
                     image_size=(width, height), image_name=candidate.name)


# --------------------------------------------------------------------------- writing

_FORMAT_SUFFIX = {"png": ".png", "jpeg": ".jpg", "bmp": ".bmp", "tiff": ".tif", "gif": ".gif",
                  "webp": ".webp"}


def _target_name(candidate: _Candidate, fields: dict[str, str], used: set[str],
                 number: int) -> str:
    """A dataset-relative path: the original file name when safe and free, else ours."""
    suffix = candidate.source.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        suffix = _FORMAT_SUFFIX.get(fields.get("format", ""), ".img")
    name = candidate.source.name
    if not _SAFE_NAME.match(name) or candidate.source.suffix.lower() not in IMAGE_SUFFIXES:
        name = f"img-{number:06d}{suffix}"
    path = f"{candidate.target_dir}/{name}"
    while path.lower() in used:  # a name clash (e.g. two slugs that coincide)
        number += 1_000_000
        path = f"{candidate.target_dir}/img-{number:06d}{suffix}"
    used.add(path.lower())
    return path


def _mask_target(image: str, used: set[str]) -> str:
    """masks/<the image's path below images/>.png; a.jpg beside a.png gets a.jpg.png."""
    below = Path(image.removeprefix(f"{IMAGES_DIR}/"))
    path = f"{MASKS_DIR}/{below.with_suffix('.png').as_posix()}"
    if path.lower() in used:
        path = f"{MASKS_DIR}/{below.as_posix()}.png"
    used.add(path.lower())
    return path


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_SAVE_OPTIONS = {"jpeg": {"quality": 95, "subsampling": 0}, "png": {"compress_level": 3}}


def _write_clean(source: Path, target: Path, name: str, area: Box | None = None) -> int:
    """The source's pixels blanked outside the image area (`area` when the check found
    it already: the same pixels give the same area) and with text redacted, in the
    target's format at the same size; returns how many text boxes were redacted."""
    from PIL import Image

    from ..frame import clean_frame

    clean = clean_frame(source, name=name, redact_text=True, area=area)
    pixels = clean.blanked
    if pixels.ndim == 3 and (pixels == pixels[..., :1]).all():
        pixels = pixels[..., 0]  # a grey source stays grey
    image = Image.fromarray(np.ascontiguousarray(pixels))
    fmt = Image.registered_extensions().get(target.suffix.lower(), "PNG")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        image.save(tmp, format=fmt, **_SAVE_OPTIONS.get(fmt.lower(), {}))
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return clean.text_boxes_redacted


def _write_job(job: tuple[_Candidate, Path, Path | None, bool, int, int]) -> int:
    """Write one checked candidate into the dataset (its image at `target`, its mask at
    `mask_target` unless None); returns how many text boxes were redacted."""
    candidate, target, mask_target, blank_outside, width, height = job
    redacted = 0
    if blank_outside:
        redacted = _write_clean(candidate.source, target, candidate.name, candidate.area)
    else:
        _copy(candidate.source, target)
    if mask_target is not None:
        save_mask(_candidate_mask(candidate, width, height), mask_target)
    return redacted


def _prepare_out(out: Path, src: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if (out / MANIFEST_NAME).exists():
        raise InputError(f"{out}: already holds a dataset ({MANIFEST_NAME}); "
                         "choose a new folder (nothing was changed)")
    if out.is_dir() and any(out.iterdir()):
        raise InputError(f"{out}: folder is not empty; choose a new folder (nothing was changed)")
    src_dir = (src if src.is_dir() else src.parent).resolve()
    if src.is_dir() and out.resolve().is_relative_to(src_dir):
        raise InputError(f"{out}: the dataset cannot be written inside the source folder")


def import_dataset(src: str | os.PathLike[str], out: str | os.PathLike[str], *, fmt: str,
                   strict: bool = False, progress: bool = True,
                   on_problem: Problem | None = None,
                   max_pixels: int = DEFAULT_MAX_PIXELS,
                   blank_outside: bool = True, workers: int | None = None) -> ImportReport:
    """Import images from `src` into a new dataset folder `out`; see the module docstring.

    `fmt` is "folders" (SRC is a folder of class subfolders), "csv" (SRC is a CSV file with
    path and label columns) or "ddti" (SRC holds xml/ and raw_jpg/). `on_problem` receives
    each skip or warning line as it happens (the CLI prints them); images over
    `max_pixels` are refused before decoding. Raises InputError when
    nothing usable remains, or with `strict` when anything was skipped; in both cases
    nothing is written. `blank_outside` (default) writes each image through the
    clean-frame rule (see the module docstring); False copies the bytes unchanged.
    `workers`: processes for the check and write passes (default one per core; the result
    is the same as one process's).
    """
    if fmt not in _SCANNERS:
        raise InputError(f"unknown import format {fmt!r}; expected one of {', '.join(FORMATS)}")
    src, out = Path(src), Path(out)
    if fmt == "csv" and not src.is_file():
        raise InputError(f"{src}: CSV file not found")
    if fmt != "csv" and not src.is_dir():
        raise InputError(f"{src}: folder not found")
    _prepare_out(out, src)
    report = ImportReport(source=str(src), dataset=str(out), format=fmt)
    log = _Log(report, on_problem)

    candidates = _SCANNERS[fmt](src, log)
    checked: list[tuple[_Candidate, dict[str, str]]] = []
    n_workers = worker_count(workers, len(candidates))
    # Lazily: each item's problem lines reach `on_problem` as its check finishes.
    results = imap_in_order(_check_job, [(c, max_pixels, blank_outside) for c in candidates],
                            workers=n_workers, progress=progress, desc="import: checking",
                            leave=False)
    for candidate, (fields, area, has_mask, lines) in zip(candidates, results):
        lines.replay(log)
        candidate.area, candidate.has_mask = area, has_mask
        if fields is not None:
            checked.append((candidate, fields))

    if strict and report.skipped:
        raise InputError(f"{src}: {len(report.skipped)} item(s) skipped and --strict is set; "
                         "nothing was imported")
    if not checked:
        raise InputError(f"{src}: no usable images ({len(report.skipped)} skipped); "
                         "nothing was imported")

    used: set[str] = set()
    rows, jobs = [], []
    for number, (candidate, fields) in enumerate(checked, start=1):
        path = _target_name(candidate, fields, used, number)
        mask = _mask_target(path, used) if candidate.has_mask else ""
        jobs.append((candidate, out / path, out / mask if mask else None, blank_outside,
                     int(fields["width"]), int(fields["height"])))
        rows.append({"path": path, **fields, MASK_COLUMN: mask})
    redacted = map_in_order(_write_job, jobs, workers=n_workers, progress=progress,
                            desc="import: copying", leave=False)
    if blank_outside:
        report.blanked = len(jobs)
        report.text_boxes_redacted = sum(redacted)

    extras = [c for c in _DDTI_COLUMNS if fmt == "ddti"]
    columns = list(CORE_COLUMNS) + extras
    for row in rows:
        columns += [k for k in row if k not in columns]
    write_manifest(out, rows, columns)

    labels = Counter(row["label"] for row in rows if row["label"])
    report.imported = len(rows)
    report.labelled = sum(labels.values())
    report.masks = sum(1 for row in rows if row[MASK_COLUMN])
    report.unlabelled = report.imported - report.labelled
    report.per_label = {label: labels[label] for label in sort_labels(labels)}
    (out / IMPORT_REPORT_NAME).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report
