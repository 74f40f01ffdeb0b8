"""Upload checking for the diagnosis page and API: pure functions, no Django.

Library code (moved out of `web/` so the CLI, benchmarks and any other server can use it).

An upload is untrusted bytes. `clean_upload` sniffs the real type from the bytes (never
from the name), refuses a name whose extension disagrees with the content, files over the
size limit, truncated files, decompression bombs, multi-frame or animated files and
polyglots (image bytes that also carry an HTML/script or ZIP payload, or data after the
image's end marker), then decodes with a pixel limit and RE-ENCODES the pixels as a fresh
PNG. Only that PNG and the pixel array are used afterwards; the upload's name is used for
the extension check only and never reaches a message, a log or a file name.

DICOM uploads are read with the ingest's code (`eutirads.dicom`): they keep nothing but
the pixels inside the ultrasound regions and the pixel spacing, so burned-in text around
the image is dropped and no header value is ever kept.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePath

import numpy as np
from PIL import Image

from ..errors import ImageDecodeError, InputError
from ..imageio import open_image
from ..region import Box, find_image_area

__all__ = [
    "DEFAULT_MAX_UPLOAD_BYTES",
    "DEFAULT_MAX_UPLOAD_PIXELS",
    "DEFAULT_MAX_ASPECT",
    "DEFAULT_MAX_DECODE_BYTES",
    "UploadLimits",
    "UploadError",
    "CleanImage",
    "sniff_type",
    "clean_upload",
    "encode_png",
]

# 20 MB: a single uncompressed ultrasound DICOM frame is a few MB; a video clip is refused anyway.
DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
# 8 megapixels: a scanner frame is under 2 MP (1920x1080 screens included); 49 MP PNGs of a
# few KB cost seconds of CPU and hundreds of MB each (issue 13).
DEFAULT_MAX_UPLOAD_PIXELS = 8_000_000
# Width/height (or height/width) at most 8: a dual-view screen is about 3:1; 16x60000 is no
# ultrasound frame.
DEFAULT_MAX_ASPECT = 8.0
# What the decoder may allocate for the decoded pixels (as the header declares them, before
# any is decoded) plus their RGB copy: 8 MP of 16-bit RGBA is 64 MB; 96 MB covers it.
DEFAULT_MAX_DECODE_BYTES = 96 * 1024 * 1024
# Bytes per pixel of Pillow's modes (unknown modes count 8: the worst of them).
_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "LA": 2, "PA": 2, "La": 2, "RGB": 3, "YCbCr": 3,
               "LAB": 3, "HSV": 3, "RGBA": 4, "RGBa": 4, "RGBX": 4, "CMYK": 4, "I": 4, "F": 4,
               "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}


@dataclass(frozen=True)
class UploadLimits:
    """What an upload may cost: bytes on the wire, pixels, aspect ratio and decoded bytes.
    The web app fills it from its settings (`EUTIRADS_MAX_UPLOAD_PIXELS`, ...)."""

    max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_pixels: int = DEFAULT_MAX_UPLOAD_PIXELS
    max_aspect: float = DEFAULT_MAX_ASPECT
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES

    def check_size(self, width: int, height: int, bytes_per_pixel: int = 3) -> None:
        """UploadError (400, with the reason) unless a width x height image fits."""
        if width * height > self.max_pixels:
            raise UploadError(f"image too large ({width}x{height} pixels; limit "
                              f"{self.max_pixels:,} pixels)")
        if width > 0 and height > 0 and max(width / height, height / width) > self.max_aspect:
            raise UploadError(f"unusual aspect ratio ({width}x{height} pixels; at most "
                              f"{self.max_aspect:g}:1 for an ultrasound frame)")
        # The decoded pixels plus their RGB copy.
        needed = width * height * (bytes_per_pixel + 3)
        if needed > self.max_decode_bytes:
            raise UploadError(f"image too large to decode ({width}x{height} pixels need "
                              f"{needed / 1e6:.0f} MB; limit "
                              f"{self.max_decode_bytes / 1e6:.0f} MB)")

EXTENSIONS: dict[str, tuple[str, ...]] = {
    "jpeg": (".jpg", ".jpeg", ".jpe", ".jfif"),
    "png": (".png",),
    "dicom": (".dcm", ".dicom", ".dic", ""),  # DICOM files often have no extension
}

# Signatures of markup or script: an image carrying one of these is a polyglot (it can be
# served or opened as a web page). Random compressed data holds a given 5+-byte sequence
# with negligible probability.
_ACTIVE_MARKERS: tuple[bytes, ...] = (
    b"<script", b"<html", b"<body", b"<iframe", b"<object", b"<embed", b"<svg", b"<?php",
    b"<!doctype html", b"javascript:")


def _has_active_content(data: bytes) -> bool:
    # Plain substring search on a lower-cased copy: ~50x faster than a case-insensitive
    # regex over a whole upload, and a browser parses no tag written with a space after '<'.
    lowered = data.lower()
    return any(marker in lowered for marker in _ACTIVE_MARKERS)


# Other formats we recognise only to name them in the refusal.
_OTHER_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "GIF"), (b"GIF89a", "GIF"), (b"BM", "BMP"), (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"), (b"%PDF", "PDF"), (b"PK\x03\x04", "ZIP"), (b"\x7fELF", "executable"),
    (b"MZ", "executable"),
)


class UploadError(ImageDecodeError):
    """An upload refused with a reason fit to show the user; `status` is the HTTP code."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class CleanImage:
    """A checked upload: its decoded RGB pixels only (the upload's bytes are dropped).

    `png` is a fresh encoding of those pixels, made on first use (the page shows it, the
    history may keep it); nothing of the original file survives into it.
    """

    pixels: np.ndarray  # HxWx3 uint8
    kind: str  # "jpeg" | "png" | "dicom"
    mm_per_pixel: float | None = None  # from the DICOM's pixel spacing, when it has one
    # Where the ultrasound image area lies (found once, on a reduced copy); None when
    # none was found, or for a DICOM (already cropped to its regions).
    area: Box | None = None
    _png: list = field(default_factory=list, repr=False, compare=False)

    @property
    def png(self) -> bytes:
        if not self._png:
            self._png.append(encode_png(self.pixels))
        return self._png[0]

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


