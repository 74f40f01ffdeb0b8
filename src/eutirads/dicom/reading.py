"""Reading DICOM files safely and decoding their frames to 8-bit display pixels.

The declared decoded size (rows x columns x frames x samples x bytes per sample) is checked
against a limit before any pixel is decoded, so a small compressed file that claims
millions of frames costs nothing. Decoding uses pydicom 3's pixel backends (pylibjpeg for
JPEG, JPEG-LS, JPEG 2000 and RLE; python-gdcm as a fallback), which cover every common
transfer syntax; colour handling uses pydicom's own conversions.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..errors import ImageDecodeError

__all__ = ["DEFAULT_MAX_DECODED_BYTES", "FrameInfo", "read_dataset", "frame_info",
           "select_frames", "decode_frames", "looks_like_dicom"]

# 1 GiB: a 10-minute 30 fps cine at 640x480 grey, far more than one exam file needs.
DEFAULT_MAX_DECODED_BYTES = 1 << 30

# Ultrasound objects nest sequences 3-4 levels deep; SR trees rarely pass 10. Deeper
# nesting is refused: it is either an attack on the parser or not an image we want.
MAX_SEQUENCE_DEPTH = 16

_SUPPORTED_PHOTOMETRIC = {"MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422",
                          "PALETTE COLOR", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420"}


def looks_like_dicom(data: bytes) -> bool:
    """A Part 10 file ('DICM' after the preamble) or a bare dataset starting with a
    group 0002/0008 element (some old exports have no preamble)."""
    if data[128:132] == b"DICM":
        return True
    return len(data) >= 8 and data[:2] in (b"\x02\x00", b"\x08\x00") and data[3:4] == b"\x00"


_DEFLATED = b"1.2.840.10008.1.2.1.99"


def _check_deflate(data: bytes, max_bytes: int) -> None:
    """A deflated dataset is inflated whole by pydicom before anything can be checked: a
    few kilobytes could inflate to gigabytes. Inflate it once here, bounded, first."""
    if data[128:132] != b"DICM" or _DEFLATED not in data[132:1024]:
        return
    try:
        if data[132:136] != b"\x02\x00\x00\x00":
            raise ValueError
        meta_end = 144 + struct.unpack("<I", data[140:144])[0]  # (0002,0000) group length
        inflated = zlib.decompressobj(-zlib.MAX_WBITS).decompress(data[meta_end:],
                                                                  max_bytes + 1)
    except (ValueError, struct.error, zlib.error):
        raise ImageDecodeError("deflated DICOM that cannot be inflated") from None
    if len(inflated) > max_bytes:
        raise ImageDecodeError(f"deflated dataset inflates beyond the limit of {max_bytes:,} bytes")


def read_dataset(data: bytes, *, max_bytes: int = DEFAULT_MAX_DECODED_BYTES):
    """Parse a DICOM file held in memory (pixel data not decoded). Raises ImageDecodeError
    with a one-line reason."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    if not looks_like_dicom(data):
        raise ImageDecodeError("not a DICOM file")
    _check_deflate(data, max_bytes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about every oddity it repairs
            ds = pydicom.dcmread(io.BytesIO(data), force=data[128:132] != b"DICM")
            # Walking every element decodes each value now, so a malformed one fails here
            # with a clear reason rather than halfway through de-identification.
            depth = sequence_depth(ds, MAX_SEQUENCE_DEPTH)
    except InvalidDicomError:
        raise ImageDecodeError("not a DICOM file") from None
    except RecursionError:
        raise ImageDecodeError("sequences nested too deeply to read") from None
    except (EOFError, OSError, ValueError, KeyError, TypeError, NotImplementedError,
            OverflowError, IndexError, struct.error) as exc:
        raise ImageDecodeError(f"truncated or corrupt DICOM ({type(exc).__name__})") from None
    if depth > MAX_SEQUENCE_DEPTH:
        raise ImageDecodeError(f"sequences nested deeper than {MAX_SEQUENCE_DEPTH} levels")
    return ds


def sequence_depth(ds, limit: int) -> int:
    """How deep sequences nest in `ds`, counting up to `limit + 1` (no recursion, so a
    hostile file cannot exhaust the stack here)."""
    deepest = 0
    stack = [(ds, 0)]
    while stack:
        dataset, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            break
        for elem in dataset:
            if elem.VR == "SQ":
                stack.extend((item, depth + 1) for item in elem.value)
    return deepest


@dataclass(frozen=True)
class FrameInfo:
    rows: int
    columns: int
    frames: int
    samples: int
    bits_allocated: int
    photometric: str

    @property
    def decoded_bytes(self) -> int:
        return (self.rows * self.columns * self.frames * self.samples *
                max(1, (self.bits_allocated + 7) // 8))


def _int(ds, keyword: str, default: int | None = None) -> int:
    try:
        value = ds.get(keyword, None)
        if value is None or str(value).strip() == "":
            if default is None:
                raise ImageDecodeError(f"missing {keyword}")
            return default
        return int(value)
    except (TypeError, ValueError):
        raise ImageDecodeError(f"{keyword} is not a number") from None


def frame_info(ds, *, max_bytes: int = DEFAULT_MAX_DECODED_BYTES) -> FrameInfo:
    """The image geometry the header declares, checked for sanity and against `max_bytes`."""
    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise ImageDecodeError("float pixel data is not an ultrasound image")
        raise ImageDecodeError("no pixel data (a truncated file, or not an image object)")
    info = FrameInfo(rows=_int(ds, "Rows"), columns=_int(ds, "Columns"),
                     frames=_int(ds, "NumberOfFrames", 1) or 1,
                     samples=_int(ds, "SamplesPerPixel", 1),
                     bits_allocated=_int(ds, "BitsAllocated"),
                     photometric=str(ds.get("PhotometricInterpretation", "")).strip().upper())
    if info.rows <= 0 or info.columns <= 0 or info.frames <= 0:
        raise ImageDecodeError(f"empty image ({info.columns}x{info.rows}, {info.frames} frames)")
    if info.samples not in (1, 3) or info.bits_allocated not in (1, 8, 16, 32):
        raise ImageDecodeError(f"unsupported pixel layout ({info.samples} samples, "
                               f"{info.bits_allocated} bits)")
    if info.photometric not in _SUPPORTED_PHOTOMETRIC:
        raise ImageDecodeError("unsupported photometric interpretation")
    if info.decoded_bytes > max_bytes:
        raise ImageDecodeError(f"declared image too large ({info.columns}x{info.rows} x "
                               f"{info.frames} frames = {info.decoded_bytes:,} bytes decoded; "
                               f"limit {max_bytes:,})")
    return info


def select_frames(count: int, frames: str | int) -> list[int]:
    """Frame indices to keep: 'all', 'first', or every Nth frame (N >= 1)."""
    if frames == "all":
        return list(range(count))
    if frames == "first":
        return [0]
    step = int(frames)
    if step < 1:
        raise ValueError("frame step must be at least 1")
    return list(range(0, count, step))


def _palette_is_16_bit(ds, bits_stored: int) -> bool:
    """Whether the colour table's entries use 16 bits. Decided on the whole table, not on a
    frame (a dark frame would look 8-bit), and on its values, not its descriptor: some
    scanners declare 16-bit entries that hold 8-bit values."""
    from pydicom.pixels import apply_color_lut

    every_index = np.arange(2 ** min(bits_stored, 16), dtype=np.uint16 if bits_stored > 8
                            else np.uint8)
    return int(apply_color_lut(every_index, ds).max(initial=0)) > 255


def _to_uint8(array: np.ndarray, ds, info: FrameInfo) -> np.ndarray:
    """Display pixels: 8-bit grey (HxW) or RGB (HxWx3)."""
    from pydicom.pixels import apply_color_lut, apply_voi_lut

    stored = int(ds.get("BitsStored", info.bits_allocated) or info.bits_allocated)
    if info.photometric == "PALETTE COLOR":
        sixteen = _palette_is_16_bit(ds, stored)
        array = apply_color_lut(array, ds)
        return (array >> 8 if sixteen else array).astype(np.uint8)
    if info.samples == 3:
        # Colour with more than 8 bits per sample keeps its top 8 bits.
        if array.dtype == np.uint8:
            return array
        return (array.astype(np.uint32) >> max(stored - 8, 0)).clip(0, 255).astype(np.uint8)
    if array.dtype == np.uint8:
        grey = array  # 8-bit ultrasound: the stored values are the display values
    else:
        # More than 8 bits: the window if the file gives one, then the frame's own range
        # stretched to 0-255.
        windowed = "WindowCenter" in ds and "WindowWidth" in ds
        values = (apply_voi_lut(array, ds) if windowed else array).astype(np.float32)
        low, high = float(values.min()), float(values.max())
        grey = ((values - low) / max(high - low, 1.0) * 255).round().astype(np.uint8)
    return 255 - grey if info.photometric == "MONOCHROME1" else grey


def decode_frames(ds, info: FrameInfo, indices: list[int]) -> Iterator[tuple[int, np.ndarray]]:
    """Decode the chosen frames one at a time (only those frames: a cine's other frames are
    never decompressed) as (index, uint8 array). YBR is converted to RGB by pydicom."""
    from pydicom.pixels import iter_pixels

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for index, array in zip(indices, iter_pixels(ds, indices=indices)):
                if array.shape[:2] != (info.rows, info.columns):
                    raise ImageDecodeError("decoded frame size disagrees with Rows/Columns")
                yield index, _to_uint8(array, ds, info)
    except ImageDecodeError:
        raise
    except MemoryError:
        raise ImageDecodeError("not enough memory to decode the pixel data") from None
    except Exception as exc:  # every decoder plugin raises its own types
        # pydicom lists each plugin's complaint on its own line: keep them, on one line.
        reason = " ".join(str(exc).split())[:240] if str(exc) else type(exc).__name__
        raise ImageDecodeError(f"pixel data cannot be decoded ({_scrub(reason)})") from None


def _scrub(text: str) -> str:
    """Decoder messages name sizes and syntaxes, never tag values; strip paths anyway."""
    return "".join(ch if ch.isprintable() else " " for ch in text).replace("/", " ")
