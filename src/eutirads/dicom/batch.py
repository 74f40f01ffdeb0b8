"""Batch ingest: DICOM exams (and plain JPEG/PNG screenshots) into a de-identified dataset.

`ingest_file` turns the bytes of one source file into PNG frames (and, if asked, a
de-identified DICOM) plus manifest rows; it never raises for a bad file but returns a
quarantine record with a one-line reason. `ingest` runs it over files, folders and zip
archives on all cores and keeps the batch resumable:

- every output file is written atomically (temporary name, then rename), under a name
  made only of the keyed patient pseudonym, the source's hash and the frame index;
- after each source, one line goes to `DATASET/.ingest/journal.jsonl` (its hash, status
  and rows); a rerun skips every hash already done, so killing the batch and running it
  again gives the same dataset, with no duplicate and no gap;
- `manifest.csv` and `quarantine.csv` are assembled from the journal, sorted, at the end.

No identifying value (DICOM value or source file name) reaches a file name, a log line, an
error message or the manifest: quarantine reasons name only what was wrong.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import tempfile
import warnings
import zipfile
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image

from ..categories import normalize_label
from ..data.manifest import CORE_COLUMNS, MANIFEST_NAME, read_manifest, write_manifest
from ..errors import ConfigError, EutiradsError, InputError
from ..imageio import load_rgb
from .keys import Keyring, default_key_path, load_or_create_key
from .reading import (DEFAULT_MAX_DECODED_BYTES, decode_frames, frame_info, looks_like_dicom,
                      read_dataset, select_frames)

__all__ = ["IngestOptions", "SourceRef", "FileResult", "IngestReport", "ingest",
           "ingest_file", "collect_sources", "parse_frames", "EXTRA_COLUMNS",
           "QUARANTINE_NAME", "STATE_DIR"]

EXTRA_COLUMNS: tuple[str, ...] = ("study_id", "series_id", "frame", "pixel_spacing_mm_x",
                                  "pixel_spacing_mm_y", "source_sha256")
MANIFEST_COLUMNS: tuple[str, ...] = CORE_COLUMNS + EXTRA_COLUMNS
QUARANTINE_NAME = "quarantine.csv"
STATE_DIR = ".ingest"
# Files that sit beside exams but are never images: skipped (and counted), not quarantined.
# Dot-files are exams like any other (an export may name them so); hidden folders (.git,
# our own .ingest) are not walked.
_IGNORED_SUFFIXES = frozenset({".csv", ".json", ".txt", ".md", ".xml", ".yaml", ".yml",
                               ".html", ".htm", ".log", ".py", ".ini"})
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"II*\x00", b"MM\x00*")
_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif"})


@dataclass(frozen=True)
class IngestOptions:
    """What shapes the output; a dataset is always built with one set of options."""

    frames: str | int = "all"
    keep_dicom: bool = False
    detect_region: bool = False
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES

    @property
    def max_file_bytes(self) -> int:
        # An uncompressed file is about its decoded size; compressed ones are smaller.
        return self.max_decoded_bytes + (16 << 20)


@dataclass(frozen=True)
class SourceRef:
    """A file, or a member of a zip archive, and the label its class folder gives."""

    path: str
    member: str | None = None
    label: str = ""


@dataclass
class FileResult:
    sha256: str
    status: str  # "done", "quarantined" or "skipped" (already done in an earlier run)
    reason_code: str = ""
    reason: str = ""
    rows: list[dict[str, str]] = field(default_factory=list)


@dataclass
class IngestReport:
    files: int = 0
    done: int = 0
    skipped: int = 0
    duplicates: int = 0
    ignored: int = 0
    frames: int = 0
    quarantined: Counter = field(default_factory=Counter)
    manifest: Path | None = None
    quarantine: Path | None = None

    def summary(self) -> str:
        why = ", ".join(f"{code} {n}" for code, n in sorted(self.quarantined.items()))
        total_q = sum(self.quarantined.values())
        return (f"ingest: {self.files} files: {self.done} ingested ({self.frames} frames), "
                f"{self.skipped} already done, {self.duplicates} duplicates, "
                f"{total_q} quarantined" + (f" ({why})" if why else "") +
                f", {self.ignored} non-image files ignored")


class _Quarantine(Exception):
    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def parse_frames(text: str | int) -> str | int:
    """'all', 'first', or N (keep every Nth frame)."""
    value = str(text).strip().lower()
    if value in ("all", "first"):
        return value
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise ConfigError(f"--frames must be all, first or a whole number >= 1, not {str(text)[:20]!r}")


# ---------------------------------------------------------------------------------------
# One file: pure except for writing its own outputs.

@dataclass(frozen=True)
class _Context:
    keyring: Keyring
    options: IngestOptions
    out: Path
    done: frozenset[str]


def _read_source(ref: SourceRef, limit: int) -> bytes:
    try:
        if ref.member is None:
            size = os.stat(ref.path).st_size
            if size > limit:
                raise _Quarantine("too-large", f"file too large ({size:,} bytes; limit {limit:,})")
            with open(ref.path, "rb") as handle:
                return handle.read()
        with zipfile.ZipFile(ref.path) as archive:
            info = archive.getinfo(ref.member)
            if info.file_size > limit:
                raise _Quarantine("too-large", f"archive member too large ({info.file_size:,} "
                                               f"bytes; limit {limit:,})")
            with archive.open(info) as handle:
                data = handle.read(limit + 1)  # never trust the declared size alone
            if len(data) > limit:
                raise _Quarantine("too-large", "archive member larger than declared")
            return data
    except _Quarantine:
        raise
    except (OSError, zipfile.BadZipFile, RuntimeError, KeyError, EOFError,
            NotImplementedError) as exc:
        raise _Quarantine("unreadable", f"cannot read the file ({type(exc).__name__})") from None


def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a temporary file of a unique name, then rename: a reader never sees
    half a file, and two workers writing the same output (the same bytes found under two
    names) never trip over each other's temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(name))
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def _save_png(pixels: np.ndarray, path: Path) -> None:
    image = Image.fromarray(np.ascontiguousarray(pixels))
    # zlib level 3: files as small as the default level 6 gives on ultrasound frames
    # (speckle does not compress further), in less than half the time.
    _atomic_write(path, lambda tmp: image.save(tmp, format="PNG", compress_level=3))


def _relative_png(patient: str, sha: str, frame: int) -> str:
    return f"images/{patient}/{sha[:16]}-f{frame:04d}.png"


def _row(path: str, label: str, patient: str, source: str, sha: str, frame: int,
         study: str = "", series: str = "", spacing: tuple[float, float] | None = None
         ) -> dict[str, str]:
    return {"path": path, "label": label, "patient_id": patient, "split": "",
            "x0": "", "y0": "", "x1": "", "y1": "", "source": source,
            "study_id": study, "series_id": series, "frame": str(frame),
            "pixel_spacing_mm_x": f"{spacing[0]:.6g}" if spacing else "",
            "pixel_spacing_mm_y": f"{spacing[1]:.6g}" if spacing else "",
            "source_sha256": sha}


def _check_native_length(ds, info) -> None:
    """For uncompressed pixel data the byte count must match the header exactly (one
    padding byte allowed): a mismatch means Rows/Columns/frames lie about the pixels."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None and syntax.is_compressed:
        return
    try:
        actual = len(ds.PixelData)
    except Exception:
        raise _Quarantine("bad-header", "pixel data cannot be read") from None
    pixels = info.rows * info.columns * info.frames
    if info.bits_allocated == 1:
        expected = (pixels * info.samples + 7) // 8
    elif info.photometric == "YBR_FULL_422":
        expected = pixels * 2 * (info.bits_allocated // 8)
    else:
        expected = pixels * info.samples * (info.bits_allocated // 8)
    if not expected <= actual <= expected + 1:
        raise _Quarantine("bad-header", f"pixel data length ({actual:,} bytes) disagrees with "
                                        f"Rows/Columns/frames ({expected:,} bytes expected)")


def _ingest_dicom(data: bytes, sha: str, label: str, ctx: _Context) -> list[dict[str, str]]:
    from ..region import find_image_area
    from .deidentify import deidentify_dataset, identity_of
    from .pixels import Region, clean_frame, spacing_of, ultrasound_regions

    opts = ctx.options
    try:
        ds = read_dataset(data, max_bytes=opts.max_decoded_bytes)
    except InputError as exc:
        raise _Quarantine("unreadable", str(exc)) from None
    try:
        info = frame_info(ds, max_bytes=opts.max_decoded_bytes)
    except InputError as exc:
        raise _Quarantine("bad-header", str(exc)) from None
    _check_native_length(ds, info)
    regions, problems = ultrasound_regions(ds, info.rows, info.columns)
    if not regions and not opts.detect_region:
        raise _Quarantine("no-region", "no usable ultrasound region (" + "; ".join(problems) +
                          "); rerun with --detect-region to find it from the pixels")
    identity = identity_of(ds, ctx.keyring, fallback=sha)
    indices = select_frames(info.frames, opts.frames)
    try:
        frames = list(decode_frames(ds, info, indices))
    except InputError as exc:
        raise _Quarantine("undecodable", str(exc)) from None
    if not regions:
        # The scanner's layout is fixed through a cine: find the area once, on the
        # per-pixel maximum of the kept frames (it shows the whole area ever used).
        stack = np.max(np.stack([f for _, f in frames]), axis=0)
        try:
            regions = [Region(find_image_area(stack))]
        except InputError:
            raise _Quarantine("no-region", "no usable ultrasound region, and none found "
                                           "in the pixels") from None
    spacing = spacing_of(regions)
    rows, blanked_frames = [], []
    for index, frame in frames:
        blanked, cropped = clean_frame(frame, regions)
        if opts.keep_dicom:
            blanked_frames.append(blanked)
        path = _relative_png(identity.patient_id, sha, index)
        _save_png(cropped, ctx.out / path)
        rows.append(_row(path, label, identity.patient_id, "dicom", sha, index,
                         identity.study_id, identity.series_id, spacing))
    if opts.keep_dicom:
        deidentify_dataset(ds, ctx.keyring, identity)
        _write_dicom(ds, blanked_frames, info, indices,
                     ctx.out / f"dicom/{identity.patient_id}/{sha[:16]}.dcm")
    return rows


def _write_dicom(ds, frames: list[np.ndarray], info, indices: list[int], path: Path) -> None:
    """Write the de-identified dataset with the cleaned frames, uncompressed, atomically."""
    from pydicom import dcmwrite
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    from .deidentify import mark_pixels_cleaned

    # Colour tables and compression notes describe the original pixels, not ours.
    for keyword in ("RedPaletteColorLookupTableDescriptor", "GreenPaletteColorLookupTableDescriptor",
                    "BluePaletteColorLookupTableDescriptor", "RedPaletteColorLookupTableData",
                    "GreenPaletteColorLookupTableData", "BluePaletteColorLookupTableData",
                    "SegmentedRedPaletteColorLookupTableData",
                    "SegmentedGreenPaletteColorLookupTableData",
                    "SegmentedBluePaletteColorLookupTableData", "PaletteColorLookupTableUID",
                    "PlanarConfiguration", "NumberOfFrames", "FrameTimeVector",
                    "SmallestImagePixelValue", "LargestImagePixelValue",
                    "WindowCenter", "WindowWidth", "VOILUTSequence", "ModalityLUTSequence",
                    "RescaleIntercept", "RescaleSlope", "ICCProfile"):
        if keyword in ds:
            delattr(ds, keyword)
    stack = np.stack(frames)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if len(frames) > 1 or info.frames > 1:
        array = stack
        ds.NumberOfFrames = len(frames)
        step = indices[1] - indices[0] if len(indices) > 1 else 1
        if "FrameTime" in ds and step > 1:
            ds.FrameTime = float(ds.FrameTime) * step
    else:
        array = stack[0]
    photometric = "RGB" if stack.ndim == 4 else "MONOCHROME2"
    ds.set_pixel_data(array, photometric, 8, generate_instance_uid=False)
    mark_pixels_cleaned(ds)
    ds.file_meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", "1.2.840.10008.5.1.4.1.1.6.1")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", "")
    # Big-endian sources are rewritten little endian: the transfer syntax we declare.
    _atomic_write(path, lambda tmp: dcmwrite(tmp, ds, enforce_file_format=True,
                                             implicit_vr=False, little_endian=True))


def _ingest_image(data: bytes, sha: str, label: str, ctx: _Context) -> list[dict[str, str]]:
    """A JPEG/PNG screenshot of a scanner: no tags, so the region finder crops it."""
    from ..region import crop, find_image_area

    try:
        pixels = load_rgb(data, name="image")
    except InputError as exc:
        raise _Quarantine("unreadable", str(exc).removeprefix("image: ")) from None
    try:
        box = find_image_area(pixels)
    except InputError:
        raise _Quarantine("no-region", "no image area found in the pixels") from None
    patient = ctx.keyring.pseudonym(f"image:{sha}")
    path = _relative_png(patient, sha, 0)
    _save_png(crop(pixels, box), ctx.out / path)
    return [_row(path, label, patient, "image", sha, 0)]


@contextlib.contextmanager
def _quiet_pydicom():
    """pydicom warns and logs about odd values, sometimes quoting them: a quoted value may
    be a patient's name, so none of that may reach the log while we read exams."""
    logger = logging.getLogger("pydicom")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _check_name_matches_content(ref: SourceRef, data: bytes) -> None:
    """A file whose name says image but whose bytes are DICOM (or the reverse) is held
    back: exports do not do that by accident, and a file that is both at once (a
    PNG/DICOM polyglot) is a known way to smuggle data past checks. Files without an
    extension, or with another one, are recognised by content."""
    suffix = Path(ref.member or ref.path).suffix.lower()
    if suffix in _IMAGE_SUFFIXES and looks_like_dicom(data):
        raise _Quarantine("name-mismatch", f"named as a {suffix[1:].upper()} image but holds "
                                           "DICOM; rename it .dcm to ingest it")
    if suffix == ".dcm" and not looks_like_dicom(data) and data.startswith(_IMAGE_MAGIC):
        raise _Quarantine("name-mismatch", "named .dcm but holds a plain image; rename it to "
                                           "its image type to ingest it")


def ingest_file(ref: SourceRef, ctx: _Context) -> FileResult:
    """Ingest one source; never raises for a bad file (it returns a quarantine record)."""
    with _quiet_pydicom():
        return _ingest_file(ref, ctx)


def _ingest_file(ref: SourceRef, ctx: _Context) -> FileResult:
    sha = ""
    try:
        data = _read_source(ref, ctx.options.max_file_bytes)
        sha = hashlib.sha256(data).hexdigest()
        if sha in ctx.done:
            return FileResult(sha, "skipped")
        _check_name_matches_content(ref, data)
        if looks_like_dicom(data):
            rows = _ingest_dicom(data, sha, ref.label, ctx)
        elif data.startswith(_IMAGE_MAGIC):
            rows = _ingest_image(data, sha, ref.label, ctx)
        else:
            raise _Quarantine("not-an-image", "not a DICOM or image file")
        return FileResult(sha, "done", rows=rows)
    except _Quarantine as q:
        return FileResult(sha, "quarantined", q.code, q.reason)
    except EutiradsError as exc:
        return FileResult(sha, "quarantined", "failed", str(exc).splitlines()[0][:200])
    except MemoryError:
        return FileResult(sha, "quarantined", "too-large", "not enough memory to process it")
    except RecursionError:
        return FileResult(sha, "quarantined", "unreadable", "structure nested too deeply")
    except Exception as exc:  # one bad file never stops the batch; the type says enough
        return FileResult(sha, "quarantined", "failed",
                          f"unexpected {type(exc).__name__} while processing")


_WORKER: _Context | None = None


def _init_worker(ctx: _Context) -> None:
    global _WORKER
    _WORKER = ctx


def _work(ref: SourceRef) -> FileResult:
    assert _WORKER is not None
    return ingest_file(ref, _WORKER)


# ---------------------------------------------------------------------------------------
# Sources, journal and assembly.

def _label_from_folder(name: str) -> str:
    try:
        return normalize_label(name)
    except InputError:
        return ""


def collect_sources(sources: Iterable[str | os.PathLike[str]], *,
                    exclude: Path | None = None) -> tuple[list[SourceRef], int]:
    """Every candidate file under `sources` (files, folders walked recursively, zip
    archives' members), sorted; and how many non-image files were ignored. A file in a
    class folder (`3/`, `tirads 4/` ...) gets that folder's label."""
    refs: list[SourceRef] = []
    ignored = 0
    excluded = exclude.resolve() if exclude is not None else None

    def add_file(path: Path, label: str) -> None:
        nonlocal ignored
        if path.suffix.lower() in _IGNORED_SUFFIXES or _is_junk(path.name):
            ignored += 1
        elif path.suffix.lower() == ".zip" and zipfile.is_zipfile(path):
            refs.extend(_zip_members(path))
        else:
            refs.append(SourceRef(str(path), None, label))

    for number, source in enumerate(sources, 1):
        root = Path(source)
        if root.is_file():
            add_file(root, "")
        elif root.is_dir():
            for folder, dirs, files in os.walk(root):
                here = Path(folder)
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and
                                 (excluded is None or (here / d).resolve() != excluded))
                label = _label_from_folder(here.name) if here != root else ""
                for name in sorted(files):
                    add_file(here / name, label)
        else:
            # The path the user typed may itself name a patient: say which argument.
            raise InputError(f"source #{number} on the command line: no such file or folder")
    refs.sort(key=lambda r: (r.path, r.member or ""))
    return refs, ignored


