"""Writing one source's outputs all together or not at all.

`Staging` writes every output of a source (its PNG frames, its de-identified DICOM)
under a temporary name in its final folder; `commit` renames them all into place, and
any failure before that (`discard`) deletes them, so a source that fails leaves nothing
behind, not even a PNG without a manifest row. A kill between the renames and the
journal line leaves whole files that the rerun rewrites (same names, same bytes), and
temporary files a kill leaves are swept at the next run (`sweep_temporary`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

__all__ = ["Staging", "write_dicom", "sweep_temporary", "TEMP_SUFFIX"]

TEMP_SUFFIX = ".tmp"

# Colour tables, compression notes and value ranges describe the source's pixels, not
# the cleaned 8-bit ones written instead (frames kept at their native depth keep their
# rescale, window and LUTs: _NATIVE_KEEPS).
_NATIVE_KEEPS = frozenset({"WindowCenter", "WindowWidth", "VOILUTSequence",
                           "ModalityLUTSequence", "RescaleIntercept", "RescaleSlope",
                           "PixelPaddingValue"})
_PIXEL_DESCRIPTION = (
    "RedPaletteColorLookupTableDescriptor", "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor", "RedPaletteColorLookupTableData",
    "GreenPaletteColorLookupTableData", "BluePaletteColorLookupTableData",
    "SegmentedRedPaletteColorLookupTableData", "SegmentedGreenPaletteColorLookupTableData",
    "SegmentedBluePaletteColorLookupTableData", "PaletteColorLookupTableUID",
    "PlanarConfiguration", "NumberOfFrames", "FrameTimeVector", "SmallestImagePixelValue",
    "LargestImagePixelValue", "WindowCenter", "WindowWidth", "VOILUTSequence",
    "ModalityLUTSequence", "RescaleIntercept", "RescaleSlope", "ICCProfile",
    "PixelPaddingValue")


class Staging:
    """The outputs of one source, written under temporary names until `commit`."""

    def __init__(self) -> None:
        self._pending: list[tuple[str, Path]] = []

    def write(self, path: Path, write: Callable[[Path], object]) -> None:
        """Write `path` through `write(temporary_path)`; visible only after commit. The
        temporary name is unique, so two workers writing the same output (the same bytes
        found under two names) never trip over each other's file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=TEMP_SUFFIX,
                                    dir=path.parent)
        os.close(fd)
        self._pending.append((name, path))
        write(Path(name))

    def png(self, pixels: np.ndarray, path: Path) -> None:
        image = Image.fromarray(np.ascontiguousarray(pixels))
        # zlib level 3: files as small as the default level 6 gives on ultrasound frames
        # (speckle does not compress further), in less than half the time.
        self.write(path, lambda tmp: image.save(tmp, format="PNG", compress_level=3))

    def commit(self) -> None:
        for name, path in self._pending:
            os.replace(name, path)
        self._pending.clear()

    def discard(self) -> None:
        for name, _ in self._pending:
            Path(name).unlink(missing_ok=True)
        self._pending.clear()


def sweep_temporary(out: Path) -> int:
    """Delete the temporary files a killed run left in the dataset's output folders."""
    removed = 0
    for folder in (out / "images", out / "dicom"):
        if not folder.is_dir():
            continue
        for path in folder.rglob(f".*{TEMP_SUFFIX}"):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def write_dicom(ds, frames: list[np.ndarray], info, indices: list[int], path: Path,
                staging: Staging, *, pixels_checked: bool, native: bool = False) -> None:
    """Stage the de-identified dataset with the cleaned frames, uncompressed.

    `pixels_checked` says whether burned-in text inside the area was looked for: only
    then are BurnedInAnnotation NO and the Clean Pixel Data code written. `native`: the
    frames are grey stored values at the source's depth, not 8-bit display pixels."""
    from pydicom import dcmwrite
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    from .deidentify import mark_pixels_cleaned

    bits_stored = int(ds.get("BitsStored", 8) or 8) if native else 8
    for keyword in _PIXEL_DESCRIPTION:
        if keyword in ds and not (native and keyword in _NATIVE_KEEPS):
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
    if native:
        photometric = info.photometric
    else:
        photometric = "RGB" if stack.ndim == 4 else "MONOCHROME2"
    ds.set_pixel_data(array, photometric, bits_stored, generate_instance_uid=False)
    if pixels_checked:
        mark_pixels_cleaned(ds)
    else:
        ds.BurnedInAnnotation = "YES"  # outside the area blanked, inside not checked
    ds.file_meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", "1.2.840.10008.5.1.4.1.1.6.1")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", "")
    # Big-endian sources are rewritten little endian: the transfer syntax we declare.
    staging.write(path, lambda tmp: dcmwrite(tmp, ds, enforce_file_format=True,
                                             implicit_vr=False, little_endian=True))
