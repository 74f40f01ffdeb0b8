"""What a phantom image shows: the drawn EU-TIRADS features, the patient's anatomy and
the probe's view, as plain dataclasses sampled from a numpy random generator.

Sampling works backwards from the label: a class is chosen first (equal or natural
balance), then features are drawn from that class's share of the feature space, and the
label is checked again with `eutirads.categories.classify`, so the label always equals
the guideline's verdict on what is drawn. All lengths are in centimetres; the lateral
coordinate `x` runs from the lateral side (carotid, negative) to the medial side
(trachea, positive) before the image is mirrored for a left lobe.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..categories import DESCRIPTORS, NoduleFeatures, classify

__all__ = [
    "NATURAL_PREVALENCE",
    "FEATURE_COLUMNS",
    "NoduleGeometry",
    "Anatomy",
    "View",
    "Case",
    "sample_label",
    "sample_features",
    "sample_case",
    "sample_view",
]

# Rough share of categories among thyroid ultrasound examinations with a reported finding
# (most nodules are benign or low risk); "natural" balance draws labels from it.
NATURAL_PREVALENCE: dict[int, float] = {1: 0.10, 2: 0.20, 3: 0.35, 4: 0.20, 5: 0.15}
# The manifest's descriptor columns, named and valued as `eutirads.categories` says.
FEATURE_COLUMNS: tuple[str, ...] = tuple(DESCRIPTORS)


@dataclass(frozen=True)
class NoduleGeometry:
    """Where and how big the nodule is, and the random parameters of its outline."""

    cx: float                  # centre, lateral (cm, image centre = 0)
    cy: float                  # centre, depth (cm from the skin)
    half_width: float          # semi-axis across the beam (cm)
    half_height: float         # semi-axis along the beam (cm)
    angle: float               # rotation (radians)
    harmonics: tuple[tuple[int, float, float], ...]   # (order, amplitude, phase) of the outline
    spicules: tuple[tuple[float, float, float], ...]  # (angle, height, width) of spikes
    level_db: float            # echo level of the solid tissue relative to thyroid
    cyst_blobs: tuple[tuple[float, float, float], ...]  # (dx, dy, radius) cystic parts (cm)
    foci: tuple[tuple[float, float, float], ...]        # (dx, dy, radius) microcalcifications
    macro: tuple[float, float, float] | None            # (dx, dy, radius) coarse calcification
    halo: float                # thickness of a thin peripheral rim (cm), 0 = none
    halo_db: float             # its level: a hypoechoic halo or an echogenic capsule
    texture_db: float          # internal heterogeneity (dB)
    # (dx, dy, length) comet-tail artefacts of inspissated colloid (cm): a benign sign
    comets: tuple[tuple[float, float, float], ...] = ()

    @property
    def diameter_mm(self) -> float:
        return 20.0 * max(self.half_width, self.half_height)


@dataclass(frozen=True)
class Anatomy:
    """One patient's neck as a transverse view of one thyroid lobe shows it."""

    depth_cm: float
    skin: float
    fat: float                 # depth of the fat/strap-muscle interface
    strap: float               # strap muscle thickness over the lobe
    muscle_db: float           # strap muscle echo level relative to thyroid (negative)
    fat_db: float
    deep_db: float
    lobe_cx: float
    lobe_cy: float
    lobe_a: float              # lateral semi-axis
    lobe_b: float              # antero-posterior semi-axis
    lobe_harmonics: tuple[tuple[int, float, float], ...]
    scm_thickness: float       # sternocleidomastoid, lateral
    carotid_r: float
    carotid_cx: float
    carotid_cy: float
    jugular: tuple[float, float, float, float] | None  # cx, cy, semi-axes (a, b)
    trachea_r: float
    trachea_cx: float
    trachea_top: float
    left: bool                 # left lobe: the image is mirrored (trachea on screen left)
    isthmus: float = 0.25      # thickness of the isthmus crossing over the trachea
    esophagus: tuple[float, float, float, float] | None = None  # cx, cy, a, b (left side)