def _is_junk(name: str) -> bool:
    """Operating-system litter (Finder and Explorer metadata), never an exam."""
    return name in (".DS_Store", "Thumbs.db", "desktop.ini") or name.startswith("._")


def _zip_members(path: Path) -> list[SourceRef]:
    refs = []
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                parts = info.filename.replace("\\", "/").split("/")
                if info.is_dir() or _is_junk(parts[-1]) or \
                        Path(parts[-1]).suffix.lower() in _IGNORED_SUFFIXES:
                    continue
                label = _label_from_folder(parts[-2]) if len(parts) > 1 else ""
                refs.append(SourceRef(str(path), info.filename, label))
    except (zipfile.BadZipFile, OSError):
        refs.append(SourceRef(str(path), None, ""))  # quarantined when processed
    return refs


def _state(keyring: Keyring, options: IngestOptions) -> dict:
    return {"format_version": 1, "key_fingerprint": keyring.fingerprint,
            "frames": options.frames, "keep_dicom": options.keep_dicom,
            "detect_region": options.detect_region}


def _check_state(state_dir: Path, state: dict) -> None:
    """A dataset is built with one key and one set of options: refuse to mix."""
    file = state_dir / "state.json"
    if file.is_file():
        try:
            old = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise ConfigError(f"{file}: unreadable ingest state") from None
        if old.get("key_fingerprint") != state["key_fingerprint"]:
            raise ConfigError(f"{file}: this dataset was ingested with another key; use the "
                              "same --key, or a new --out folder")
        changed = [k for k in ("frames", "keep_dicom", "detect_region") if old.get(k) != state[k]]
        if changed:
            raise ConfigError(f"{file}: this dataset was ingested with other options "
                              f"({', '.join(changed)}); use the same options or a new --out")
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(".state.json.tmp")
    tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
    os.replace(tmp, file)