def sniff_type(data: bytes) -> str:
    """"jpeg", "png" or "dicom" from the file's first bytes; UploadError (415) otherwise."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        raise UploadError("unsupported file type WebP; upload a JPEG, PNG or DICOM image", 415)
    for magic, name in _OTHER_SIGNATURES:
        if data.startswith(magic):
            raise UploadError(f"unsupported file type {name}; upload a JPEG, PNG or DICOM image",
                              415)
    if _has_active_content(data[:1024]):
        raise UploadError("not an image: the file is HTML or script", 415)
    raise UploadError("not an image: the content is not JPEG, PNG or DICOM", 415)


def _check_extension(filename: str | None, kind: str) -> None:
    if filename is None:
        return
    suffix = PurePath(filename).suffix.lower()
    if suffix in EXTENSIONS[kind]:
        return
    # Name the extension only when it is a plain short one: the rest of the name may identify
    # a patient and is never repeated.
    shown = suffix if re.fullmatch(r"\.[a-z0-9]{1,6}", suffix) else "the file's extension"
    raise UploadError(f"wrong extension: {shown} does not match the content "
                      f"({kind.upper()})", 415)


def _jpeg_end(data: bytes) -> int:
    """Offset just after the JPEG's end-of-image marker; UploadError if there is none.

    Walks the marker segments (each with a length) and, inside entropy-coded scans, skips
    byte stuffing (FF00) and restart markers (FFD0-FFD7), so an FFD9 inside a segment or an
    embedded thumbnail does not end the image early.
    """
    pos, n = 2, len(data)
    while pos < n:
        if data[pos] != 0xFF:
            raise UploadError("corrupt JPEG: bad marker structure")
        while pos < n and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            break
        marker = data[pos]
        pos += 1
        if marker == 0xD9:
            return pos
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            continue
        if pos + 2 > n:
            break
        length = int.from_bytes(data[pos:pos + 2], "big")
        if length < 2:
            raise UploadError("corrupt JPEG: bad segment length")
        pos += length
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next real marker
            while pos + 1 < n:
                if data[pos] == 0xFF and data[pos + 1] != 0x00 and not (
                        0xD0 <= data[pos + 1] <= 0xD7) and data[pos + 1] != 0xFF:
                    break
                pos += 1
            else:
                break
    raise UploadError("truncated JPEG: the end-of-image marker is missing")


def _png_end(data: bytes) -> tuple[int, bool]:
    """Offset just after the IEND chunk and whether the PNG is animated (APNG)."""
    pos, n, animated = 8, len(data), False
    while pos + 8 <= n:
        length = int.from_bytes(data[pos:pos + 4], "big")
        ctype = data[pos + 4:pos + 8]
        end = pos + 12 + length
        if end > n:
            break
        if ctype == b"acTL":
            animated = True
        if ctype == b"IEND":
            return end, animated
        pos = end
    raise UploadError("truncated PNG: the IEND chunk is missing")


def _check_polyglot(data: bytes, image_end: int | None) -> None:
    if image_end is not None and data[image_end:].strip(b"\x00\r\n\t "):
        raise UploadError(f"refused: {len(data) - image_end:,} bytes of extra data after the "
                          "image's end (possible polyglot file)")
    if _has_active_content(data):
        raise UploadError("refused: the file carries HTML or script (polyglot file)")
    try:
        is_zip = zipfile.is_zipfile(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - a failed check on hostile bytes is "not a zip"
        is_zip = False
    if is_zip:
        raise UploadError("refused: the file is also a ZIP archive (polyglot file)")


def _to_rgb8(image: Image.Image) -> np.ndarray:
    """HxWx3 uint8; 16-bit grey is scaled by its own range rather than clipped."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float32)
        return _scale_gray(values)
    # An RGB image is used as decoded: convert() would copy it once more.
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def _scale_gray(values: np.ndarray) -> np.ndarray:
    lo, hi = float(values.min()), float(values.max())
    scaled = np.zeros(values.shape, np.uint8) if hi <= lo else \
        ((values - lo) * (255.0 / (hi - lo))).round().astype(np.uint8)
    return np.repeat(scaled[..., None], 3, axis=2)