@dataclass(frozen=True)
class View:
    """What changes between two images of the same patient: probe position and settings."""

    shift_x: float             # probe moved laterally (cm)
    shift_y: float             # compression / depth shift (cm)
    depth_cm: float
    gain: float                # where thyroid sits on the grey scale (0..1)
    dynamic_range: float       # dB
    tgc_slope: float           # residual depth gain error (dB/cm)
    nodule_scale: float        # another section through the nodule
    nodule_turn: float         # radians
    frequency_mhz: int


@dataclass(frozen=True)
class Case:
    """One patient: the label, the drawn features, the anatomy and the nodule (or none)."""

    label: int
    features: NoduleFeatures
    anatomy: Anatomy
    nodule: NoduleGeometry | None

    def feature_row(self) -> dict[str, str]:
        """Manifest columns describing the drawn features (empty for category 1)."""
        if not self.features.nodule:
            return {column: "" for column in FEATURE_COLUMNS}
        return {column: getattr(self.features, column) for column in FEATURE_COLUMNS}


def sample_label(rng: np.random.Generator, index: int, balance: str) -> int:
    """Category of patient `index`: "equal" cycles 1..5 (exactly equal counts), "natural"
    draws from NATURAL_PREVALENCE."""
    if balance == "equal":
        return index % 5 + 1
    labels = list(NATURAL_PREVALENCE)
    weights = np.array([NATURAL_PREVALENCE[k] for k in labels])
    return int(rng.choice(labels, p=weights / weights.sum()))


def _pick(rng: np.random.Generator, options: dict[str, float]) -> str:
    names = list(options)
    weights = np.array([options[n] for n in names], dtype=float)
    return str(names[int(rng.choice(len(names), p=weights / weights.sum()))])


def sample_features(rng: np.random.Generator, label: int) -> NoduleFeatures:
    """Features drawn from the part of the feature space the guideline maps to `label`."""
    if label == 1:
        features = NoduleFeatures(nodule=False)
    elif label == 2:
        if rng.random() < 0.5:
            features = NoduleFeatures(composition="cystic", echogenicity="anechoic")
        else:
            features = NoduleFeatures(composition="spongiform", echogenicity="isoechoic")
    elif label in (3, 4):
        features = NoduleFeatures(
            composition=_pick(rng, {"solid": 0.75, "mixed": 0.25}),
            echogenicity=(_pick(rng, {"isoechoic": 0.6, "hyperechoic": 0.4}) if label == 3
                          else "mildly_hypoechoic"),
            echogenic_foci="macrocalcifications" if rng.random() < 0.15 else "none")
    elif label == 5:
        # Any non-empty set of high-risk features; single features are common so that
        # each one alone must be seen.
        while True:
            shape_risk = rng.random() < 0.45
            irregular = rng.random() < 0.45
            micro = rng.random() < 0.45
            marked = rng.random() < 0.4
            if shape_risk or irregular or micro or marked:
                break
        echo = ("markedly_hypoechoic" if marked else
                _pick(rng, {"mildly_hypoechoic": 0.65, "isoechoic": 0.28, "hyperechoic": 0.07}))
        foci = ("microcalcifications" if micro else
                ("macrocalcifications" if rng.random() < 0.15 else "none"))
        features = NoduleFeatures(
            composition=_pick(rng, {"solid": 0.85, "mixed": 0.15}),
            echogenicity=echo,
            shape=(_pick(rng, {"non_oval": 0.5, "taller_than_wide": 0.5}) if shape_risk
                   else "oval"),
            margins="irregular" if irregular else "smooth",
            echogenic_foci=foci)
    else:
        raise ValueError(f"not an EU-TIRADS category: {label}")
    assert classify(features) == label, (features, label)
    return features


