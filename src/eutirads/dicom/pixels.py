"""The ultrasound image regions of a DICOM frame, and the masks made from them.

Scanners burn the patient's name, the date and the institution into the pixels around the
image. The SequenceOfUltrasoundRegions (PS3.3 C.8.5.5) says where the 2D image regions
are; `eutirads.frame.clean_pixels` (the one clean-frame rule) blanks everything outside
their union and crops to the union's bounding box. A file with no usable region is not
guessed at: the caller quarantines it, unless it asked for the region to be found from
the pixels (`eutirads.region`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..region import Box

__all__ = ["Region", "ultrasound_regions", "union_box", "region_mask", "blank_outside",
           "spacing_of"]

_SPATIAL_2D = 0x0001
_UNITS_CM = 0x0003


@dataclass(frozen=True)
class Region:
    """A pixel box (x1, y1 exclusive) and its physical pixel size in mm, when known."""

    box: Box
    spacing_mm: tuple[float, float] | None = None

    @property
    def area(self) -> int:
        return self.box.width * self.box.height


def _spacing(item) -> tuple[float, float] | None:
    try:
        if (int(item.get("PhysicalUnitsXDirection", 0)) != _UNITS_CM or
                int(item.get("PhysicalUnitsYDirection", 0)) != _UNITS_CM):
            return None
        dx, dy = float(item.PhysicalDeltaX), float(item.PhysicalDeltaY)
    except (AttributeError, TypeError, ValueError):
        return None
    if not (dx > 0 and dy > 0):
        return None
    return round(dx * 10, 6), round(dy * 10, 6)  # cm -> mm


def ultrasound_regions(ds, rows: int, columns: int) -> tuple[list[Region], list[str]]:
    """The usable 2D regions of `ds`, clamped to the image, and a reason for each region
    that was refused (zero-size, inverted, outside the image, no coordinates)."""
    usable: list[Region] = []
    problems: list[str] = []
    try:
        items = list(ds.get("SequenceOfUltrasoundRegions", None) or [])
    except Exception:
        return [], ["unreadable SequenceOfUltrasoundRegions"]
    for number, item in enumerate(items, 1):
        try:
            if int(item.get("RegionSpatialFormat", 0)) != _SPATIAL_2D:
                continue  # M-mode, Doppler spectra, waveforms and graphics are not images
            x0, y0 = int(item.RegionLocationMinX0), int(item.RegionLocationMinY0)
            x1, y1 = int(item.RegionLocationMaxX1), int(item.RegionLocationMaxY1)
        except (AttributeError, TypeError, ValueError):
            problems.append(f"region {number} has no valid coordinates")
            continue
        # The region's max corner is inclusive (PS3.3 C.8.5.5.1.1).
        if x1 < x0 or y1 < y0:
            problems.append(f"region {number} is inverted")
            continue
        if x1 == x0 or y1 == y0:
            problems.append(f"region {number} has zero size")
            continue
        if x0 >= columns or y0 >= rows or x1 < 0 or y1 < 0:
            problems.append(f"region {number} lies outside the {columns}x{rows} image")
            continue
        box = Box(max(0, x0), max(0, y0), min(columns, x1 + 1), min(rows, y1 + 1))
        usable.append(Region(box, _spacing(item)))
    if not items:
        problems.append("no SequenceOfUltrasoundRegions")
    elif not usable and not problems:
        problems.append("no 2D ultrasound region")
    return usable, problems


def union_box(regions: list[Region]) -> Box:
    return Box(min(r.box.x0 for r in regions), min(r.box.y0 for r in regions),
               max(r.box.x1 for r in regions), max(r.box.y1 for r in regions))


def region_mask(shape: tuple[int, int], regions: list[Region]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    for region in regions:
        b = region.box
        mask[b.y0:b.y1, b.x0:b.x1] = True
    return mask


def blank_outside(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A copy of `frame` with every pixel outside `mask` set to zero."""
    out = frame.copy()
    out[~mask] = 0
    return out


def spacing_of(regions: list[Region]) -> tuple[float, float] | None:
    """The pixel spacing of the largest region that declares one."""
    with_spacing = [r for r in regions if r.spacing_mm is not None]
    if not with_spacing:
        return None
    return max(with_spacing, key=lambda r: r.area).spacing_mm
