"""Find the ultrasound image area in a frame from its pixels alone.

A scanner's screen shows the B-mode image as one large textured block on a dark
background, with text, scales, markers and often a solid patient banner around it. The
finder keeps pixels that are not background, removes structures thinner than `min_size`
(text lines, scale bars, markers) with a morphological opening, and then judges each
remaining block: a candidate must be large enough, not a band (a banner is wide and
short), and speckled (ultrasound has a grain everywhere; a banner is a flat fill with
text strokes on it). The box of the largest block that passes, joined with the pane
beside it on dual-view screens, is the area; when no block passes, there is no area
(`NoImageAreaError`): a thin or text-like result is never returned. Ingest (files without
usable ultrasound regions, screenshots), `eutirads.frame.clean_frame` (every door that
turns a file into pixels) and training's frame crop all use it.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from .errors import InputError, NoImageAreaError

__all__ = ["Box", "find_image_area", "crop", "speckle_fraction"]

# A block narrower or shorter than this share of the frame is a band or a marker.
MIN_SIDE_FRACTION = 0.15
# Banners and scale bars are long and thin; an image area is at most this elongated.
MAX_ASPECT = 4.0
# Share of a block's lit pixels that must sit in grainy texture (local spread of at least
# _GRAIN grey levels). Speckle scores 0.8-1.0; flat banners with text 0.1-0.4.
MIN_SPECKLE = 0.6
_GRAIN = 3.0


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
    if pixels.ndim == 3 and pixels.dtype == np.uint8 and pixels.shape[2] >= 3:
        # The same float32 values as the mean of three float32 channels (their sum is an
        # exact integer, divided once), at a third of its cost.
        total = pixels[..., 0].astype(np.uint16)
        total += pixels[..., 1]
        total += pixels[..., 2]
        return np.divide(total, np.float32(3), dtype=np.float32)
    if pixels.ndim == 3:
        return pixels[..., :3].astype(np.float32).mean(axis=2)
    if pixels.ndim == 2:
        return pixels.astype(np.float32)
    raise InputError(f"expected a 2-D or 3-D pixel array, got shape {pixels.shape}")


def speckle_fraction(gray: np.ndarray, lit: np.ndarray) -> float:
    """Share of the `lit` pixels of a grey image whose 5x5 neighbourhood varies by at
    least a few grey levels: near 1 for ultrasound speckle, low for flat fills."""
    if not lit.any():
        return 0.0
    mean = ndimage.uniform_filter(gray, size=5)
    spread = np.sqrt(np.maximum(ndimage.uniform_filter(gray * gray, size=5) - mean * mean, 0))
    return float((spread[lit] >= _GRAIN).mean())


# The same frame's area is asked for again and again in one process (import checks a
# file, then writes it; training, the measured descriptors, evaluation and serving each
# crop it), at 15-20 ms a time on a 560x360 screen. The last answers are remembered,
# keyed by a digest of the pixels (under a millisecond): boxes and the reasons' text only,
# never pixels (nor an exception, whose traceback would keep the frame's arrays alive).
_MEMO_SIZE = 4096
_memo: OrderedDict[tuple, Box | str] = OrderedDict()
_memo_lock = threading.Lock()


def find_image_area(pixels: np.ndarray, *, background: float = 12.0,
                    min_size: int | None = None, min_fraction: float = 0.05) -> Box:
    """Bounding box of the ultrasound image area in an HxW or HxWxC frame.

    `background` is the grey level at or under which a pixel counts as screen background.
    `min_size` is the opening's size in pixels (default: 1/12 of the shorter side);
    anything thinner is not image. Raises NoImageAreaError (an InputError) when no block
    covers at least `min_fraction` of the frame and passes the size, shape and texture
    tests. The same pixels give the same answer, remembered (see _MEMO_SIZE).
    """
    pixels = np.ascontiguousarray(pixels)
    key = (hashlib.blake2b(pixels.data, digest_size=16).digest(), pixels.shape,
           pixels.dtype.str, background, min_size, min_fraction)
    with _memo_lock:
        found = _memo.get(key)
        if found is not None:
            _memo.move_to_end(key)
    if found is None:
        try:
            found = _find_image_area(pixels, background, min_size, min_fraction)
        except NoImageAreaError as exc:
            found = str(exc)
        with _memo_lock:
            _memo[key] = found
            while len(_memo) > _MEMO_SIZE:
                _memo.popitem(last=False)
    if isinstance(found, str):
        raise NoImageAreaError(found)
    return found


def _find_image_area(pixels: np.ndarray, background: float, min_size: int | None,
                     min_fraction: float) -> Box:
    gray = _gray(pixels)
    height, width = gray.shape
    if height < 16 or width < 16:
        raise NoImageAreaError(f"frame too small to hold an image area ({width}x{height})")
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
        raise NoImageAreaError("no image area found (the frame is blank or only text)")
    # Pixels per label (the mask is set exactly where a label is).
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:].astype(np.float64)
    slices = ndimage.find_objects(labels)
    lit = gray > background
    accepted = [label for label in np.argsort(-areas) + 1
                if areas[label - 1] >= min_fraction * height * width and
                _is_image_block(gray, lit, labels, label, slices[label - 1], height, width)]
    if not accepted:
        raise NoImageAreaError("no image area found (no large, speckled block; only text, "
                               "bands or a blank screen)")
    best = int(accepted[0])
    chosen = _panes(slices, areas, best, accepted)
    # The smoothing widened the blocks by a few pixels: take the box of the raw
    # non-background pixels inside them.
    # Searched inside the chosen blocks' bounding box only (nothing of them lies outside).
    rows = slice(min(slices[k - 1][0].start for k in chosen),
                 max(slices[k - 1][0].stop for k in chosen))
    cols = slice(min(slices[k - 1][1].start for k in chosen),
                 max(slices[k - 1][1].stop for k in chosen))
    blocks = np.isin(labels[rows, cols], chosen)
    inside = blocks & lit[rows, cols]
    ys, xs = np.nonzero(inside if inside.any() else blocks)
    return Box(int(xs.min()) + cols.start, int(ys.min()) + rows.start,
               int(xs.max()) + 1 + cols.start, int(ys.max()) + 1 + rows.start)


def _is_image_block(gray: np.ndarray, lit: np.ndarray, labels: np.ndarray, label: int,
                    where: tuple[slice, slice], height: int, width: int) -> bool:
    """Size, shape and texture of one block: a banner, a bar or a flat panel fails."""
    rows, cols = where
    block_h, block_w = rows.stop - rows.start, cols.stop - cols.start
    if block_h < MIN_SIDE_FRACTION * height or block_w < MIN_SIDE_FRACTION * width:
        return False
    if max(block_w / block_h, block_h / block_w) > MAX_ASPECT:
        return False
    inside = (labels[where] == label) & lit[where]
    return speckle_fraction(gray[where], inside) >= MIN_SPECKLE


def _panes(slices: list, areas: np.ndarray, best: int, accepted: list) -> list[int]:
    """The largest block and the blocks beside it: a dual-view screen shows two image
    panes side by side, split by a dark gap. A block counts as a pane when it passed the
    image tests, holds at least a third of the largest block's area and shares most of
    its rows."""
    top, bottom = slices[best - 1][0].start, slices[best - 1][0].stop
    chosen = [best]
    for label in accepted:
        label = int(label)
        if label == best or areas[label - 1] < areas[best - 1] / 3:
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