def _level_db(rng: np.random.Generator, echogenicity: str, muscle_db: float) -> float:
    """Echo level of the nodule's solid tissue relative to thyroid (0 dB).

    The guideline judges echogenicity against thyroid and strap muscle, so the levels are
    drawn relative to this patient's muscle level: mildly hypo lies between muscle and
    thyroid, marked hypo under the muscle.
    """
    if echogenicity == "hyperechoic":
        return float(rng.uniform(4.0, 8.0))
    if echogenicity == "isoechoic":
        return float(rng.uniform(-0.5, 0.5))
    if echogenicity == "mildly_hypoechoic":
        return float(muscle_db * rng.uniform(0.5, 0.74))
    if echogenicity == "markedly_hypoechoic":
        return float(muscle_db - rng.uniform(3.5, 7.5))
    return -40.0  # anechoic


def _outline(rng: np.random.Generator, shape: str, margins: str):
    """Outline harmonics and spicules: smooth ellipses for oval nodules, big low-order
    lobes for non-oval shapes, many high-order wiggles and spikes for irregular margins."""
    harmonics: list[tuple[int, float, float]] = []
    spicules: list[tuple[float, float, float]] = []
    for order in (2, 3):
        amplitude = rng.uniform(0.0, 0.035)
        if shape == "non_oval":
            amplitude = rng.uniform(0.13, 0.23)
        harmonics.append((order, float(amplitude), float(rng.uniform(0, 2 * np.pi))))
    if shape == "non_oval":
        harmonics.append((4, float(rng.uniform(0.03, 0.08)), float(rng.uniform(0, 2 * np.pi))))
    if margins == "irregular":
        for order in rng.choice(np.arange(5, 16), size=int(rng.integers(4, 7)), replace=False):
            harmonics.append((int(order), float(rng.uniform(0.05, 0.1)),
                              float(rng.uniform(0, 2 * np.pi))))
        for _ in range(int(rng.integers(1, 7))):
            spicules.append((float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0.15, 0.4)),
                             float(rng.uniform(0.03, 0.07))))
    return tuple(harmonics), tuple(spicules)


