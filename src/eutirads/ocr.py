"""Burned-in text inside the ultrasound image area: find it and blank it.

Scanners write the patient's name, dates and measurements over the image itself, not
only around it. `redact_text` finds text boxes in two steps and blanks them:

1. a cheap gate (`text_candidates`, a few milliseconds a frame) looks for text-like
   structure: bright, sharp, uniform strokes several glyphs long on one line. Speckle has
   grain but no such rows, so most frames stop here;
2. each candidate line is read by Tesseract (Debian's `tesseract-ocr` through
   `pytesseract`); a line Tesseract reads as letters or digits is blanked, padded by a
   few pixels. Candidates Tesseract cannot read at all are blanked as well when they are
   strongly text-like (several glyphs of one height): a name must never survive because
   the OCR misread it.

docs/benchmarks.md ("Burned-in text") has the measurements behind the choice of
Tesseract over the ONNX detector of `rapidocr-onnxruntime`, the gate's thresholds, its
recall on burned-in text and its false positives on speckle.
"""

from __future__ import annotations

import shutil

import numpy as np
from scipy import ndimage

from .errors import ConfigError
from .region import Box

__all__ = ["text_candidates", "find_text_boxes", "redact_text", "tesseract_available"]

# A stroke is at least this much brighter than the opening of its neighbourhood and this
# bright in absolute terms: burned-in text is drawn near white, speckle grain is not
# both at once.
_STROKE_CONTRASTS = (70.0, 45.0)  # strict first; the second finds text on bright tissue
_STROKE_LEVEL = 140.0
# Glyph heights (pixels) of text a person can read on a scanner screen.
_MIN_LINE, _MAX_LINE = 6, 64
_MIN_GLYPHS = 3
_PAD = 3


def tesseract_available() -> bool:
    return shutil.which("tesseract") is not None


def _gray(pixels: np.ndarray) -> np.ndarray:
    """uint8 grey: the brightest channel, so coloured text counts as bright."""
    gray = pixels[..., :3].max(axis=2) if pixels.ndim == 3 else pixels
    return gray if gray.dtype == np.uint8 else gray.clip(0, 255).astype(np.uint8)


def text_candidates(pixels: np.ndarray) -> list[tuple[Box, int]]:
    """Boxes of text-like lines and their glyph counts (the gate; no OCR), at each stroke
    contrast of _STROKE_CONTRASTS (a line found at both is joined into one box)."""
    gray = _gray(pixels)
    if gray.shape[0] < _MIN_LINE or gray.shape[1] < _MIN_LINE:
        return []
    # White top-hat: what stands above its 9x9 opening, i.e. structures thinner than 9 px.
    # (uint8 throughout: the opening never exceeds the pixel, and min/max filters on
    # bytes are several times faster than on floats.)
    tophat = gray - ndimage.grey_opening(gray, size=(9, 9))
    found: list[tuple[Box, int]] = []
    for contrast in _STROKE_CONTRASTS:
        strokes = (tophat > contrast) & (gray > _STROKE_LEVEL)
        for box, tall in _lines(strokes):
            for number, (seen, seen_tall) in enumerate(found):
                if _overlaps(box, seen):  # the same line seen at both contrasts: join
                    found[number] = (Box(min(box.x0, seen.x0), min(box.y0, seen.y0),
                                         max(box.x1, seen.x1), max(box.y1, seen.y1)),
                                     max(tall, seen_tall))
                    break
            else:
                found.append((box, tall))
    return found


def _overlaps(a: Box, b: Box) -> bool:
    return min(a.x1, b.x1) > max(a.x0, b.x0) and min(a.y1, b.y1) > max(a.y0, b.y0)


