"""The per-file pipeline: the bytes of one source in, its PNG frames (and, if asked, its
de-identified DICOM) plus manifest rows out, or a quarantine record with a one-line
reason. `ingest_file` never raises for a bad file.

Every output name is made only of the keyed patient pseudonym, the source's keyed hash
and the frame index; pixels go through the one clean-frame rule (`eutirads.frame`) with
the burned-in text check the text policy asks for; a source's outputs are written all
together or not at all (`writing.Staging`).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import EutiradsError, InputError
from ..imageio import load_rgb
from .keys import Keyring
from .reading import decode_frames, frame_info, looks_like_dicom, read_dataset, select_frames
from .records import FileResult, IngestOptions, Quarantine
from .sources import IMAGE_MAGIC, SourceRef, check_name_matches_content, read_source
from .writing import Staging, write_dicom

__all__ = ["Context", "ingest_file", "relative_png"]


@dataclass(frozen=True)
class Context:
    keyring: Keyring
    options: IngestOptions
    out: Path
    done: frozenset[str]


def relative_png(patient: str, key_hash: str, frame: int) -> str:
    return f"images/{patient}/{key_hash[:16]}-f{frame:04d}.png"


def _row(path: str, label: str, patient: str, source: str, key_hash: str, frame: int,
         study: str = "", series: str = "", spacing: tuple[float, float] | None = None,
         text_boxes: int = 0) -> dict[str, str]:
    return {"path": path, "label": label, "patient_id": patient, "split": "",
            "x0": "", "y0": "", "x1": "", "y1": "", "source": source,
            "study_id": study, "series_id": series, "frame": str(frame),
            "pixel_spacing_mm_x": f"{spacing[0]:.6g}" if spacing else "",
            "pixel_spacing_mm_y": f"{spacing[1]:.6g}" if spacing else "",
            "text_boxes_redacted": str(text_boxes), "source_key_hash": key_hash}


def _check_native_length(ds, info) -> None:
    """For uncompressed pixel data the byte count must match the header exactly (one
    padding byte allowed): a mismatch means Rows/Columns/frames lie about the pixels."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None and syntax.is_compressed:
        return
    try:
        actual = len(ds.PixelData)
    except Exception:
        raise Quarantine("bad-header", "pixel data cannot be read") from None
    pixels = info.rows * info.columns * info.frames
    if info.bits_allocated == 1:
        expected = (pixels * info.samples + 7) // 8
    elif info.photometric == "YBR_FULL_422":
        expected = pixels * 2 * (info.bits_allocated // 8)
    else:
        expected = pixels * info.samples * (info.bits_allocated // 8)
    if not expected <= actual <= expected + 1:
        raise Quarantine("bad-header", f"pixel data length ({actual:,} bytes) disagrees with "
                                       f"Rows/Columns/frames ({expected:,} bytes expected)")


def _clean(frame: np.ndarray, regions: list, area, policy: str):
    """One frame through the clean-frame rule under the text policy."""
    from ..frame import clean_pixels

    clean = clean_pixels(frame, regions=regions, area=area, redact_text=policy != "off")
    if policy == "quarantine" and clean.text_boxes_redacted:
        raise Quarantine("burned-in-text", f"burned-in text inside the image area "
                                           f"({clean.text_boxes_redacted} box(es)); "
                                           "--text-policy redact would blank it")
    return clean


def _ingest_dicom(data: bytes, key_hash: str, label: str, ctx: Context,
                  staging: Staging) -> list[dict[str, str]]:
    from ..region import find_image_area
    from .deidentify import deidentify_dataset, identity_of
    from .pixels import ultrasound_regions

    opts = ctx.options
    try:
        ds = read_dataset(data, max_bytes=opts.max_decoded_bytes)
    except InputError as exc:
        raise Quarantine("unreadable", str(exc)) from None
    try:
        info = frame_info(ds, max_bytes=opts.max_decoded_bytes)
    except InputError as exc:
        raise Quarantine("bad-header", str(exc)) from None
    _check_native_length(ds, info)
    regions, problems = ultrasound_regions(ds, info.rows, info.columns)
    if not regions and not opts.detect_region:
        raise Quarantine("no-region", "no usable ultrasound region (" + "; ".join(problems) +
                         "); rerun with --detect-region to find it from the pixels")
    identity = identity_of(ds, ctx.keyring, fallback=key_hash)
    indices = select_frames(info.frames, opts.frames)
    try:
        frames = list(decode_frames(ds, info, indices))
    except InputError as exc:
        raise Quarantine("undecodable", str(exc)) from None
    area = None
    if not regions:
        # The scanner's layout is fixed through a cine: find the area once, on the
        # per-pixel maximum of the kept frames (it shows the whole area ever used).
        stack = np.max(np.stack([f for _, f in frames]), axis=0)
        try:
            area = find_image_area(stack)
        except InputError:
            raise Quarantine("no-region", "no usable ultrasound region, and none found in "
                                          "the pixels (only text, bands or a blank "
                                          "screen)") from None
    native = _native_frames(ds, info, indices) if opts.keep_dicom else None
    rows, blanked_frames = [], []
    for index, frame in frames:
        clean = _clean(frame, regions, area, opts.text_policy)
        if native is not None:
            blanked_frames.append(_blank_native(native[index], clean.kept, info.photometric))
        elif opts.keep_dicom:
            blanked_frames.append(clean.blanked)
        path = relative_png(identity.patient_id, key_hash, index)
        staging.png(clean.pixels, ctx.out / path)
        rows.append(_row(path, label, identity.patient_id, "dicom", key_hash, index,
                         identity.study_id, identity.series_id, clean.pixel_spacing_mm,
                         clean.text_boxes_redacted))
    if opts.keep_dicom:
        deidentify_dataset(ds, ctx.keyring, identity)
        write_dicom(ds, blanked_frames, info, indices,
                    ctx.out / f"dicom/{identity.patient_id}/{key_hash[:16]}.dcm", staging,
                    pixels_checked=opts.text_policy != "off", native=native is not None)
    return rows


def _native_frames(ds, info, indices: list[int]) -> dict[int, np.ndarray] | None:
    """The stored values of grey frames deeper than 8 bits (CT, MR, DX: the IOD fixes
    their depth, and rescale and window describe them), for the kept DICOM; None for
    8-bit and colour frames, which are written as displayed."""
    if info.samples != 1 or info.bits_allocated <= 8 or \
            info.photometric not in ("MONOCHROME1", "MONOCHROME2"):
        return None
    from pydicom.pixels import iter_pixels

    try:
        return dict(zip(indices, iter_pixels(ds, indices=indices)))
    except Exception:  # decoded once already as display pixels: fall back to those
        return None


def _blank_native(stored: np.ndarray, kept: np.ndarray, photometric: str) -> np.ndarray:
    """Stored values with everything the clean-frame rule blanked set to the frame's
    darkest value (its lowest for MONOCHROME2, its highest for MONOCHROME1)."""
    out = stored.copy()
    out[~kept] = stored.max() if photometric == "MONOCHROME1" else stored.min()
    return out


def _ingest_image(data: bytes, key_hash: str, label: str, ctx: Context,
                  staging: Staging) -> list[dict[str, str]]:
    """A JPEG/PNG screenshot of a scanner: no tags, so the area is found in the pixels."""
    try:
        pixels = load_rgb(data, name="image")
    except InputError as exc:
        raise Quarantine("unreadable", str(exc).removeprefix("image: ")) from None
    try:
        clean = _clean(pixels, [], None, ctx.options.text_policy)
    except InputError:
        raise Quarantine("no-region", "no image area found in the pixels (only text, "
                                      "bands or a blank screen)") from None
    patient = ctx.keyring.pseudonym(f"image:{key_hash}")
    path = relative_png(patient, key_hash, 0)
    staging.png(clean.pixels, ctx.out / path)
    return [_row(path, label, patient, "image", key_hash, 0,
                 text_boxes=clean.text_boxes_redacted)]


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


def ingest_file(ref: SourceRef, ctx: Context) -> FileResult:
    """Ingest one source; never raises for a bad file (it returns a quarantine record)."""
    with _quiet_pydicom():
        return _ingest_file(ref, ctx)


def _ingest_file(ref: SourceRef, ctx: Context) -> FileResult:
    key_hash = ""
    staging = Staging()
    try:
        data = read_source(ref, ctx.options.max_file_bytes)
        key_hash = ctx.keyring.source_hash(data)
        if key_hash in ctx.done:
            return FileResult(key_hash, "skipped")
        check_name_matches_content(ref, data)
        if looks_like_dicom(data):
            rows = _ingest_dicom(data, key_hash, ref.label, ctx, staging)
        elif data.startswith(IMAGE_MAGIC):
            rows = _ingest_image(data, key_hash, ref.label, ctx, staging)
        else:
            raise Quarantine("not-an-image", "not a DICOM or image file")
        staging.commit()
        return FileResult(key_hash, "done", rows=rows)
    except Quarantine as q:
        return FileResult(key_hash, "quarantined", q.code, q.reason)
    except EutiradsError as exc:
        return FileResult(key_hash, "quarantined", "failed", str(exc).splitlines()[0][:200])
    except MemoryError:
        return FileResult(key_hash, "quarantined", "too-large", "not enough memory to process it")
    except RecursionError:
        return FileResult(key_hash, "quarantined", "unreadable", "structure nested too deeply")
    except Exception as exc:  # one bad file never stops the batch; the type says enough
        return FileResult(key_hash, "quarantined", "failed",
                          f"unexpected {type(exc).__name__} while processing")
    finally:
        staging.discard()  # after a commit: nothing left; after a failure: the partial outputs