def encode_png(pixels: np.ndarray) -> bytes:
    """A fresh PNG with no metadata from an HxWx3/HxWx4 (or HxW) uint8 array.

    A grey image (R = G = B, as most ultrasound is) is stored as one channel: a third of
    the data to compress. Level 1: speckle barely compresses, so higher levels cost time
    for little size."""
    if pixels.ndim == 3 and pixels.shape[2] == 3 and \
            np.array_equal(pixels[..., 0], pixels[..., 1]) and \
            np.array_equal(pixels[..., 0], pixels[..., 2]):
        pixels = pixels[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _check_header(data: bytes, limits: UploadLimits) -> None:
    """Size, aspect and decoded bytes from the header alone (Pillow opens lazily)."""
    try:
        with Image.open(io.BytesIO(data)) as lazy:
            width, height = lazy.size
            mode = lazy.mode
    except Exception:  # noqa: BLE001 - open_image gives the precise reason below
        return
    limits.check_size(width, height, _MODE_BYTES.get(mode, 8))


def _decode_raster(data: bytes, kind: str, limits: UploadLimits) -> np.ndarray:
    _check_header(data, limits)
    try:
        image = open_image(data, max_pixels=limits.max_pixels, allow_multiframe=False,
                           name="upload")
    except UploadError:
        raise
    except ImageDecodeError as exc:
        message = str(exc).removeprefix("upload: ")
        raise UploadError(message) from None
    decoded = (image.format or "").lower()
    if decoded != kind:
        raise UploadError(f"the content decodes as {decoded.upper() or 'unknown'}, "
                          f"not {kind.upper()}", 415)
    return _to_rgb8(image)


def _decode_dicom(data: bytes, limits: UploadLimits) -> tuple[np.ndarray, float | None]:
    """Pixels and mm per pixel from a DICOM held in memory, with the ingest's own code.

    As in ingest: the header is parsed and its declared size checked before any pixel is
    decoded; everything outside the scanner's ultrasound regions (or, when it declares
    none, outside the image area found from the pixels) is blanked and cropped away, so
    burned-in names and dates around the image are gone. No other value leaves this
    function, so nothing identifying can be stored or shown.
    """
    from ..dicom.pixels import ultrasound_regions
    from ..dicom.reading import decode_frames, frame_info, read_dataset
    from ..frame import clean_pixels

    try:
        ds = read_dataset(data)
        info = frame_info(ds, max_bytes=limits.max_decode_bytes)
        if info.frames > 1:
            raise UploadError(f"multi-frame DICOM ({info.frames} frames); upload a single frame")
        limits.check_size(info.columns, info.rows, 6)
        regions, _problems = ultrasound_regions(ds, info.rows, info.columns)
        ((_, frame),) = decode_frames(ds, info, [0])
    except UploadError:
        raise
    except ImageDecodeError as exc:
        raise UploadError(f"DICOM refused: {exc}") from None
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=2)
    frame = np.ascontiguousarray(frame[..., :3], dtype=np.uint8)
    try:
        # The one clean-frame rule (eutirads.frame), as ingest and predict use it.
        clean = clean_pixels(frame, regions=regions)
    except InputError:
        raise UploadError("DICOM refused: no ultrasound region declared and no image "
                          "area found in the pixels") from None
    cropped, spacing = clean.pixels, clean.pixel_spacing_mm
    mm_per_pixel = None
    if spacing and abs(spacing[0] - spacing[1]) <= 0.05 * spacing[0]:
        mm_per_pixel = float(spacing[0])
    return np.ascontiguousarray(cropped), mm_per_pixel or _pixel_spacing(ds)


