"""One image's diagnosis as a radiologist reads it: the model's result (whatever parts its
bundle has: category, nodule outline and size, descriptors with the rule path, abstention)
with the guideline's reading of it. numpy and Pillow only, no Django.

`diagnose` is the pure heart: predictor + checked image + options -> `Diagnosis`. The web
page, the API, the PDF report and the reading mode all show what it returns.

The Prediction fields the bundle may add (`nodule`, `descriptors`, `rule_path`, `abstain`,
`abstain_reason`, `box_source`) are read with defaults, so a classifier-only bundle works.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import categories as _categories
from ..categories import CATEGORIES, EU_TIRADS_LABELS, fna_advice
from ..errors import InputError, ModelError
from ..region import Box, find_image_area
from .heatmap import colorize
from .uploads import CleanImage, encode_png

__all__ = [
    "Box", "Diagnosis", "ABSTAIN_REASONS", "DESCRIPTOR_NAMES", "DESCRIPTOR_VALUES", "parse_box", "parse_size_mm",
    "parse_pixel_mm",
    "diagnose", "screen_check", "calipers", "heatmap_overlay_png", "heatmap_png", "data_uri",
    "box_dict", "outline_geometry", "descriptor_rule_path", "DISCLAIMER",
]

DISCLAIMER = ("This result supports, and does not replace, the radiologist's judgement. "
              "It is not a diagnosis.")
MAX_DIAMETER_MM = 150.0  # a thyroid nodule is never larger: a bigger value is a typo
# The one descriptor vocabulary (`categories.DESCRIPTORS` once the dataset side adds it;
# built from the same tuples until then).
DESCRIPTOR_VALUES: dict[str, tuple[str, ...]] = dict(getattr(_categories, "DESCRIPTORS", None) or {
    "composition": _categories.COMPOSITIONS, "echogenicity": _categories.ECHOGENICITIES,
    "shape": _categories.SHAPES, "margins": _categories.MARGINS,
    "echogenic_foci": _categories.ECHOGENIC_FOCI})
DESCRIPTOR_NAMES = tuple(DESCRIPTOR_VALUES)

# Why the model gave no usable answer, and what the radiologist can do about it.
ABSTAIN_REASONS: dict[str, tuple[str, str]] = {
    "no-ultrasound-area": ("No ultrasound image area was found in this picture.",
                           "Upload a frame from the scanner (JPEG, PNG or DICOM) showing the "
                           "B-mode image."),
    "not-ultrasound": ("This picture does not look like a grey-scale ultrasound image.",
                       "Upload a thyroid B-mode frame; photographs, drawings, colour images "
                       "and test patterns are not read."),
    "out-of-distribution": ("This image is unlike the images the model was trained and "
                            "tested on, so its answer would not be reliable.",
                            "Read the image yourself; if it is a thyroid ultrasound, report "
                            "it so the model can be retrained on such images."),
    "low-confidence": ("The model is not confident enough in any category.",
                       "Read the image yourself, or try a tighter box around the nodule."),
}


def box_dict(box: Box | None) -> dict[str, int] | None:
    return None if box is None else {"x0": int(box.x0), "y0": int(box.y0),
                                     "x1": int(box.x1), "y1": int(box.y1)}


@dataclass(frozen=True)
class Diagnosis:
    """The answer for one image, everything the page, the API and the report show.

    With `abstain` True, `advice` is empty: label and probabilities stay for whoever looks,
    but no guideline advice is given on them."""

    label: str
    probabilities: dict[str, float]
    heatmap: np.ndarray | None  # HxW float32 in [0, 1], the image's size (None: not asked)
    box: Box | None  # the nodule box: drawn ("given") or the localiser's
    diameter_mm: float | None
    diameter_source: str  # "", "given", "measured" (drawn box x spacing) or "localiser"
    advice: str
    classified: str = "image"  # "box": the model saw the nodule box; "image": the image area
    name: str = ""
    definition: str = ""
    risk: str = ""
    class_names: tuple[str, ...] = field(default_factory=tuple)
    box_source: str = "none"  # "given" | "localiser" | "none"
    nodule: dict[str, Any] | None = None  # the localiser's object, regions with "calipers"
    nodule_reason: str = ""
    descriptors: dict[str, dict[str, Any]] | None = None
    rule_path: str = ""
    abstain: bool = False
    abstain_reason: str = ""
    image_area: Box | None = None  # where the ultrasound image is (for the kept image)

    @property
    def is_eu_tirads(self) -> bool:
        return self.label in EU_TIRADS_LABELS

    @property
    def abstain_text(self) -> tuple[str, str]:
        """(what it means, what to do) for the abstention's reason."""
        return ABSTAIN_REASONS.get(self.abstain_reason, (
            "The model declined to answer for this image.", "Read the image yourself."))

    @property
    def regions(self) -> list[dict[str, Any]]:
        return list((self.nodule or {}).get("regions") or [])


