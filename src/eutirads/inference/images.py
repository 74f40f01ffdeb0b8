"""Open what a user hands to `predict`: PNG/JPEG through the safe decoder, or an
ultrasound DICOM file (its first frame, blanked outside the ultrasound regions so that
burned-in patient text never reaches the model or a heatmap overlay). numpy, Pillow and
pydicom only."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import EutiradsError, ImageDecodeError
from ..imageio import load_rgb

__all__ = ["load_image", "load_image_and_spacing"]


def _is_dicom(path: Path) -> bool:
    from ..dicom.reading import looks_like_dicom

    try:
        with path.open("rb") as handle:
            head = handle.read(132)
    except OSError:
        return False  # load_rgb gives the one-line reason (missing, a folder, ...)
    return looks_like_dicom(head)


def _load_dicom(path: Path) -> tuple[np.ndarray, tuple[float, float] | None]:
    from ..dicom.pixels import clean_frame, spacing_of, ultrasound_regions
    from ..dicom.reading import decode_frames, frame_info, read_dataset

    try:
        ds = read_dataset(path.read_bytes())
        info = frame_info(ds)
        _, frame = next(decode_frames(ds, info, [0]))
        regions, _ = ultrasound_regions(ds, info.rows, info.columns)
    except EutiradsError as exc:
        # The DICOM reader's reasons never carry tag values; name our path and the reason.
        raise ImageDecodeError(f"{path}: {exc}") from None
    if regions:
        # The full frame, blanked outside the regions: a box in the frame's pixels still fits.
        frame, _ = clean_frame(frame, regions)
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=2)
    return np.ascontiguousarray(frame[..., :3]), spacing_of(regions) if regions else None


def load_image_and_spacing(path: str | os.PathLike[str]
                           ) -> tuple[np.ndarray, tuple[float, float] | None]:
    """(HxWx3 uint8 pixels, (x, y) pixel size in mm or None): a DICOM file's ultrasound
    region spacing (the largest region declaring one); None for PNG/JPEG."""
    path = Path(path)
    if _is_dicom(path):
        return _load_dicom(path)
    return load_rgb(path, name=str(path)), None


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """HxWx3 uint8 pixels of an image file or of an ultrasound DICOM file's first frame."""
    return load_image_and_spacing(path)[0]
