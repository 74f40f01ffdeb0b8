"""The public DDTI layout (Pedraza et al., 2015): `xml/<case>.xml` + `raw_jpg/<case>_<k>.jpg`.

A case file holds the nodule's fields (age, sex, composition, echogenicity, margins,
calcifications, tirads) and one `<mark>` per image: `<image>k</image>` and `<svg>`, a JSON
list of regions whose `points` outline the nodule. Some images show two views side by side
(two regions); the nodule box and mask are the union of every region of that image. The
`<svg>` text is empty for some images and cut off mid-way (invalid JSON) for others: such
an image gets no box and no mask (unknown, not "no nodule"), and the importer warns.

Everything here is pure: text in, values out.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from ..errors import InputError

__all__ = ["CASE_FIELDS", "Outline", "Polygon", "DdtiCase", "parse_case", "outline_box", "IMAGE_NAME"]

# Fields kept as manifest columns, under these names. `tirads` becomes the label.
CASE_FIELDS: tuple[str, ...] = ("age", "sex", "composition", "echogenicity", "margins",
                                "calcifications")

# raw_jpg/<case>_<k>.jpg; digits only, so a case number can safely name a file.
IMAGE_NAME = re.compile(r"^(\d{1,9})_(\d{1,4})\.jpe?g$", re.IGNORECASE)
_CASE_NUMBER = re.compile(r"^\d{1,9}$")


Polygon = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Outline:
    """The nodule outline of one image: `status` is "ok", "empty" (no outline drawn) or
    "broken" (outline text is not valid JSON); `box` is (x0, y0, x1, y1), x1/y1 exclusive;
    `polygons` holds each region's points (x, y) in pixels."""

    status: str
    box: tuple[int, int, int, int] | None = None
    regions: int = 0
    polygons: tuple[Polygon, ...] = ()


@dataclass(frozen=True)
class DdtiCase:
    case: str
    tirads: str
    fields: dict[str, str]
    outlines: dict[str, Outline] = field(default_factory=dict)  # image number -> outline


def outline_box(svg: str) -> Outline:
    """Union box of every region's points in a mark's `<svg>` JSON text."""
    text = (svg or "").strip()
    if not text:
        return Outline("empty")
    try:
        regions = json.loads(text)
        polygons = tuple(tuple((float(p["x"]), float(p["y"])) for p in region.get("points", []))
                         for region in regions)
    except (ValueError, TypeError, KeyError, AttributeError):
        return Outline("broken")
    points = [point for polygon in polygons for point in polygon]
    if not points:
        return Outline("empty", regions=len(regions))
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    box = (int(min(xs)), int(min(ys)), int(max(xs)) + 1, int(max(ys)) + 1)
    return Outline("ok", box, len(regions), tuple(p for p in polygons if p))


def _union(a: Outline, b: Outline) -> Outline:
    """Two marks for one image: their boxes joined; a box beats no box."""
    if a.box is None:
        return b if b.box is not None or a.status == "empty" else a
    if b.box is None:
        return a
    box = (min(a.box[0], b.box[0]), min(a.box[1], b.box[1]),
           max(a.box[2], b.box[2]), max(a.box[3], b.box[3]))
    return Outline("ok", box, a.regions + b.regions, a.polygons + b.polygons)


def parse_case(text: str | bytes, *, name: str) -> DdtiCase:
    """One case file's fields and outlines. `name` is how errors call the file."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise InputError(f"{name}: not valid XML ({exc})") from None
    if root.tag != "case":
        raise InputError(f"{name}: not a DDTI case file (root element <{root.tag}>)")
    case = (root.findtext("number") or "").strip()
    if not _CASE_NUMBER.match(case):
        raise InputError(f"{name}: case number missing or not a number")
    fields = {key: " ".join((root.findtext(key) or "").split()) for key in CASE_FIELDS}
    tirads = (root.findtext("tirads") or "").strip()
    outlines: dict[str, Outline] = {}
    for mark in root.findall("mark"):
        image = (mark.findtext("image") or "").strip()
        if not image.isdigit():
            continue
        image = str(int(image))
        outline = outline_box(mark.findtext("svg") or "")
        outlines[image] = _union(outlines[image], outline) if image in outlines else outline
    return DdtiCase(case=case, tirads=tirads, fields=fields, outlines=outlines)