def _read_journal(file: Path) -> dict[str, FileResult]:
    """The last record per source hash. A line cut short by a kill is dropped (and cut off
    the file, so the next record starts on a fresh line)."""
    records: dict[str, FileResult] = {}
    if not file.is_file():
        return records
    data = file.read_bytes()
    if data and not data.endswith(b"\n"):
        data = data[:data.rfind(b"\n") + 1]
        with open(file, "r+b") as handle:
            handle.truncate(len(data))
    for line in data.decode("utf-8", "replace").splitlines():
        try:
            record = FileResult(**json.loads(line))
        except (ValueError, TypeError):
            continue
        records[record.sha256] = record
    return records


def _assemble(out: Path, journal: dict[str, FileResult]) -> tuple[Path, Path]:
    """manifest.csv and quarantine.csv from the journal, sorted; rows another stage wrote
    (other images, labels, splits, extra columns) are kept."""
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
    quarantined = [{"source_sha256": r.sha256, "reason_code": r.reason_code, "reason": r.reason}
                   for r in sorted(journal.values(), key=lambda r: r.sha256)
                   if r.status == "quarantined"]
    quarantine = write_manifest(out / QUARANTINE_NAME, quarantined,
                                ["source_sha256", "reason_code", "reason"])
    return manifest, quarantine


