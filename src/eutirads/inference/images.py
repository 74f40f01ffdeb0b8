"""Open what a user hands to `predict`: PNG/JPEG through the safe decoder, or an
ultrasound DICOM file's first frame, through the one clean-frame rule
(`eutirads.frame.clean_frame`): everything outside the ultrasound image area is blanked,
so burned-in patient text never reaches the model or a heatmap overlay. The frame keeps
its size, so a box given in the source's pixels still fits. No OCR here: the model's
input at prediction time is the image area as it is (fast, and the same as the static
page computes). A source without an image area raises NoImageAreaError, which `predict`
reports as an abstention."""

from __future__ import annotations

import os

import numpy as np

from ..frame import clean_frame

__all__ = ["load_image", "load_image_and_spacing"]


def load_image_and_spacing(path: str | os.PathLike[str]
                           ) -> tuple[np.ndarray, tuple[float, float] | None]:
    """(HxWx3 uint8 pixels zero outside the ultrasound image area, (x, y) pixel size in mm
    or None): a DICOM file's ultrasound region spacing; None for PNG/JPEG."""
    frame = clean_frame(path, name=str(path))
    pixels = frame.blanked
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    return np.ascontiguousarray(pixels[..., :3]), frame.pixel_spacing_mm


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """HxWx3 uint8 pixels of an image file or of an ultrasound DICOM file's first frame,
    zero outside the ultrasound image area."""
    return load_image_and_spacing(path)[0]
