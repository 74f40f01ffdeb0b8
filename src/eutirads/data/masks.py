"""Nodule masks: PNG files at their image's size, 0 = background, 255 = nodule.

The manifest's `mask` column names a row's mask relative to the dataset folder (empty =
unknown; a category-1 image may have an all-zero mask). Importers and the phantom write
masks with `save_mask`; `check_mask` says why a mask cannot be used (one line, naming both
files); `polygons_mask` draws outline polygons (DDTI) as one mask. Reading a row's mask:
`eutirads.data.manifest.load_mask`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..errors import EutiradsError, InputError
from ..imageio import DEFAULT_MAX_PIXELS, open_image

__all__ = ["MASKS_DIR", "MASK_COLUMN", "save_mask", "read_mask", "check_mask",
           "polygons_mask"]

MASKS_DIR = "masks"
MASK_COLUMN = "mask"


def save_mask(mask: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write a HxW mask (bool or any number, nonzero = nodule) as a 0/255 PNG, atomically.
    zlib level 1: masks compress to almost nothing at any level, and it is fast."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        Image.fromarray(np.where(np.asarray(mask) > 0, 255, 0).astype(np.uint8), "L").save(
            tmp, format="PNG", compress_level=1)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_mask(path: str | os.PathLike[str], *, name: str | None = None,
              image_size: tuple[int, int] | None = None, image_name: str | None = None,
              max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A mask file as a HxW bool array: grey level >= 128 is nodule (a resampled or
    anti-aliased 0/255 mask still reads right); a mask holding only 0 and 1 (a common
    label-map convention) reads 1 as nodule. Raises `InputError` (one line) when it cannot be
    decoded, is not at `image_size` (width, height), or is all nodule."""
    label = name or str(path)
    image = open_image(path, name=label, max_pixels=max_pixels, allow_multiframe=False)
    if image_size is not None and tuple(image.size) != tuple(image_size):
        raise InputError(f"mask {label} is {image.width}x{image.height} but its image "
                         f"{image_name or '?'} is {image_size[0]}x{image_size[1]}")
    grey = np.asarray(image.convert("L"))
    mask = grey >= 128 if grey.max() > 1 else grey > 0
    if mask.all():
        raise InputError(f"mask {label} is all white (every pixel nodule): not an outline")
    return mask


def check_mask(path: str | os.PathLike[str], *, image_size: tuple[int, int],
               name: str | None = None, image_name: str | None = None) -> str | None:
    """Why the mask file cannot be used with its image (one line), or None when it can."""
    try:
        read_mask(path, name=name, image_size=image_size, image_name=image_name)
    except EutiradsError as exc:
        return str(exc)
    return None


def polygons_mask(polygons: Iterable[Sequence[tuple[float, float]]], width: int,
                  height: int) -> np.ndarray:
    """The union of filled polygons (pixel coordinates, x right, y down) as a HxW bool
    mask; polygons with fewer than three points are ignored, parts outside are clipped."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for polygon in polygons:
        points = [(float(x), float(y)) for x, y in polygon]
        if len(points) >= 3:
            draw.polygon(points, fill=255, outline=255)
    return np.asarray(canvas) > 0