def _number(value: Any, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a number") from None
    if not np.isfinite(number):
        raise InputError(f"{what} must be a finite number")
    return number


def parse_box(values: dict, width: int, height: int) -> Box | None:
    """A box from form/query fields x0, y0, x1, y1 (all four or none), checked against the
    image's size."""
    raw = {key: values.get(key) for key in ("x0", "y0", "x1", "y1")}
    given = {key: value for key, value in raw.items() if value not in (None, "")}
    if not given:
        return None
    if len(given) < 4:
        raise InputError("a box needs all four of x0, y0, x1, y1")
    x0, y0, x1, y1 = (int(round(_number(given[k], k))) for k in ("x0", "y0", "x1", "y1"))
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        raise InputError(f"the box ({x0}, {y0}, {x1}, {y1}) lies outside the "
                         f"{width}x{height} image")
    if x1 - x0 < 4 or y1 - y0 < 4:
        raise InputError("the box is too small (under 4 pixels wide or high)")
    return Box(x0, y0, x1, y1)


def parse_size_mm(value: Any) -> float | None:
    if value in (None, ""):
        return None
    size = _number(value, "size_mm")
    if size <= 0 or size > MAX_DIAMETER_MM:
        raise InputError(f"size_mm must be over 0 and at most {MAX_DIAMETER_MM:g} mm")
    return round(size, 1)


def parse_pixel_mm(value: Any) -> float | None:
    """Millimetres per pixel from a form field (empty: unknown)."""
    if value in (None, ""):
        return None
    number = _number(value, "mm_per_pixel")
    if not 0 < number < 5:
        raise InputError("mm_per_pixel (the pixel size) must be over 0 and under 5 mm")
    return number


# ---- the minimal honest check that a picture is an ultrasound screen ----------------------

def screen_check(pixels: np.ndarray, *, area: Box | None = None) -> tuple[str, Box | None]:
    """("", image area) for a picture that looks like a grey-scale ultrasound screen, else
    (abstain reason, area or None). On a reduced copy (about 1 ms); `area` when the upload
    check found it already.

    The checks are deliberately coarse: no image area at all; a colour picture (B-mode is
    grey; a Doppler box is a small part of it); or a picture whose non-black pixels take a
    handful of grey levels (speckle spreads over the whole grey scale; a checkerboard,
    a drawing or a screenshot of text does not). A grey photograph with texture passes:
    the bundle's out-of-distribution check is what catches those.
    """
    if area is None:
        try:
            area = find_image_area(pixels)
        except InputError:
            return "no-ultrasound-area", None
    step = max(1, -(-max(pixels.shape[:2]) // 256))
    inside = pixels[area.y0:area.y1:step, area.x0:area.x1:step]
    rgb = inside.reshape(-1, inside.shape[-1])[:, :3].astype(np.int16) if inside.ndim == 3 \
        else np.repeat(inside.reshape(-1, 1), 3, axis=1).astype(np.int16)
    chroma = rgb.max(axis=1) - rgb.min(axis=1)
    if np.mean(chroma > 40) > 0.25:
        return "not-ultrasound", area
    gray = rgb.mean(axis=1).astype(np.uint8)
    lit = gray[gray > 12]
    if lit.size == 0:
        return "no-ultrasound-area", None
    counts = np.sort(np.bincount(lit, minlength=256))[::-1]
    if counts[:8].sum() > 0.5 * lit.size:
        return "not-ultrasound", area
    return "", area


# ---- the localiser's nodule: calipers and size ---------------------------------------------

def calipers(contour: list) -> tuple[list[list[float]], list[list[float]]] | None:
    """The two caliper segments of an outline: the long axis (the farthest pair of contour
    points) and the short axis (the widest chord perpendicular to it), as a radiologist
    places them. None for an outline of under 3 points."""
    points = np.asarray(contour, dtype=np.float64).reshape(-1, 2)
    if len(points) < 3:
        return None
    if len(points) > 400:  # the farthest pair is O(n^2): thin a long outline first
        points = points[np.linspace(0, len(points) - 1, 400).astype(int)]
    dist = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)
    i, j = np.unravel_index(int(dist.argmax()), dist.shape)
    a, b = points[i], points[j]
    axis = (b - a) / max(np.linalg.norm(b - a), 1e-9)
    normal = np.array([-axis[1], axis[0]])
    along, across = (points - a) @ axis, (points - a) @ normal
    # The widest chord across the long axis: per slice along it, the spread of the outline.
    bins = np.round(along).astype(int)
    best, short = -1.0, (a, a)
    for value in np.unique(bins):
        chosen = across[bins == value]
        width = float(chosen.max() - chosen.min())
        if width > best:
            best = width
            base = a + axis * float(value)
            short = (base + normal * float(chosen.min()), base + normal * float(chosen.max()))
    return ([a.round(1).tolist(), b.round(1).tolist()],
            [short[0].round(1).tolist(), short[1].round(1).tolist()])


def _nodule_with_calipers(nodule: Any, mm_per_pixel: float | None) -> dict | None:
    """The localiser's `nodule` object, each region with its caliper segments and, when
    the spacing is known and the bundle gave no millimetres, its axes in mm."""
    if not isinstance(nodule, dict):
        return None
    regions = []
    for region in nodule.get("regions") or []:
        region = dict(region)
        region["calipers"] = calipers(region.get("contour") or [])
        if region.get("long_axis_mm") is None and mm_per_pixel and region.get("long_axis_px"):
            region["long_axis_mm"] = round(float(region["long_axis_px"]) * mm_per_pixel, 1)
        if region.get("short_axis_mm") is None and mm_per_pixel and region.get("short_axis_px"):
            region["short_axis_mm"] = round(float(region["short_axis_px"]) * mm_per_pixel, 1)
        regions.append(region)
    return {**nodule, "regions": regions}


def _as_box(values: Any) -> Box | None:
    if values is None:
        return None
    try:
        x0, y0, x1, y1 = (int(round(float(v))) for v in values)
    except (TypeError, ValueError):
        return None
    return Box(x0, y0, x1, y1)


def _diameter(size_mm: float | None, box: Box | None, box_source: str,
              nodule: dict | None, mm_per_pixel: float | None) -> tuple[float | None, str]:
    """The largest diameter and where it came from: given > localiser outline > box side."""
    if size_mm is not None:
        return size_mm, "given"
    if box_source == "localiser" and nodule:
        lengths = [r.get("long_axis_mm") for r in nodule.get("regions") or []]
        lengths = [float(v) for v in lengths if v is not None]
        if lengths:
            return round(max(lengths), 1), "localiser"
    if box is not None and box_source == "given" and mm_per_pixel:
        return round(max(box.width, box.height) * mm_per_pixel, 1), "measured"
    return None, ""


def _descriptors(result: Any) -> dict[str, dict[str, Any]] | None:
    raw = getattr(result, "descriptors", None)
    if not isinstance(raw, dict) or not raw:
        return None
    out = {}
    for name in [n for n in DESCRIPTOR_NAMES if n in raw] + \
            [n for n in raw if n not in DESCRIPTOR_NAMES]:
        entry = raw[name]
        if isinstance(entry, dict):
            probabilities = {str(k): float(v) for k, v in (entry.get("probabilities") or {}).items()}
            value = str(entry.get("value") or (max(probabilities, key=probabilities.get)
                                               if probabilities else ""))
        else:
            value, probabilities = str(entry), {}
        out[name] = {"value": value, "probabilities": probabilities,
                     "confidence": probabilities.get(value)}
    return out


def descriptor_rule_path(values: dict[str, str] | None) -> str:
    """The guideline's rule applied to a full set of descriptor values ("" when one is
    unknown): the same `categories.rule_path` for the model's and the radiologist's."""
    if not values:
        return ""
    try:
        return _categories.rule_path(values)
    except (InputError, AttributeError, TypeError):
        return ""


def _optional_arguments(predictor, area: Box | None, mm_per_pixel: float | None) -> dict:
    """What this predictor's `predict` accepts beyond the image: the image area already
    found (so it is not searched again at full size) and the pixel size (the localiser's
    millimetres)."""
    import inspect

    try:
        accepted = inspect.signature(predictor.predict).parameters
    except (TypeError, ValueError):
        return {}
    extra: dict[str, Any] = {}
    if area is not None and "area" in accepted:
        extra["area"] = area
    if mm_per_pixel and "pixel_mm" in accepted:
        extra["pixel_mm"] = mm_per_pixel
    return extra


def _no_area_error(exc: Exception) -> bool:
    # The clean-frame function's NoImageAreaError (an InputError subclass), once it lands.
    return type(exc).__name__ == "NoImageAreaError"


def diagnose(predictor, image: CleanImage, *, box: Box | None = None,
             size_mm: float | None = None, mm_per_pixel: float | None = None,
             heatmap: bool = True, check: bool = True) -> Diagnosis:
    """Classify a checked image and attach the guideline's reading of the result.

    `box` is a drawn nodule box (it overrides the localiser's). The diameter is the given
    `size_mm`, else the localiser outline's long axis in mm, else the drawn box's longer
    side times the pixel spacing when both are known; the FNA advice uses it. `check` runs
    `screen_check` first: a picture that is no ultrasound screen abstains.
    """
    reason, area = screen_check(image.pixels, area=image.area) if check else ("", image.area)
    box_tuple = tuple(box) if box else None
    try:
        result = predictor.predict(image.pixels, box=box_tuple, heatmap=heatmap,
                                   **_optional_arguments(predictor, area, mm_per_pixel))
    except InputError as exc:
        if not _no_area_error(exc):
            raise
        return Diagnosis(label="", probabilities={}, heatmap=None, box=box, diameter_mm=size_mm,
                         diameter_source="given" if size_mm is not None else "", advice="",
                         abstain=True, abstain_reason="no-ultrasound-area",
                         box_source="given" if box else "none")
    probabilities = {str(k): float(v) for k, v in (result.probabilities or {}).items()}
    label = "" if result.label is None else str(result.label)  # None: a localiser-only bundle
    nodule = _nodule_with_calipers(getattr(result, "nodule", None), mm_per_pixel)
    box_source = str(getattr(result, "box_source", None) or ("given" if box else "none"))
    if box is None and nodule and nodule.get("box") is not None:
        box = _as_box(nodule["box"])
        box_source = "localiser"
    diameter, source = _diameter(size_mm, box, box_source, nodule, mm_per_pixel)
    heat = None
    if heatmap and getattr(result, "heatmap", None) is not None:
        heat = np.asarray(result.heatmap, dtype=np.float32)
        if heat.shape != (image.height, image.width):
            raise ModelError(f"the model's heatmap has shape {heat.shape}, "
                             f"not the image's {(image.height, image.width)}")
    abstain = bool(getattr(result, "abstain", False))
    abstain_reason = str(getattr(result, "abstain_reason", None) or "") if abstain else ""
    if reason and not abstain:  # the model's own reason first, else the screen check's
        abstain, abstain_reason = True, reason
    # A bundle trained on nodule boxes (crop "roi") classifies the box; any other uses the
    # box only to measure the nodule.
    spec = getattr(predictor, "spec", None)
    classified = "box" if box is not None and getattr(spec, "crop", "full") == "roi" else "image"
    descriptors = _descriptors(result)
    path = str(getattr(result, "rule_path", None) or "") or descriptor_rule_path(
        {k: v["value"] for k, v in (descriptors or {}).items()})
    common = dict(label=label, probabilities=probabilities, heatmap=heat, box=box,
                  diameter_mm=diameter, diameter_source=source, classified=classified,
                  class_names=tuple(probabilities), box_source=box_source, nodule=nodule,
                  nodule_reason=str(getattr(result, "nodule_reason", None) or ""),
                  descriptors=descriptors, rule_path=path,
                  abstain=abstain, abstain_reason=abstain_reason, image_area=area)
    if label in EU_TIRADS_LABELS:
        cat = CATEGORIES[int(label)]
        return Diagnosis(**common, advice="" if abstain else fna_advice(cat.number, diameter),
                         name=cat.name, definition=cat.definition, risk=cat.risk_text)
    # A bundle trained on another scheme (e.g. DDTI's 4a/4b): no EU-TIRADS advice to give.
    return Diagnosis(**common, name=f"class {label}",
                     advice="" if abstain else "This model's classes are not EU-TIRADS "
                                               "categories: no guideline advice.")


def outline_geometry(nodule: dict | None, box: dict | None, box_source: str, *,
                     offset: tuple[int, int] = (0, 0),
                     size: tuple[int, int] | None = None) -> dict[str, Any]:
    """What to draw over an image (SVG-ready numbers): each region's contour as a "points"
    string, its two calipers as line segments with their lengths, and the nodule box.
    `offset` is the drawn image's corner in the upload's pixels (a kept image holds the
    image area only); `size` the drawn image's (width, height), for line widths."""
    dx, dy = offset

    def pt(p) -> tuple[float, float]:
        return round(float(p[0]) - dx, 1), round(float(p[1]) - dy, 1)

    regions = []
    for region in (nodule or {}).get("regions") or []:
        contour = [pt(p) for p in region.get("contour") or []]
        lines = []
        for which, seg in zip(("long", "short"), region.get("calipers") or ()):
            (x0, y0), (x1, y1) = pt(seg[0]), pt(seg[1])
            lines.append({"axis": which, "x0": x0, "y0": y0, "x1": x1, "y1": y1,
                          "mm": region.get(f"{which}_axis_mm"),
                          "px": region.get(f"{which}_axis_px")})
        regions.append({"points": " ".join(f"{x},{y}" for x, y in contour), "calipers": lines})
    rect = None
    if box:
        rect = {"x": box["x0"] - dx, "y": box["y0"] - dy, "w": box["x1"] - box["x0"],
                "h": box["y1"] - box["y0"], "source": box_source}
    # Line widths in image pixels, so they look the same at any image size.
    stroke = round(max(1.5, max(size or (0, 0)) / 250), 1)
    return {"regions": regions, "box": rect, "stroke": stroke, "dot": round(stroke * 1.6, 1),
            "font": round(stroke * 7, 1), "any": bool(regions or rect)}


# ---- images for the page and the API -------------------------------------------------------

def heatmap_overlay_png(heatmap: np.ndarray) -> bytes:
    """An RGBA PNG layer for the page: colour by heat, cool parts more transparent."""
    rgba = np.empty(heatmap.shape + (4,), np.uint8)
    rgba[..., :3] = colorize(heatmap)
    rgba[..., 3] = (np.clip(heatmap, 0, 1) ** 0.5 * 255).astype(np.uint8)
    return encode_png(rgba)


def heatmap_png(heatmap: np.ndarray) -> bytes:
    """The heatmap as an 8-bit grey PNG at the image's size (the API's form)."""
    return encode_png((np.clip(heatmap, 0, 1) * 255).round().astype(np.uint8))


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
