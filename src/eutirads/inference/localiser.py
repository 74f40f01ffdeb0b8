"""The nodule localiser at inference: a segmentation bundle component run by onnxruntime,
and the pure functions that turn its probability map into the `nodule` of a prediction
(box, regions, axes, contour). numpy, scipy and Pillow only (never torch).

Coordinates are the input image's pixels, x1/y1 exclusive for boxes; contours are
[x, y] pixel corners of the region's outer boundary, clockwise on screen.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ..errors import InputError, ModelError
from ..preprocess import PreprocessSpec, crop_box, normalize, resize_to_input
from ..region import Box, crop
from .bundle import (INPUT_NAME, LOCALISER, LOCALISER_OUTPUTS, blas_threads, component_file,
                     open_session)

__all__ = ["Localiser", "Nodule", "probability_to_image", "nodule_from_mask", "region_axes",
           "trace_contour", "NO_NODULE", "Spacing"]

# (x, y) size of a pixel in mm, as the DICOM ultrasound region declares it.
Spacing = tuple[float, float]

NO_NODULE = "no region above the localiser's threshold, minimum size and minimum score"


@dataclass(frozen=True)
class Nodule:
    """What the localiser found in one image: `mask` HxW uint8 0/255 at the image's size
    (every region kept), `probability` HxW float32 in [0, 1], `nodule` the JSON-ready
    description or None with `reason`."""

    mask: np.ndarray
    probability: np.ndarray
    nodule: dict[str, Any] | None
    reason: str | None


def _resize_float(values: np.ndarray, width: int, height: int) -> np.ndarray:
    image = Image.fromarray(np.ascontiguousarray(values, dtype=np.float32))
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)


def probability_to_image(prob: np.ndarray, spec: PreprocessSpec, box: Box,
                         image_shape: tuple[int, ...]) -> np.ndarray:
    """The model-grid probability map placed back on the input image: the letterbox padding
    removed, resized to the crop the model saw, zero elsewhere. HxW float32."""
    in_h, in_w = spec.input_size
    grid = prob
    if grid.shape != (in_h, in_w):
        grid = _resize_float(grid, in_w, in_h)
    if spec.resize == "letterbox":
        # The same placement as preprocess.resize_to_input.
        scale = min(in_w / box.width, in_h / box.height)
        new_w, new_h = max(1, round(box.width * scale)), max(1, round(box.height * scale))
        top, left = (in_h - new_h) // 2, (in_w - new_w) // 2
        grid = grid[top:top + new_h, left:left + new_w]
    out = np.zeros(image_shape[:2], np.float32)
    # Clipped inside the crop only: the rest is zero already.
    out[box.y0:box.y1, box.x0:box.x1] = np.clip(_resize_float(grid, box.width, box.height),
                                                0.0, 1.0)
    return out


# Moore-neighbour directions, clockwise on screen (y down) starting west.
_DIRS = ((-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1), (0, 1), (-1, 1))


def trace_contour(region: np.ndarray) -> list[list[int]]:
    """The outer boundary of one 8-connected region (HxW bool) as [x, y] pixel positions
    in order (Moore-neighbour tracing, Jacob's stopping rule). A one-pixel region gives
    one point."""
    ys, xs = np.nonzero(region)
    if len(xs) == 0:
        return []
    # Nested lists: the walk reads one pixel at a time, which Python lists do several
    # times faster than numpy scalar indexing.
    padded = np.pad(region, 1).tolist()
    # The first pixel in raster order: its west neighbour is background.
    order = np.lexsort((xs, ys))
    start = (int(xs[order[0]]) + 1, int(ys[order[0]]) + 1)
    contour = [start]
    current, back = start, 0  # came from the west
    first_move = None
    for _ in range(4 * region.size + 8):
        found = None
        for step in range(8):
            d = (back + 1 + step) % 8
            nx, ny = current[0] + _DIRS[d][0], current[1] + _DIRS[d][1]
            if padded[ny][nx]:
                found = (nx, ny), d
                break
        if found is None:
            break  # an isolated pixel
        (nxt, d) = found
        if first_move is None:
            first_move = (nxt, d)
        elif current == start and (nxt, d) == first_move:
            contour.pop()  # back at the start, moving as the first time: closed
            break
        # The search restarts from the neighbour we came from (the backtrack).
        back = (d + 4) % 8
        current = nxt
        contour.append(current)
    return [[x - 1, y - 1] for x, y in contour]


def _simplify(points: list[list[int]], limit: int = 200) -> list[list[int]]:
    """Drop the middle of straight runs, then thin evenly to at most `limit` points: the
    outline a browser draws, not a pixel list."""
    if len(points) < 4:
        return points
    kept = []
    n = len(points)
    for i, p in enumerate(points):
        a, b = points[i - 1], points[(i + 1) % n]
        if (p[0] - a[0], p[1] - a[1]) != (b[0] - p[0], b[1] - p[1]):
            kept.append(p)
    if len(kept) > limit:
        step = len(kept) / limit
        kept = [kept[int(i * step)] for i in range(limit)]
    return kept or points[:1]


def region_axes(points: np.ndarray, scale: Spacing = (1.0, 1.0)) -> tuple[float, float]:
    """(long axis, short axis) of a region from its pixel centres (Nx2 x, y): the longest
    distance between two of them plus one pixel, and the extent perpendicular to it plus
    one pixel, the way a sonographer places calipers. `scale` is the (x, y) pixel size:
    (1, 1) gives pixels, the DICOM spacing millimetres."""
    if len(points) == 0:
        return 0.0, 0.0
    pixel = (scale[0] + scale[1]) / 2
    pts = np.unique(np.asarray(points, np.float64), axis=0) * np.asarray(scale, np.float64)
    if len(pts) >= 3:
        try:
            from scipy.spatial import ConvexHull

            pts = pts[ConvexHull(pts).vertices]
        except Exception:  # collinear points: keep them all (a thin line)
            pass
    diff = pts[:, None, :] - pts[None, :, :]
    dist = np.sqrt((diff ** 2).sum(-1))
    i, j = np.unravel_index(int(dist.argmax()), dist.shape)
    long_axis = float(dist[i, j])
    if long_axis == 0:
        return pixel, pixel
    direction = (pts[j] - pts[i]) / long_axis
    normal = np.array([-direction[1], direction[0]])
    across = pts @ normal
    return long_axis + pixel, float(across.max() - across.min()) + pixel


def _region(component: np.ndarray, offset: tuple[int, int], prob: np.ndarray,
            spacing: Spacing | None) -> dict[str, Any]:
    """One region's description; `component` is its bool mask inside its own bounding box,
    whose top-left corner is `offset` (x, y) in the image; `prob` the same crop."""
    ox, oy = offset
    height, width = component.shape
    contour = trace_contour(component)
    # The hull of the outer boundary is the hull of the region: the axes need only it.
    points = np.asarray(contour, np.float64)
    long_px, short_px = region_axes(points)
    long_mm = short_mm = None
    if spacing is not None:
        long_mm, short_mm = (round(v, 2) for v in region_axes(points, spacing))
    return {"box": [ox, oy, ox + width, oy + height], "area_px": int(component.sum()),
            "score": round(float(prob[component].mean()), 4),
            "long_axis_px": round(long_px, 1), "short_axis_px": round(short_px, 1),
            "long_axis_mm": long_mm, "short_axis_mm": short_mm,
            "contour": [[x + ox, y + oy] for x, y in _simplify(contour)]}


def nodule_from_mask(mask: np.ndarray, prob: np.ndarray, *, min_region_px: int,
                     spacing: Spacing | None = None, min_score: float = 0.0
                     ) -> tuple[np.ndarray, dict[str, Any] | None]:
    """(mask of the kept regions 0/255, the `nodule` dict or None) from a binary mask at the
    image's size: its 8-connected regions of at least `min_region_px` pixels whose mean
    probability (their `score`) reaches `min_score`, largest first; `box` encloses them all
    (two views of one nodule side by side give one box, the way the dataset boxes a DDTI
    outline); `score` is the mean probability inside them."""
    from scipy import ndimage

    out = np.zeros(mask.shape, np.uint8)
    binary = mask > 0
    hit_rows, hit_cols = np.flatnonzero(binary.any(axis=1)), np.flatnonzero(binary.any(axis=0))
    if len(hit_rows) == 0:
        return out, None
    # Labelled inside the box of every set pixel only (the same regions, in the same order,
    # as over the whole image, for a fraction of the pixels).
    oy, ox = int(hit_rows[0]), int(hit_cols[0])
    labels, count = ndimage.label(binary[oy:hit_rows[-1] + 1, ox:hit_cols[-1] + 1],
                                  structure=np.ones((3, 3), bool))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = [int(k) for k in np.argsort(-sizes[1:]) + 1 if sizes[k] >= max(1, min_region_px)]
    if not keep:
        return out, None
    slices = ndimage.find_objects(labels)
    regions, inside = [], []
    for k in keep:
        local_rows, local_cols = slices[k - 1]
        rows = slice(local_rows.start + oy, local_rows.stop + oy)
        cols = slice(local_cols.start + ox, local_cols.stop + ox)
        # Holes inside a nodule (a cyst's wall outlined as a ring) belong to it; working in
        # the region's own box keeps this cheap.
        component = ndimage.binary_fill_holes(labels[local_rows, local_cols] == k)
        crop_prob = prob[rows, cols]
        if round(float(crop_prob[component].mean()), 4) < min_score:  # as `score` reads
            continue  # a faint region: on nodule-free images, what false alarms look like
        out[rows, cols][component] = 255
        inside.append(crop_prob[component])
        regions.append(_region(component, (cols.start, rows.start), crop_prob, spacing))
    if not regions:
        return out, None
    box = [min(r["box"][0] for r in regions), min(r["box"][1] for r in regions),
           max(r["box"][2] for r in regions), max(r["box"][3] for r in regions)]
    nodule = {"box": box, "score": round(float(np.concatenate(inside).mean()), 4),
              "regions": regions}
    return out, nodule


def _image_min_region(min_region_px: int, spec: PreprocessSpec, box: Box) -> int:
    """`min_region_px` counts pixels of the model's input grid; in the input image a pixel
    of that grid covers (crop area / grid area) pixels."""
    in_h, in_w = spec.input_size
    return max(1, round(min_region_px * box.width * box.height / (in_h * in_w)))


class Localiser:
    """The bundle's localiser component, loaded once (one onnxruntime session)."""

    def __init__(self, bundle_dir: str | os.PathLike[str], meta: dict[str, Any], *,
                 threads: int | None = None) -> None:
        root = Path(bundle_dir)
        settings = meta["components"][LOCALISER]
        self._threads = threads
        self.spec = PreprocessSpec.load(component_file(root, meta, LOCALISER, "preprocess"))
        try:
            self.threshold = float(settings.get("threshold", 0.5))
            self.min_region_px = int(settings.get("min_region_px", 0))
            # Bundles exported before the minimum score existed keep every region.
            self.min_score = float(settings.get("min_score", 0.0))
        except (TypeError, ValueError):
            raise ModelError(f"{root}: localiser threshold/min_region_px/min_score are not "
                             "numbers") from None
        if not 0.0 < self.threshold < 1.0:
            raise ModelError(f"{root}: localiser threshold {self.threshold} is not in (0, 1)")
        if not 0.0 <= self.min_score < 1.0:
            raise ModelError(f"{root}: localiser min_score {self.min_score} is not in [0, 1)")
        model = component_file(root, meta, LOCALISER, "model")
        self._session = open_session(model, threads)
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if inputs[0].name != INPUT_NAME or [o.name for o in outputs][:1] != list(LOCALISER_OUTPUTS):
            raise ModelError(f"{model}: expected input {INPUT_NAME!r} and output 'logits'")
        # A graph exported for another input size than its preprocess file names cannot run.
        shape = list(inputs[0].shape)
        if len(shape) != 4 or any(isinstance(v, int) and v != want for v, want in
                                  zip(shape[2:], self.spec.input_size)):
            raise ModelError(f"{model}: the localiser was exported for input {shape[2:]} but "
                             f"its preprocess file says {list(self.spec.input_size)}; export "
                             "the bundle again")

    def probability(self, pixels: np.ndarray, *, area: Box | None = None
                    ) -> tuple[np.ndarray, Box]:
        """(nodule probability HxW float32 at the image's size, the crop the model saw).
        `area`: the image area when the caller found it already."""
        box = crop_box(pixels, self.spec, area=area)
        tensor = normalize(resize_to_input(crop(pixels, box), self.spec), self.spec)
        (logits,) = self._session.run(list(LOCALISER_OUTPUTS), {INPUT_NAME: tensor[None]})
        prob = 1.0 / (1.0 + np.exp(-logits[0, 0].astype(np.float32)))
        return probability_to_image(prob, self.spec, box, pixels.shape), box

    def find(self, pixels: np.ndarray, *, spacing: Spacing | None = None,
             area: Box | None = None) -> Nodule:
        with blas_threads(self._threads):
            prob, box = self.probability(pixels, area=area)
            mask, nodule = nodule_from_mask(prob >= self.threshold, prob, spacing=spacing,
                                            min_region_px=_image_min_region(
                                                self.min_region_px, self.spec, box),
                                            min_score=self.min_score)
        return Nodule(mask, prob, nodule, None if nodule is not None else NO_NODULE)


def mm_or_none(value: Sequence[float] | float | None) -> Spacing | None:
    """A spacing from what callers have: None, one number (square pixels) or (x, y)."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        values = (float(value), float(value))
    else:
        values = tuple(float(v) for v in value)
    if len(values) != 2 or not all(math.isfinite(v) and v > 0 for v in values):
        raise InputError(f"pixel spacing {value!r} is not one or two positive numbers")
    return values