def _nodule(rng: np.random.Generator, features: NoduleFeatures, muscle_db: float):
    """Nodule size, outline and contents (centre filled in later, inside the lobe)."""
    # 5-35 mm, most between 8 and 25 mm, as in clinical series.
    diameter = float(np.clip(rng.lognormal(np.log(1.5), 0.38), 0.5, 3.5))
    shape = features.shape
    if shape == "oval":
        aspect = rng.uniform(1.15, 1.8)
        width, height = diameter, diameter / aspect
        angle = rng.normal(0, 0.12)
    elif shape == "taller_than_wide":
        aspect = rng.uniform(1.25, 1.7)
        width, height = diameter / aspect, diameter
        angle = rng.normal(0, 0.1)
    else:
        aspect = rng.uniform(0.95, 1.3)
        width, height = diameter, diameter / aspect
        angle = rng.uniform(-0.5, 0.5)
    harmonics, spicules = _outline(rng, shape, features.margins)
    hw, hh = width / 2, height / 2
    small = min(hw, hh)

    cyst_blobs: list[tuple[float, float, float]] = []
    if features.composition == "spongiform":
        # Many small cystic spaces filling most of the nodule, separated by thin septa.
        count = int(np.clip(55 * (hw * hh) / 0.25, 25, 260))
        for _ in range(count):
            r = np.sqrt(rng.random())
            t = rng.uniform(0, 2 * np.pi)
            cyst_blobs.append((float(0.92 * hw * r * np.cos(t)), float(0.92 * hh * r * np.sin(t)),
                               float(rng.uniform(0.035, 0.085) * np.clip(small / 0.5, 0.8, 1.4))))
    elif features.composition == "mixed":
        for _ in range(int(rng.integers(1, 4))):
            r = rng.uniform(0.15, 0.55)
            t = rng.uniform(0, 2 * np.pi)
            cyst_blobs.append((float(hw * r * np.cos(t)), float(hh * r * np.sin(t)),
                               float(small * rng.uniform(0.3, 0.5))))

    foci: list[tuple[float, float, float]] = []
    if features.echogenic_foci == "microcalcifications":
        # Clusters of punctate bright foci, 0.2-0.5 mm, several per nodule, at least
        # 0.6 mm apart so that they read as separate dots.
        clusters = int(rng.integers(1, 3))
        count = int(rng.integers(5, 16))
        centres = [(rng.uniform(-0.4, 0.4) * hw, rng.uniform(-0.4, 0.4) * hh)
                   for _ in range(clusters)]
        for i in range(count * 4):
            if len(foci) == count:
                break
            ccx, ccy = centres[i % clusters]
            fx = float(ccx + rng.normal(0, 0.28 * hw))
            fy = float(ccy + rng.normal(0, 0.28 * hh))
            if (fx / hw) ** 2 + (fy / hh) ** 2 > 0.7:
                continue
            if all((fx - x) ** 2 + (fy - y) ** 2 > 0.06 ** 2 for x, y, _ in foci):
                foci.append((fx, fy, float(rng.uniform(0.01, 0.025))))
    macro = None
    if features.echogenic_foci == "macrocalcifications":
        macro = (float(rng.uniform(-0.4, 0.4) * hw), float(rng.uniform(-0.4, 0.1) * hh),
                 float(rng.uniform(0.1, 0.22)))

    comets: list[tuple[float, float, float]] = []
    if features.composition in ("cystic", "spongiform") and rng.random() < 0.3:
        for _ in range(int(rng.integers(1, 4))):
            comets.append((float(rng.uniform(-0.5, 0.5) * hw), float(rng.uniform(-0.6, 0.2) * hh),
                           float(rng.uniform(0.12, 0.3))))
    level = _level_db(rng, features.echogenicity, muscle_db)
    # Smooth solid nodules usually show a rim (a thin hypoechoic halo or an echogenic
    # capsule); isoechoic ones are seen mostly by it and by their coarser texture.
    halo, halo_db = 0.0, 0.0
    iso = features.echogenicity == "isoechoic"
    if features.margins == "smooth" and features.composition in ("solid", "mixed") \
            and (iso or rng.random() < 0.6):
        halo = float(rng.uniform(0.035, 0.07))
        halo_db = float(muscle_db - 3 if rng.random() < 0.6 else rng.uniform(4, 7))
    geometry = NoduleGeometry(
        cx=0.0, cy=0.0, half_width=hw, half_height=hh, angle=float(angle),
        harmonics=harmonics, spicules=spicules, level_db=level,
        cyst_blobs=tuple(cyst_blobs), foci=tuple(foci), macro=macro, halo=halo,
        halo_db=halo_db, comets=tuple(comets), texture_db=float(rng.uniform(1.4, 2.4) if iso else rng.uniform(0.8, 2.0)))
    return geometry


