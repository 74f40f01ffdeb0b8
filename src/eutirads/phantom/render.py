"""B-mode rendering: from a `Case` and a `View` to the grey image a linear probe shows.

The model follows how the scanner forms the picture, so the texture is speckle and not
flat shapes:

1. an echo-level map in dB (tissue reflectivity): skin, fat with septa, fibrillar strap
   and sternocleidomastoid muscles, the homogeneous thyroid lobe with its capsule, the
   anechoic carotid and jugular, the trachea's air line with shadow and reverberation,
   the nodule with its drawn features;
2. acoustic effects along each beam (image column): posterior enhancement behind fluid,
   shadow behind calcifications and air;
3. speckle: complex Gaussian scatterers weighted by the amplitude map, blurred by an
   anisotropic point-spread function (wider across the beam than along it), whose
   envelope is Rayleigh-distributed; bright point reflectors (calcifications) add
   coherently so they stay bright;
4. log compression with the view's gain, dynamic range and a residual depth-gain error.

Everything is vectorised numpy/scipy on one image area (about 400 x 300 pixels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from .scene import Case, NoduleGeometry, View

__all__ = ["Rendered", "render_bmode"]

ANECHOIC_DB = -45.0


@dataclass(frozen=True)
class Rendered:
    pixels: np.ndarray        # HxW uint8
    nodule_mask: np.ndarray   # HxW bool (all False without a nodule)
    px_per_cm: float


def _resize(small: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float32 array (Pillow's "F" mode: much faster than ndimage.zoom)."""
    image = Image.fromarray(np.ascontiguousarray(small, dtype=np.float32), mode="F")
    return np.asarray(image.resize((shape[1], shape[0]), Image.Resampling.BILINEAR))


