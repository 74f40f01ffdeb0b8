"""Sample uploads for the diagnosis tests, built in memory (no patient data, no files)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def ultrasound_like(width: int = 160, height: int = 120, seed: int = 0) -> np.ndarray:
    """A grey speckle block on a black screen with a dark oval 'nodule': HxWx3 uint8."""
    rng = np.random.default_rng(seed)
    frame = np.zeros((height, width, 3), np.uint8)
    block = rng.integers(60, 200, (height - 20, width - 20), dtype=np.uint8)
    yy, xx = np.mgrid[0:height - 20, 0:width - 20]
    inside = ((xx - (width - 20) / 2) / (width / 6)) ** 2 + ((yy - (height - 20) / 2) / (height / 6)) ** 2 < 1
    block[inside] //= 3
    frame[10:-10, 10:-10] = block[..., None]
    return frame


def png_bytes(pixels: np.ndarray | None = None, **save) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(ultrasound_like() if pixels is None else pixels).save(buffer, "PNG", **save)
    return buffer.getvalue()


def jpeg_bytes(pixels: np.ndarray | None = None, **save) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(ultrasound_like() if pixels is None else pixels).save(buffer, "JPEG", quality=90, **save)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header declares a huge image (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def png_with_text(text: bytes) -> bytes:
    """A valid PNG with a tEXt chunk inserted before IEND."""
    data = png_bytes()
    return data[:-12] + _chunk(b"tEXt", b"Comment\x00" + text) + data[-12:]


def animated_png() -> bytes:
    frames = [Image.fromarray(ultrasound_like(seed=s)) for s in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "PNG", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def gif_animation() -> bytes:
    frames = [Image.fromarray(ultrasound_like(seed=s)).convert("P") for s in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def zip_bytes() -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("payload.html", "<html><script>alert(1)</script></html>")
    return buffer.getvalue()


def dicom_bytes(*, frames: int = 1, spacing_cm: float | None = 0.01, rgb: bool = False,
                truncate: int | None = None, declared: tuple[int, int] | None = None) -> bytes:
    """A small ultrasound DICOM in memory (explicit VR little endian, fictitious values)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    pixels = ultrasound_like(200, 150)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.6.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = "Fictitious^Test"
    ds.PatientID = "TEST-0000"
    ds.Modality = "US"
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    if rgb:
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        array = np.repeat(pixels[None], frames, axis=0) if frames > 1 else pixels
    else:
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        gray = pixels[..., 0]
        array = np.repeat(gray[None], frames, axis=0) if frames > 1 else gray
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = np.ascontiguousarray(array).tobytes()
    if declared:  # a header claiming a huge image over small pixel data (a bomb)
        ds.Rows, ds.Columns = declared
    if spacing_cm is not None:
        region = Dataset()
        region.RegionSpatialFormat = 1
        region.RegionLocationMinX0, region.RegionLocationMinY0 = 10, 10
        region.RegionLocationMaxX1, region.RegionLocationMaxY1 = 189, 139
        region.PhysicalUnitsXDirection = region.PhysicalUnitsYDirection = 3
        region.PhysicalDeltaX = region.PhysicalDeltaY = spacing_cm
        ds.SequenceOfUltrasoundRegions = [region]
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    return data[:truncate] if truncate else data


def checkerboard(width: int = 320, height: int = 240, square: int = 20) -> np.ndarray:
    """Black and white squares: a picture that is no ultrasound image (HxWx3 uint8)."""
    yy, xx = np.mgrid[0:height, 0:width]
    board = (((yy // square) + (xx // square)) % 2 * 255).astype(np.uint8)
    return np.repeat(board[..., None], 3, axis=2)