def _unhashed_quarantine(ref: SourceRef, ctx: _Context, code: str, reason: str) -> FileResult:
    try:
        sha = hashlib.sha256(_read_source(ref, ctx.options.max_file_bytes)).hexdigest()
    except _Quarantine:
        sha = ""
    return FileResult(sha, "quarantined", code, reason)


def ingest(sources: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], *,
           key_path: str | os.PathLike[str] | None = None, frames: str | int = "all",
           keep_dicom: bool = False, detect_region: bool = False,
           max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES, workers: int | None = None,
           progress: bool = True,
           on_result: Callable[[FileResult], None] | None = None) -> IngestReport:
    """Ingest `sources` into the dataset folder `out` (created, or resumed); see the module
    docstring. `on_result` is called after each source's record is safely in the journal."""
    out = Path(out)
    key_file = Path(key_path) if key_path is not None else default_key_path()
    if key_file.resolve().is_relative_to(out.resolve()):
        raise ConfigError(f"{key_file}: the key must not live inside the dataset folder")
    keyring = Keyring(load_or_create_key(key_file))
    options = IngestOptions(parse_frames(frames), keep_dicom, detect_region, max_decoded_bytes)
    state_dir = out / STATE_DIR
    with _exclusive(state_dir):
        return _run_batch(sources, out, keyring, options, workers=workers, progress=progress,
                          on_result=on_result)