def _lines(strokes: np.ndarray) -> list[tuple[Box, int]]:
    """Text-like lines in a stroke mask: several glyphs of one height on a row."""
    if strokes.sum() < 8:
        return []
    glyphs, _count = ndimage.label(strokes, structure=np.ones((3, 3), bool))
    glyph_boxes = ndimage.find_objects(glyphs)
    # Glyphs of one word or line: join strokes closer than a glyph's width on a row.
    # A closing with a 3x9 box, as a running maximum then minimum (separable, linear in
    # the pixel count; binary_closing costs 27 operations per pixel and was most of the
    # gate's time).
    lines = ndimage.maximum_filter(strokes.view(np.uint8), size=(3, 9), mode="constant")
    lines = ndimage.minimum_filter(lines, size=(3, 9), mode="constant").astype(bool)
    lines |= strokes
    line_labels, _ = ndimage.label(lines, structure=np.ones((3, 3), bool))
    strong: list[tuple[Box, int]] = []
    weak: list[Box] = []
    for index, where in enumerate(ndimage.find_objects(line_labels), 1):
        rows, cols = where
        height, width = rows.stop - rows.start, cols.stop - cols.start
        if not (_MIN_LINE <= height <= _MAX_LINE):
            continue
        inside = np.unique(glyphs[where][(line_labels[where] == index) & strokes[where]])
        tall = 0
        for label in inside[inside > 0]:
            g = glyph_boxes[label - 1]
            glyph_h, glyph_w = g[0].stop - g[0].start, g[1].stop - g[1].start
            # A glyph is about as tall as its line and not much wider than tall; the
            # pieces of a bright fascia line are flat and wide.
            if glyph_h >= max(5, 0.5 * height) and glyph_w <= 1.3 * glyph_h:
                tall += 1
        box = Box(cols.start, rows.start, cols.stop, rows.stop)
        fill = strokes[where].mean()
        if tall >= _MIN_GLYPHS and width >= 1.5 * height and 0.08 <= fill <= 0.75:
            strong.append((box, tall))
        elif tall >= 1 and 0.08 <= fill <= 0.75:
            weak.append(box)  # a short word ("Dr") counts only beside a line of text
    return [_grow(box, tall, weak) for box, tall in strong]


def _grow(box: Box, tall: int, weak: list[Box]) -> tuple[Box, int]:
    """`box` joined with the short words on its row within two glyph heights of it."""
    changed = True
    while changed:
        changed = False
        for other in weak:
            height = box.y1 - box.y0
            overlap = min(box.y1, other.y1) - max(box.y0, other.y0)
            gap = max(other.x0 - box.x1, box.x0 - other.x1)
            inside = other.x0 >= box.x0 and other.x1 <= box.x1 and other.y0 >= box.y0 \
                and other.y1 <= box.y1
            if not inside and overlap >= 0.5 * min(height, other.y1 - other.y0) and \
                    gap <= 2 * height:
                box = Box(min(box.x0, other.x0), min(box.y0, other.y0),
                          max(box.x1, other.x1), max(box.y1, other.y1))
                tall += 1
                changed = True
    return box, tall


def _reads_as_text(pixels: np.ndarray, box: Box) -> bool:
    """Whether Tesseract reads letters or digits in `box` (one line, upscaled)."""
    import pytesseract
    from PIL import Image

    gray = _gray(pixels)
    y0, y1 = max(0, box.y0 - _PAD), min(gray.shape[0], box.y1 + _PAD)
    x0, x1 = max(0, box.x0 - _PAD), min(gray.shape[1], box.x1 + _PAD)
    crop = Image.fromarray(255 - gray[y0:y1, x0:x1])
    scale = max(1, round(32 / max(1, y1 - y0)))
    if scale > 1:
        crop = crop.resize((crop.width * scale, crop.height * scale))
    text = pytesseract.image_to_string(crop, config="--psm 7")
    return sum(ch.isalnum() for ch in text) >= 2


def find_text_boxes(pixels: np.ndarray) -> list[Box]:
    """Boxes of burned-in text in an HxW or HxWxC frame (padded, clamped to it)."""
    candidates = text_candidates(pixels)
    if not candidates:
        return []
    if not tesseract_available():
        raise ConfigError("burned-in text check needs Debian's tesseract-ocr (apt-get "
                          "install tesseract-ocr), or --text-policy off")
    height, width = pixels.shape[:2]
    boxes = []
    for box, glyph_count in candidates:
        if glyph_count >= 5 or _reads_as_text(pixels, box):
            # Antialiased glyph edges reach past the strokes: pad by a third of a line.
            pad = max(_PAD, (box.y1 - box.y0) // 3)
            boxes.append(Box(max(0, box.x0 - pad), max(0, box.y0 - pad),
                             min(width, box.x1 + pad), min(height, box.y1 + pad)))
    return boxes


def redact_text(pixels: np.ndarray) -> tuple[np.ndarray, int]:
    """A copy of `pixels` with every burned-in text box set to zero, and their count."""
    boxes = find_text_boxes(pixels)
    if not boxes:
        return pixels, 0
    out = pixels.copy()
    for box in boxes:
        out[box.y0:box.y1, box.x0:box.x1] = 0
    return out, len(boxes)