def _low_freq(rng: np.random.Generator, shape: tuple[int, int], cell: int) -> np.ndarray:
    """Smooth unit-variance noise varying over about `cell` pixels (cheap: resized up)."""
    small = rng.standard_normal((shape[0] // cell + 2, shape[1] // cell + 2)).astype(np.float32)
    return _resize(small, shape)


def _fibres(rng: np.random.Generator, shape: tuple[int, int], along: float,
            across: float) -> np.ndarray:
    """Unit-variance striations running across the image (muscle fibres, fat septa).

    Drawn at a quarter of the width and stretched: the long lateral blur is what makes
    them fibres, and it costs a quarter as much there."""
    narrow = (shape[0], shape[1] // 4 + 2)
    noise = rng.standard_normal(narrow).astype(np.float32)
    noise = ndimage.gaussian_filter1d(noise, along / 4, axis=1, mode="nearest")
    noise = ndimage.gaussian_filter1d(noise, across, axis=0, mode="nearest")
    noise = _resize(noise, shape)
    return noise / (noise.std() + 1e-6)


def _harmonic_radius(theta: np.ndarray, harmonics, spicules=()) -> np.ndarray:
    radius = np.ones_like(theta)
    for order, amplitude, phase in harmonics:
        radius += amplitude * np.cos(order * theta + phase)
    for angle, height, width in spicules:
        delta = np.angle(np.exp(1j * (theta - angle)))
        radius += height * np.exp(-0.5 * (delta / width) ** 2)
    return radius


def _ellipse(X, Y, cx, cy, a, b):
    return ((X - cx) / a) ** 2 + ((Y - cy) / b) ** 2


def _window(cx_px: float, cy_px: float, radius_px: float, shape: tuple[int, int]):
    r0 = max(0, int(cy_px - radius_px) - 1)
    r1 = min(shape[0], int(cy_px + radius_px) + 2)
    c0 = max(0, int(cx_px - radius_px) - 1)
    c1 = min(shape[1], int(cx_px + radius_px) + 2)
    return slice(r0, r1), slice(c0, c1)


class _Canvas:
    """The echo map being painted, with the coordinate grids in cm."""

    def __init__(self, case: Case, view: View, height: int, width: int):
        self.ppc = height / view.depth_cm
        self.shape = (height, width)
        cols = (np.arange(width, dtype=np.float32) - width / 2 + 0.5) / self.ppc + view.shift_x
        if case.anatomy.left:
            cols = -cols  # a left lobe: trachea on the screen's left
        rows = (np.arange(height, dtype=np.float32) + 0.5) / self.ppc + view.shift_y
        self.X, self.Y = np.meshgrid(cols, rows)
        self.cols, self.rows = cols, rows
        self.db = np.zeros(self.shape, np.float32)
        self.fluid = np.zeros(self.shape, np.float32)     # gives posterior enhancement
        self.blocker = np.zeros(self.shape, np.float32)   # gives acoustic shadow
        self.points = np.zeros(self.shape, np.float32)    # coherent bright reflectors
        self.shadow_free = np.zeros(self.shape, bool)     # drawn with its own shadow

    def to_px(self, x_cm: float, y_cm: float) -> tuple[float, float]:
        """Pixel (column, row) of an anatomical point."""
        sign = -1.0 if self.cols[-1] < self.cols[0] else 1.0
        col = (sign * x_cm - (self.cols[0] * sign)) * self.ppc
        row = (y_cm - self.rows[0]) * self.ppc
        return float(col), float(row)


def _paint_anatomy(c: _Canvas, case: Case, rng: np.random.Generator) -> None:
    a = case.anatomy
    X, Y, shape = c.X, c.Y, c.shape
    c.db[:] = a.deep_db + 2.0 * _low_freq(rng, shape, 20)
    fibres = _fibres(rng, shape, along=9.0, across=0.8)

    # Longus colli (posterior, medial): a dark muscle under the lobe.
    longus = _ellipse(X, Y, a.trachea_cx - 0.5, a.lobe_cy + a.lobe_b + 0.55, 1.0, 0.4) <= 1
    c.db[longus] = a.muscle_db + 1 + 2.0 * fibres[longus]

    # Thyroid lobe: homogeneous, medium-bright, fine texture, thin bright capsule.
    theta = np.arctan2((Y - a.lobe_cy) / a.lobe_b, (X - a.lobe_cx) / a.lobe_a)
    rho = np.sqrt(_ellipse(X, Y, a.lobe_cx, a.lobe_cy, a.lobe_a, a.lobe_b))
    edge = _harmonic_radius(theta, a.lobe_harmonics)
    lobe = rho <= edge
    c.db[lobe] = 0.8 * _low_freq(rng, shape, 16)[lobe]
    capsule = (rho > edge - 0.035 / a.lobe_b) & (rho <= edge + 0.01 / a.lobe_b)
    c.db[capsule] = 5.0

    # Strap muscles over the lobe (a lens thinning laterally), then the
    # sternocleidomastoid laterally: darker than thyroid, fibrillar.
    lens = a.strap * np.clip(1 - 0.45 * ((X - a.lobe_cx) / (1.6 * a.lobe_a)) ** 2, 0.25, 1)
    strap = (Y >= a.fat) & (Y < a.fat + lens) & ~lobe
    c.db[strap] = a.muscle_db + 2.5 * fibres[strap]
    scm = _ellipse(X, Y, a.carotid_cx - 0.6, a.fat + a.scm_thickness / 2 + 0.02,
                   1.4, a.scm_thickness / 2) <= 1
    c.db[scm] = a.muscle_db + 0.5 + 2.5 * fibres[scm]

    # Subcutaneous fat with bright septa, and the bright skin line.
    fat = (Y >= a.skin) & (Y < a.fat)
    septa = _fibres(rng, shape, along=14.0, across=0.7)
    c.db[fat] = a.fat_db + np.where(septa[fat] > 1.2, 10.0, 0.0) + 1.5 * septa[fat]
    # Fascial planes: thin bright lines around the strap muscles.
    fascia = ((np.abs(Y - a.fat) < 0.02) | (np.abs(Y - (a.fat + lens)) < 0.015)) & ~lobe
    c.db[fascia] = 1.0 + 2.0 * fibres[fascia]
    skin = Y < a.skin
    c.db[skin] = 6.0 + 2.0 * fibres[skin]

    # The isthmus: a band of thyroid from the lobe's medial side over the trachea.
    isthmus = ((X > a.lobe_cx) & (Y >= a.fat + lens) & (Y < a.fat + lens + a.isthmus)
               & (Y < a.trachea_top - 0.18) & ~lobe)
    c.db[isthmus] = 0.8 * _low_freq(rng, shape, 16)[isthmus]
    edge_line = isthmus & ~ndimage.binary_erosion(isthmus, iterations=1)
    c.db[edge_line] = 4.0

    # Carotid artery and jugular vein: anechoic lumens with bright walls.
    rho_c = np.sqrt(_ellipse(X, Y, a.carotid_cx, a.carotid_cy, a.carotid_r, a.carotid_r))
    c.db[(rho_c > 1) & (rho_c < 1 + 0.05 / a.carotid_r)] = 7.0
    lumen = rho_c <= 1
    c.db[lumen] = ANECHOIC_DB
    c.fluid[lumen] = 1.0
    _edge_shadows(c, a.carotid_cx, a.carotid_cy + a.carotid_r * 0.3, a.carotid_r * 1.1, rng)
    if a.jugular is not None:
        jx, jy, ja, jb = a.jugular
        rho_j = np.sqrt(_ellipse(X, Y, jx, jy, ja, jb))
        c.db[(rho_j > 1) & (rho_j < 1 + 0.03 / jb)] = 3.0
        vein = rho_j <= 1
        c.db[vein] = ANECHOIC_DB
        c.fluid[vein] = 1.0

    # Oesophagus (left side): hypoechoic muscular wall around a bright mucosal centre.
    if a.esophagus is not None:
        ex, ey, ea, eb = a.esophagus
        rho_e = np.sqrt(_ellipse(X, Y, ex, ey, ea, eb))
        wall = rho_e <= 1
        c.db[wall] = a.muscle_db - 3 + 1.5 * fibres[wall]
        mucosa = rho_e <= 0.4
        c.db[mucosa] = -2.0 + 2.0 * fibres[mucosa]

    # Trachea: dark cartilage ring, a very bright air line, then shadow with reverberation.
    tcy = a.trachea_top + a.trachea_r
    rho_t = np.sqrt(_ellipse(X, Y, a.trachea_cx, tcy, a.trachea_r, a.trachea_r))
    upper = Y < tcy + 0.2
    cartilage = (rho_t > 1) & (rho_t < 1 + 0.16 / a.trachea_r) & upper
    c.db[cartilage] = a.muscle_db - 4 + 1.5 * fibres[cartilage]
    air_line = (rho_t > 1 - 0.035 / a.trachea_r) & (rho_t <= 1) & upper
    c.points[air_line] = 2.5
    c.blocker[air_line] = 1.0
    inside = (rho_t <= 1 - 0.035 / a.trachea_r) | ((np.abs(X - a.trachea_cx) < a.trachea_r * 0.97) & ~upper)
    # Reverberation: fading copies of the air line at multiples of its depth.
    below_wall = np.clip((Y - (tcy - a.trachea_r * np.sqrt(np.clip(
        1 - ((X - a.trachea_cx) / a.trachea_r) ** 2, 0, 1)))) * c.ppc, 0, None)
    spacing = max(5.0, (a.trachea_top - a.skin) * c.ppc * 0.6)
    reverb = np.where((below_wall % spacing) < 0.12 * spacing,
                      12.0 * np.exp(-below_wall / (2.5 * spacing)), 0.0)
    c.db[inside] = -20.0 + reverb[inside] + 2.0 * fibres[inside]
    c.shadow_free |= inside


def _edge_shadows(c: _Canvas, cx: float, cy: float, half_width: float,
                  rng: np.random.Generator) -> None:
    """Refraction at the sides of a round fluid-filled structure: thin shadows under its
    lateral edges."""
    for side in (-1.0, 1.0):
        x = cx + side * half_width * 0.97
        stripe = (np.abs(c.X - x) < float(rng.uniform(0.015, 0.03))) & (c.Y > cy)
        c.db[stripe] -= float(rng.uniform(6.0, 12.0))


def _paint_nodule(c: _Canvas, case: Case, view: View, rng: np.random.Generator) -> np.ndarray:
    n: NoduleGeometry = case.nodule  # type: ignore[assignment]
    hw, hh = n.half_width * view.nodule_scale, n.half_height * view.nodule_scale
    angle = n.angle + view.nodule_turn
    ccol, crow = c.to_px(n.cx, n.cy)
    reach = max(hw, hh) * 1.75 * c.ppc + 4
    win = _window(ccol, crow, reach, c.shape)
    X, Y = c.X[win], c.Y[win]
    cos, sin = np.cos(angle), np.sin(angle)
    u = (X - n.cx) * cos + (Y - n.cy) * sin
    v = -(X - n.cx) * sin + (Y - n.cy) * cos
    theta = np.arctan2(v / hh, u / hw)
    rho = np.sqrt((u / hw) ** 2 + (v / hh) ** 2)
    edge = _harmonic_radius(theta, n.harmonics, n.spicules)
    irregular = case.features.margins == "irregular"
    # Irregular margins are also less sharp (infiltrative); smooth ones are crisp.
    softness = (0.03 if irregular else 0.025) / min(hw, hh)
    alpha = np.clip((edge - rho) / softness + 0.5, 0, 1)
    inside = alpha > 0.5

    db = c.db[win]
    fluid = c.fluid[win]
    if n.halo > 0:
        ring = (rho > edge) & (rho < edge + n.halo / min(hw, hh))
        db[ring] = n.halo_db
    # Nodular tissue has a coarser, more heterogeneous echotexture than thyroid.
    texture = n.texture_db * (0.6 * _low_freq(rng, db.shape, 8) + 0.8 * _low_freq(rng, db.shape, 3))
    composition = case.features.composition
    if composition == "cystic":
        solid = np.full(db.shape, ANECHOIC_DB, np.float32)
        wall = (rho > edge - 0.04 / min(hw, hh)) & (rho <= edge)
        solid[wall] = 4.0
        fluid[inside & ~wall] = 1.0
        _edge_shadows(c, n.cx, n.cy, hw * abs(cos) + hh * abs(sin), rng)
    else:
        level = n.level_db + (2.0 if composition == "spongiform" else 0.0)
        solid = level + texture
    db[:] = db * (1 - alpha) + solid * alpha

    # Cystic spaces (spongiform, mixed), placed in the nodule's own rotated frame.
    if n.cyst_blobs:
        cyst = np.zeros(db.shape, bool)
        for dx, dy, radius in n.cyst_blobs:
            bx = n.cx + dx * cos - dy * sin
            by = n.cy + dx * sin + dy * cos
            wobble = 1 + 0.25 * rng.standard_normal()
            cyst |= _ellipse(X, Y, bx, by, radius * abs(wobble) + 1e-3, radius) <= 1
        cyst &= rho <= edge - 0.06 / min(hw, hh)
        db[cyst] = ANECHOIC_DB
        fluid[cyst] = 1.0

    # Microcalcifications: punctate foci that stay bright (coherent), no shadow.
    points = c.points[win]
    for dx, dy, radius in n.foci:
        fx = n.cx + dx * cos - dy * sin
        fy = n.cy + dx * sin + dy * cos
        dot = _ellipse(X, Y, fx, fy, radius, radius) <= 1
        if not dot.any():
            col, row = c.to_px(fx, fy)
            r, q = int(row) - win[0].start, int(col) - win[1].start
            if 0 <= r < dot.shape[0] and 0 <= q < dot.shape[1]:
                dot[r, q] = True
        points[dot & inside] = float(rng.uniform(6.0, 12.0))
    # Comet tails (colloid): a bright focus with a fading vertical streak under it.
    for dx, dy, length in n.comets:
        tx = n.cx + dx * cos - dy * sin
        ty = n.cy + dx * sin + dy * cos
        below = Y - ty
        taper = np.clip(1 - below / length, 0, 1)
        tail = (np.abs(X - tx) < 0.004 + 0.016 * taper) & (below >= 0) & (below < length)
        # Reverberation between the colloid crystal's faces: closely spaced bands.
        bands = 0.6 + 0.4 * np.cos(2 * np.pi * below / 0.025)
        points[tail] = (6.0 * np.exp(-3.0 * below / length) * bands)[tail]
    # A coarse (macro) calcification: bright curved plaque with a dense shadow.
    if n.macro is not None:
        dx, dy, radius = n.macro
        mx = n.cx + dx * cos - dy * sin
        my = n.cy + dx * sin + dy * cos
        rho_m = np.sqrt(_ellipse(X, Y, mx, my, radius * 1.3, radius * 0.7))
        plaque = (rho_m <= 1) & (Y < my + 0.02)
        points[plaque] = 9.0
        c.blocker[win][plaque] = 1.0
    mask = np.zeros(c.shape, bool)
    mask[win] = inside
    return mask


def _acoustics(c: _Canvas) -> np.ndarray:
    """dB offsets along each beam: enhancement behind fluid, shadow behind blockers."""
    fluid_cm = np.cumsum(c.fluid, axis=0) / c.ppc
    behind_fluid = np.clip(fluid_cm - 0.0, 0, None)
    enhancement = np.minimum(7.0, 6.0 * behind_fluid) * (c.fluid == 0)
    blocked = np.cumsum(c.blocker, axis=0) > 0
    shadow = ndimage.gaussian_filter1d(np.where(blocked, -22.0, 0.0).astype(np.float32), 2.0,
                                       axis=1)
    shadow[(c.blocker > 0) | c.shadow_free] = 0.0
    return enhancement + shadow


def render_bmode(case: Case, view: View, height: int, width: int,
                 rng: np.random.Generator) -> Rendered:
    """The image area (height x width pixels) of one view of `case`."""
    if height < 32 or width < 32:
        raise ValueError(f"image area too small: {width}x{height}")
    c = _Canvas(case, view, height, width)
    _paint_anatomy(c, case, rng)
    mask = (_paint_nodule(c, case, view, rng) if case.nodule is not None
            else np.zeros(c.shape, bool))
    amplitude = np.exp((c.db + _acoustics(c)) * np.float32(np.log(10) / 20))

    # Speckle: physical grain (about 0.15 x 0.3 mm at 12 MHz) converted to pixels.
    scale = 12.0 / view.frequency_mhz
    sigma_y = max(0.7, 0.018 * scale * c.ppc)
    sigma_x = max(1.2, 0.034 * scale * c.ppc)
    norm = np.sqrt(4 * np.pi * sigma_x * sigma_y)
    sigma = (sigma_y, sigma_x)
    # Bright point reflectors add coherently (same phase in every pattern), so they stay
    # bright; the filter is linear, so they go into the real part before filtering.
    points = c.points * np.float32(2 * np.pi * sigma_x * sigma_y / norm)
    noise = 10 ** (-48 / 20)
    # Spatial compounding (standard on thyroid presets): two independent speckle
    # patterns averaged in intensity soften the speckle's dark holes.
    intensity = np.zeros(c.shape, np.float32)
    for _ in range(2):
        real = ndimage.gaussian_filter(
            rng.standard_normal(c.shape, dtype=np.float32) * amplitude + points, sigma,
            truncate=3.0)
        imag = ndimage.gaussian_filter(
            rng.standard_normal(c.shape, dtype=np.float32) * amplitude, sigma, truncate=3.0)
        intensity += (real * real + imag * imag) * np.float32(norm * norm)
    # Electronic noise floor: exponential intensity, what anechoic areas show.
    intensity += np.float32(2 * noise * noise) * rng.standard_exponential(c.shape, dtype=np.float32)
    db = 10.0 * np.log10(intensity / 2 + 1e-12)
    db = ndimage.gaussian_filter(db, 0.6, truncate=2.0)
    # The beam widens away from the focal zone: blend in a laterally blurred copy there.
    depth = c.rows - c.rows[0]
    focus = 0.45 * depth[-1]
    widen = np.clip(np.abs(depth - focus) / max(focus, 1e-3), 0, 1)[:, None] * 0.7
    db = db * (1 - widen) + ndimage.gaussian_filter1d(db, 1.5 * sigma_x, axis=1) * widen

    tgc = view.tgc_slope * (depth - depth.mean())
    # A slight brightening of the focal zone, as on most scanners.
    tgc += 1.0 * np.exp(-0.5 * ((depth - 0.45 * depth[-1]) / 0.8) ** 2)
    db += tgc[:, None].astype(np.float32)
    low = 1.5 - view.gain * view.dynamic_range  # thyroid's mean log-speckle is about +0.5 dB
    gray = (db - low) * (255.0 / view.dynamic_range)
    pixels = np.clip(gray, 0, 255).astype(np.uint8)
    return Rendered(pixels=pixels, nodule_mask=mask, px_per_cm=c.ppc)