@contextlib.contextmanager
def _exclusive(state_dir: Path):
    """One ingest at a time per dataset: two would interleave their journal lines."""
    import fcntl

    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / "lock", "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"{state_dir.parent}: another ingest is writing to this "
                              "dataset; wait for it to finish") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_batch(sources: Sequence[str | os.PathLike[str]], out: Path, keyring: Keyring,
               options: IngestOptions, *, workers: int | None, progress: bool,
               on_result: Callable[[FileResult], None] | None) -> IngestReport:
    from tqdm import tqdm

    state_dir = out / STATE_DIR
    _check_state(state_dir, _state(keyring, options))
    journal_file = state_dir / "journal.jsonl"
    journal = _read_journal(journal_file)
    refs, ignored = collect_sources(sources, exclude=out)
    done = frozenset(sha for sha, r in journal.items() if r.status == "done")
    ctx = _Context(keyring, options, out, done)
    report = IngestReport(files=len(refs), ignored=ignored)
    seen: set[str] = set()

    def record(result: FileResult, log) -> None:
        if result.status == "skipped":
            report.skipped += 1
        elif result.sha256 and result.sha256 in seen:
            report.duplicates += 1  # the same bytes under another name: ingested once
        else:
            seen.add(result.sha256)
            log.write(json.dumps(asdict(result), separators=(",", ":")) + "\n")
            log.flush()
            journal[result.sha256] = result
            if result.status == "done":
                report.done += 1
                report.frames += len(result.rows)
            else:
                report.quarantined[result.reason_code] += 1
        if on_result is not None:
            on_result(result)

    workers = max(1, min(workers or os.cpu_count() or 1, len(refs) or 1))
    if workers > 1:
        _preload()
    try:
        with open(journal_file, "a", encoding="utf-8") as log, \
                tqdm(total=len(refs), unit="file", desc="ingest", file=sys.stderr,
                     disable=not progress) as bar:
            if workers == 1:
                for ref in refs:
                    record(ingest_file(ref, ctx), log)
                    bar.update()
            else:
                crashed = _run_pool(refs, ctx, workers, lambda r: (record(r, log), bar.update()))
                # A decoder that kills its process takes the pool down; retry those files
                # one per process, so only the guilty one is quarantined.
                for ref in crashed:
                    again = _run_pool([ref], ctx, 1, lambda r: record(r, log))
                    if again:
                        record(_unhashed_quarantine(ref, ctx, "crashed",
                                                    "the decoder crashed on this file"), log)
                    bar.update()
    finally:
        report.manifest, report.quarantine = _assemble(out, journal)
    return report