def sample_case(rng: np.random.Generator, label: int) -> Case:
    """A patient with a finding of EU-TIRADS category `label`."""
    features = sample_features(rng, label)
    muscle_db = float(rng.uniform(-11.5, -8.5))
    skin = float(rng.uniform(0.12, 0.18))
    fat = skin + float(rng.uniform(0.15, 0.5))
    strap = float(rng.uniform(0.25, 0.5))
    lobe_a = float(rng.uniform(0.9, 1.35))
    lobe_b = float(rng.uniform(0.65, 0.95))
    nodule = _nodule(rng, features, muscle_db) if features.nodule else None
    if nodule is not None:
        # A nodule widens the lobe around it.
        extent = max(nodule.half_width, nodule.half_height) * 1.15
        # Keep a rim of normal thyroid around it: echogenicity is judged against it.
        lobe_a = max(lobe_a, extent + float(rng.uniform(0.3, 0.5)))
        lobe_b = max(lobe_b, nodule.half_height * 1.1 + float(rng.uniform(0.2, 0.3)))
    lobe_top = fat + strap
    lobe_cy = lobe_top + lobe_b
    lobe_cx = float(rng.uniform(-0.35, 0.35))
    depth = float(max(rng.uniform(3.5, 4.6), lobe_cy + lobe_b + 0.7))
    if nodule is not None:
        slack_x = max(0.0, lobe_a - 1.1 * max(nodule.half_width, nodule.half_height) - 0.1)
        slack_y = max(0.0, lobe_b - 1.1 * nodule.half_height - 0.1)
        nodule = replace(nodule, cx=lobe_cx + float(rng.uniform(-0.6, 0.6) * slack_x),
                         cy=lobe_cy + float(rng.uniform(-0.5, 0.5) * slack_y))
    carotid_r = float(rng.uniform(0.28, 0.42))
    jugular = None
    if rng.random() < 0.6:
        jugular = (lobe_cx - lobe_a - 1.8 * carotid_r - float(rng.uniform(0.3, 0.6)),
                   lobe_cy - float(rng.uniform(0.1, 0.4)),
                   float(rng.uniform(0.35, 0.6)), float(rng.uniform(0.1, 0.28)))
    isthmus = float(rng.uniform(0.15, 0.35))
    anatomy = Anatomy(
        depth_cm=depth, skin=skin, fat=fat, strap=strap, muscle_db=muscle_db,
        fat_db=float(rng.uniform(-15, -10)), deep_db=float(rng.uniform(-13, -9)),
        lobe_cx=lobe_cx, lobe_cy=lobe_cy, lobe_a=lobe_a, lobe_b=lobe_b,
        lobe_harmonics=tuple((k, float(rng.uniform(0, 0.06)), float(rng.uniform(0, 2 * np.pi)))
                             for k in (2, 3)),
        scm_thickness=float(rng.uniform(0.35, 0.75)),
        carotid_r=carotid_r,
        carotid_cx=lobe_cx - lobe_a * 0.95 - carotid_r * 0.8,  # beside the lobe, not in it
        carotid_cy=lobe_cy + lobe_b * float(rng.uniform(0.0, 0.4)),
        jugular=jugular,
        trachea_r=float(rng.uniform(0.8, 1.1)),
        trachea_cx=lobe_cx + lobe_a + float(rng.uniform(0.8, 1.2)),
        trachea_top=lobe_top + isthmus + float(rng.uniform(0.2, 0.35)),
        left=bool(rng.random() < 0.5), isthmus=isthmus)
    if anatomy.left:
        # The oesophagus shows behind the left lobe, beside the trachea: a "target".
        a_e, b_e = float(rng.uniform(0.4, 0.55)), float(rng.uniform(0.25, 0.35))
        anatomy = replace(anatomy, esophagus=(
            anatomy.trachea_cx - anatomy.trachea_r - a_e * float(rng.uniform(0.7, 1.0)),
            anatomy.trachea_top + anatomy.trachea_r + float(rng.uniform(0.1, 0.4)), a_e, b_e))
    return Case(label=label, features=features, anatomy=anatomy, nodule=nodule)


def sample_view(rng: np.random.Generator, case: Case, *, first: bool = True) -> View:
    """Probe position and scanner settings for one image of `case`. The first view is
    centred on the finding; later views of the same patient move and re-gain."""
    spread = 0.0 if first else 1.0
    return View(
        shift_x=float(rng.uniform(-0.25, 0.25) + spread * rng.uniform(-0.2, 0.2)),
        shift_y=float(spread * rng.uniform(-0.08, 0.08)),
        depth_cm=float(case.anatomy.depth_cm + rng.uniform(-0.1, 0.5)),
        gain=float(rng.uniform(0.5, 0.62)),
        dynamic_range=float(rng.uniform(46, 56)),
        tgc_slope=float(rng.uniform(-1.5, 1.5)),
        nodule_scale=float(1.0 if first else rng.uniform(0.9, 1.08)),
        nodule_turn=float(0.0 if first else rng.normal(0, 0.08)),
        frequency_mhz=int(rng.choice([10, 12, 13, 14, 15, 18])))
