"""The nodule's outline (manifest mask) and box drawn as a transparent PNG at the image's
size, shown over the image on the reading screen (key B toggles it). Pure numpy/Pillow."""

from __future__ import annotations

from io import BytesIO

import numpy as np
from PIL import Image as PILImage

BOX_RGBA = (255, 214, 0, 230)      # yellow box
OUTLINE_RGBA = (0, 230, 255, 255)  # cyan mask outline


def outline(mask: np.ndarray) -> np.ndarray:
    """The boundary pixels of a binary mask (the mask minus its 4-neighbour erosion)."""
    m = mask > 0
    inner = m.copy()
    inner[1:, :] &= m[:-1, :]
    inner[:-1, :] &= m[1:, :]
    inner[:, 1:] &= m[:, :-1]
    inner[:, :-1] &= m[:, 1:]
    return m & ~inner


def overlay_png(size: tuple[int, int], *, box: tuple[int, int, int, int] | None = None,
                mask: np.ndarray | None = None, width: int = 2) -> bytes:
    """RGBA PNG of `size` (width, height): the box's edges and the mask's outline."""
    w, h = size
    rgba = np.zeros((h, w, 4), np.uint8)
    if mask is not None and mask.shape[:2] == (h, w):
        edge = outline(mask)
        for _ in range(width - 1):  # thicken the one-pixel line so it shows when scaled down
            edge[1:, :] |= edge[:-1, :]
            edge[:, 1:] |= edge[:, :-1]
        rgba[edge] = OUTLINE_RGBA
    if box is not None:
        x0, y0, x1, y1 = (max(0, v) for v in box)
        x1, y1 = min(x1, w), min(y1, h)
        for y in (slice(y0, y0 + width), slice(max(y1 - width, 0), y1)):
            rgba[y, x0:x1] = BOX_RGBA
        for x in (slice(x0, x0 + width), slice(max(x1 - width, 0), x1)):
            rgba[y0:y1, x] = BOX_RGBA
    buffer = BytesIO()
    PILImage.fromarray(rgba, "RGBA").save(buffer, format="PNG")
    return buffer.getvalue()