def _preload() -> None:
    """Import the decoders, scipy and the de-identification code once, before the pool
    forks, so each worker inherits them instead of spending seconds importing its own."""
    import pydicom.pixels  # noqa: F401
    from pydicom.pixels import decoders  # noqa: F401

    from .. import region  # noqa: F401
    from . import deidentify, pixels  # noqa: F401


def _run_pool(refs: list[SourceRef], ctx: _Context, workers: int,
              handle: Callable[[FileResult], object]) -> list[SourceRef]:
    """Run refs on a process pool; returns the refs lost to a crashed worker."""
    crashed: list[SourceRef] = []
    executor = ProcessPoolExecutor(max_workers=workers, initializer=_init_worker,
                                   initargs=(ctx,))
    try:
        # Bounded submission: results stream back while the rest waits its turn.
        pending = {}
        queue = list(reversed(refs))
        while queue or pending:
            while queue and len(pending) < workers * 4:
                ref = queue.pop()
                pending[executor.submit(_work, ref)] = ref
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                ref = pending.pop(future)
                try:
                    handle(future.result())
                except BrokenProcessPool:
                    crashed.append(ref)
            if crashed:
                # The pool is gone: everything not yet finished must be redone.
                crashed.extend(pending.values())
                crashed.extend(reversed(queue))
                break
    except BaseException:
        # Let running files finish (their outputs are whole either way) so nothing keeps
        # writing into the dataset after we return; queued ones are dropped.
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    executor.shutdown(wait=True)
    return crashed
