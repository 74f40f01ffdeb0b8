"""Source discovery: files, folders (walked recursively) and zip archives' members, with
the label a class folder gives; and reading one source's bytes within the size limit."""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..categories import normalize_label
from ..errors import InputError
from .reading import looks_like_dicom
from .records import Quarantine

__all__ = ["SourceRef", "collect_sources", "read_source", "check_name_matches_content",
           "IMAGE_MAGIC"]

# Files that sit beside exams but are never images: skipped (and counted), not quarantined.
# Dot-files are exams like any other (an export may name them so); hidden folders (.git,
# our own .ingest) are not walked.
_IGNORED_SUFFIXES = frozenset({".csv", ".json", ".txt", ".md", ".xml", ".yaml", ".yml",
                               ".html", ".htm", ".log", ".py", ".ini"})
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"II*\x00", b"MM\x00*")
_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif"})


@dataclass(frozen=True)
class SourceRef:
    """A file, or a member of a zip archive, and the label its class folder gives."""

    path: str
    member: str | None = None
    label: str = ""


def read_source(ref: SourceRef, limit: int) -> bytes:
    """The bytes of one source; Quarantine when it is too large or cannot be read."""
    try:
        if ref.member is None:
            size = os.stat(ref.path).st_size
            if size > limit:
                raise Quarantine("too-large", f"file too large ({size:,} bytes; limit {limit:,})")
            with open(ref.path, "rb") as handle:
                return handle.read()
        with zipfile.ZipFile(ref.path) as archive:
            info = archive.getinfo(ref.member)
            if info.file_size > limit:
                raise Quarantine("too-large", f"archive member too large ({info.file_size:,} "
                                              f"bytes; limit {limit:,})")
            with archive.open(info) as handle:
                data = handle.read(limit + 1)  # never trust the declared size alone
            if len(data) > limit:
                raise Quarantine("too-large", "archive member larger than declared")
            return data
    except Quarantine:
        raise
    except (OSError, zipfile.BadZipFile, RuntimeError, KeyError, EOFError,
            NotImplementedError) as exc:
        raise Quarantine("unreadable", f"cannot read the file ({type(exc).__name__})") from None


def check_name_matches_content(ref: SourceRef, data: bytes) -> None:
    """A file whose name says image but whose bytes are DICOM (or the reverse) is held
    back: exports do not do that by accident, and a file that is both at once (a
    PNG/DICOM polyglot) is a known way to smuggle data past checks. Files without an
    extension, or with another one, are recognised by content."""
    suffix = Path(ref.member or ref.path).suffix.lower()
    if suffix in _IMAGE_SUFFIXES and looks_like_dicom(data):
        raise Quarantine("name-mismatch", f"named as a {suffix[1:].upper()} image but holds "
                                          "DICOM; rename it .dcm to ingest it")
    if suffix == ".dcm" and not looks_like_dicom(data) and data.startswith(IMAGE_MAGIC):
        raise Quarantine("name-mismatch", "named .dcm but holds a plain image; rename it to "
                                          "its image type to ingest it")


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