def _pixel_spacing(ds) -> float | None:
    """Millimetres per pixel from PixelSpacing, when square (ultrasound usually declares
    its regions' physical deltas instead)."""
    try:
        spacing = ds.get("PixelSpacing")
        if spacing and float(spacing[0]) > 0 and \
                abs(float(spacing[0]) - float(spacing[1])) <= 0.05 * float(spacing[0]):
            return float(spacing[0])
    except (TypeError, ValueError, IndexError):
        pass
    return None


def _blank_outside_area(pixels: np.ndarray) -> tuple[np.ndarray, Box | None]:
    """A screenshot through the one clean-frame rule (eutirads.frame): blank outside the
    ultrasound image area, same size (a box drawn on the upload still fits); the area is
    found once (at full resolution: a search on a reduced copy widened the box into the
    screen border, where names are burned in) and kept for the predictor. Without an area the pixels
    go on as they are and the prediction abstains (no-ultrasound-area)."""
    from ..frame import clean_pixels

    try:
        area = find_image_area(pixels)
        return clean_pixels(pixels, area=area).blanked, area
    except InputError:  # NoImageAreaError, or a frame the finder cannot read
        return pixels, None


def clean_upload(data: bytes, filename: str | None = None, *,
                 limits: UploadLimits | None = None, max_bytes: int | None = None,
                 max_pixels: int | None = None) -> CleanImage:
    """Check an upload and return its re-encoded pixels; UploadError with the reason if refused.

    `filename` is the name the client sent (used only to compare its extension with the
    content; never shown in full, logged or used as a path). `limits` bounds its cost
    (`max_bytes`/`max_pixels` override single fields of it).
    """
    limits = limits or UploadLimits()
    if max_bytes is not None or max_pixels is not None:
        limits = UploadLimits(max_bytes=max_bytes or limits.max_bytes,
                              max_pixels=max_pixels or limits.max_pixels,
                              max_aspect=limits.max_aspect,
                              max_decode_bytes=limits.max_decode_bytes)
    max_bytes = limits.max_bytes
    if len(data) > max_bytes:
        raise UploadError(f"upload too large ({len(data) / 1e6:.1f} MB; "
                          f"limit {max_bytes / 1e6:.1f} MB)", 413)
    if not data:
        raise UploadError("empty upload")
    kind = sniff_type(data)
    _check_extension(filename, kind)
    mm_per_pixel = None
    if kind == "jpeg":
        _check_polyglot(data, _jpeg_end(data))
        pixels = _decode_raster(data, kind, limits)
    elif kind == "png":
        end, animated = _png_end(data)
        if animated:
            raise UploadError("animated PNG; upload a single still image")
        _check_polyglot(data, end)
        pixels = _decode_raster(data, kind, limits)
    else:
        _check_polyglot(data, None)
        pixels, mm_per_pixel = _decode_dicom(data, limits)
    if pixels.shape[0] < 16 or pixels.shape[1] < 16:
        raise UploadError(f"image too small ({pixels.shape[1]}x{pixels.shape[0]} pixels)")
    area = None
    if kind != "dicom":
        pixels, area = _blank_outside_area(pixels)
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    return CleanImage(pixels=pixels, kind=kind, mm_per_pixel=mm_per_pixel, area=area)
