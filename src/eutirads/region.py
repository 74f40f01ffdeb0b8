"""Find the ultrasound image area in a frame from its pixels alone.

A scanner's screen shows the B-mode image as one large textured block on a dark
background, with thin text, scales and markers around it. The finder keeps pixels that
are not background, removes structures thinner than `min_size` (text, scale bars,
markers) with a morphological opening, and returns the bounding box of the largest
remaining block, joined with the pane beside it on dual-view screens. Ingest (files
without usable ultrasound regions), training (the scanner's frame is cropped away before
resizing) and the diagnosis page all use it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage

from .errors import InputError

__all__ = ["Box", "find_image_area", "crop"]


class Box(NamedTuple):
    """Pixel box, x1 and y1 exclusive."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


def _gray(pixels: np.ndarray) -> np.ndarray:
    if pixels.ndim == 3:
        return pixels[..., :3].astype(np.float32).mean(axis=2)
    if pixels.ndim == 2:
        return pixels.astype(np.float32)
    raise InputError(f"expected a 2-D or 3-D pixel array, got shape {pixels.shape}")


def find_image_area(pixels: np.ndarray, *, background: float = 12.0,
                    min_size: int | None = None, min_fraction: float = 0.05) -> Box:
    """Bounding box of the ultrasound image area in an HxW or HxWxC frame.

    `background` is the grey level at or under which a pixel counts as screen background.
    `min_size` is the opening's size in pixels (default: 1/12 of the shorter side);
    anything thinner is not image. Raises InputError when no block covers at least
    `min_fraction` of the frame.
    """
    gray = _gray(pixels)
    height, width = gray.shape
    if height < 16 or width < 16:
        raise InputError(f"frame too small to hold an image area ({width}x{height})")
    # Odd, so the square has a centre and the opening shifts nothing.
    size = (min_size or max(8, min(height, width) // 12)) | 1
    # Speckle has dark pixels inside bright texture: smooth first so the image area is one
    # solid block, while thin bright text on black stays thin.
    smooth = ndimage.uniform_filter(gray, size=5)
    mask = smooth > background
    # Opening with a square = a running minimum then a running maximum, each separable
    # into two 1-D passes: linear in the pixel count whatever the square's size (a 2-D
    # binary_opening costs size^2 per pixel).
    mask = ndimage.minimum_filter(mask.view(np.uint8), size=size, mode="constant", cval=0)
    mask = ndimage.maximum_filter(mask, size=size, mode="constant", cval=0).astype(bool)
    labels, count = ndimage.label(mask)
    if count == 0:
        raise InputError("no image area found (the frame is blank or only text)")
    areas = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
    best = int(np.argmax(areas)) + 1
    if areas[best - 1] < min_fraction * height * width:
        raise InputError("no image area found (largest block is too small)")
    chosen = _panes(labels, areas, best)
    # The smoothing widened the blocks by a few pixels: take the box of the raw
    # non-background pixels inside them.
    blocks = np.isin(labels, chosen)
    inside = blocks & (gray > background)
    ys, xs = np.nonzero(inside if inside.any() else blocks)
    return Box(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def _panes(labels: np.ndarray, areas: np.ndarray, best: int) -> list[int]:
    """The largest block and the blocks beside it: a dual-view screen shows two image
    panes side by side, split by a dark gap. A block counts as a pane when it holds at
    least a third of the largest block's area and shares most of its rows."""
    slices = ndimage.find_objects(labels)
    top, bottom = slices[best - 1][0].start, slices[best - 1][0].stop
    chosen = [best]
    for label, area in enumerate(areas, 1):
        if label == best or area < areas[best - 1] / 3:
            continue
        rows = slices[label - 1][0]
        shared = min(bottom, rows.stop) - max(top, rows.start)
        if shared >= 0.6 * min(bottom - top, rows.stop - rows.start):
            chosen.append(label)
    return chosen


def crop(pixels: np.ndarray, box: Box) -> np.ndarray:
    """The part of `pixels` inside `box`, clamped to the frame."""
    height, width = pixels.shape[:2]
    x0, y0 = max(0, box.x0), max(0, box.y0)
    x1, y1 = min(width, box.x1), min(height, box.y1)
    if x1 <= x0 or y1 <= y0:
        raise InputError(f"box {tuple(box)} lies outside the {width}x{height} frame")
    return pixels[y0:y1, x0:x1]
