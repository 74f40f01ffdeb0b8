"""The EU-TIRADS categories and the guideline's rules (Russ et al., Eur Thyroid J 2017).

The heart of this module is `classify`, a pure function from ultrasound features to the
category. Everything else is reference data (names, risks, FNA thresholds) and label
handling shared by every stage: import, training, the labeling app and the diagnosis page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Literal

from .errors import InputError

__all__ = [
    "Category",
    "CATEGORIES",
    "EU_TIRADS_LABELS",
    "NoduleFeatures",
    "classify",
    "high_risk_features",
    "fna_advice",
    "normalize_label",
    "label_sort_key",
    "sort_labels",
    "category",
]

Composition = Literal["cystic", "spongiform", "solid", "mixed"]
Echogenicity = Literal["anechoic", "hyperechoic", "isoechoic", "mildly_hypoechoic", "markedly_hypoechoic"]
Shape = Literal["oval", "non_oval", "taller_than_wide"]
Margins = Literal["smooth", "irregular"]
EchogenicFoci = Literal["none", "macrocalcifications", "microcalcifications"]

COMPOSITIONS: tuple[str, ...] = ("cystic", "spongiform", "solid", "mixed")
ECHOGENICITIES: tuple[str, ...] = (
    "anechoic", "hyperechoic", "isoechoic", "mildly_hypoechoic", "markedly_hypoechoic")
SHAPES: tuple[str, ...] = ("oval", "non_oval", "taller_than_wide")
MARGINS: tuple[str, ...] = ("smooth", "irregular")
ECHOGENIC_FOCI: tuple[str, ...] = ("none", "macrocalcifications", "microcalcifications")


@dataclass(frozen=True)
class Category:
    """One EU-TIRADS category as the guideline defines it."""

    number: int
    name: str
    definition: str
    features: str
    risk_low_percent: float
    risk_high_percent: float
    fna_threshold_mm: float | None  # None: FNA not indicated for the nodule's pattern

    @property
    def label(self) -> str:
        return str(self.number)

    @property
    def risk_text(self) -> str:
        if self.risk_high_percent == 0:
            return "none"
        if self.risk_low_percent == self.risk_high_percent:
            return f"about {self.risk_low_percent:g}%"
        return f"{self.risk_low_percent:g}-{self.risk_high_percent:g}%"


CATEGORIES: dict[int, Category] = {
    1: Category(1, "Normal", "No nodule.", "Normal thyroid parenchyma, no focal lesion.",
                0, 0, None),
    2: Category(2, "Benign", "Pure (anechoic) cyst or entirely spongiform nodule.",
                "Anechoic cyst; or a nodule made entirely of small cystic spaces.",
                0, 0, None),
    3: Category(3, "Low risk", "Oval, smooth margins, isoechoic or hyperechoic, "
                "no high-risk feature.",
                "Oval shape; smooth margins; iso- or hyperechoic solid part; no "
                "microcalcifications.", 2, 4, 20),
    4: Category(4, "Intermediate risk", "Oval, smooth margins, mildly hypoechoic, "
                "no high-risk feature.",
                "Oval shape; smooth margins; solid part slightly darker than thyroid but "
                "brighter than strap muscles.", 6, 17, 15),
    5: Category(5, "High risk", "At least one high-risk feature.",
                "Non-oval or taller-than-wide shape; irregular margins; "
                "microcalcifications; marked hypoechogenicity (darker than strap muscles).",
                26, 87, 10),
}

EU_TIRADS_LABELS: tuple[str, ...] = tuple(str(n) for n in CATEGORIES)


def category(label: str | int) -> Category:
    """The EU-TIRADS category for a label such as 3, "3" or "EU-TIRADS 3"."""
    text = normalize_label(str(label))
    if text not in EU_TIRADS_LABELS:
        raise InputError(f"not an EU-TIRADS category (1-5): {text!r}")
    return CATEGORIES[int(text)]


@dataclass(frozen=True)
class NoduleFeatures:
    """What a reader sees on the image. `nodule=False` means normal thyroid (others ignored).

    For a mixed (solid-cystic) nodule, `echogenicity` describes its solid part, as the
    guideline asks.
    """

    nodule: bool = True
    composition: Composition = "solid"
    echogenicity: Echogenicity = "isoechoic"
    shape: Shape = "oval"
    margins: Margins = "smooth"
    echogenic_foci: EchogenicFoci = "none"

    def __post_init__(self) -> None:
        for field, allowed in (("composition", COMPOSITIONS), ("echogenicity", ECHOGENICITIES),
                               ("shape", SHAPES), ("margins", MARGINS),
                               ("echogenic_foci", ECHOGENIC_FOCI)):
            value = getattr(self, field)
            if value not in allowed:
                raise InputError(f"unknown {field} {value!r}; expected one of {', '.join(allowed)}")


def high_risk_features(features: NoduleFeatures) -> list[str]:
    """The guideline's high-risk features present in `features` (empty when none)."""
    if not features.nodule:
        return []
    found = []
    if features.shape != "oval":
        found.append("non-oval shape" if features.shape == "non_oval" else "taller-than-wide shape")
    if features.margins == "irregular":
        found.append("irregular margins")
    if features.echogenic_foci == "microcalcifications":
        found.append("microcalcifications")
    if features.echogenicity == "markedly_hypoechoic":
        found.append("marked hypoechogenicity")
    return found


def classify(features: NoduleFeatures) -> int:
    """EU-TIRADS category (1-5) of a finding.

    Order of the rules: no nodule gives 1; any high-risk feature gives 5 (checked before the
    benign patterns so that a suspicious finding is never under-called); a pure cyst or an
    entirely spongiform nodule gives 2; otherwise the echogenicity of the (solid part of
    the) nodule decides: mildly hypoechoic gives 4, iso- or hyperechoic gives 3.
    """
    if not features.nodule:
        return 1
    if high_risk_features(features):
        return 5
    if features.composition in ("cystic", "spongiform") or features.echogenicity == "anechoic":
        return 2
    if features.echogenicity == "mildly_hypoechoic":
        return 4
    return 3


def fna_advice(category_number: int, diameter_mm: float | None = None) -> str:
    """The guideline's fine-needle-aspiration indication for a category and nodule size,
    worded as the guideline states it ("FNA is indicated for EU-TIRADS 5 nodules over
    10 mm"), never as an order: the decision is the radiologist's."""
    cat = CATEGORIES.get(int(category_number))
    if cat is None:
        raise InputError(f"not an EU-TIRADS category (1-5): {category_number!r}")
    if cat.number == 1:
        return "No nodule: FNA is not indicated."
    if cat.number == 2:
        return ("FNA is not indicated for EU-TIRADS 2 (benign) nodules, except as a "
                "therapeutic procedure for symptoms.")
    threshold = cat.fna_threshold_mm
    assert threshold is not None
    rule = f"FNA is indicated for EU-TIRADS {cat.number} nodules over {threshold:g} mm"
    small = (f"for EU-TIRADS 5 nodules of {threshold:g} mm or less, active surveillance or "
             "FNA is considered" if cat.number == 5 else "")
    if diameter_mm is None:
        return f"{rule}; {small}." if small else f"{rule}."
    if diameter_mm < 0:
        raise InputError(f"a nodule diameter cannot be negative: {diameter_mm}")
    if diameter_mm > threshold:
        return f"{rule}; this nodule measures {diameter_mm:g} mm."
    if small:
        return f"{rule}; {small}. This nodule measures {diameter_mm:g} mm."
    return (f"{rule}; this nodule measures {diameter_mm:g} mm, at or under the threshold: "
            "FNA is not indicated by size; follow-up per the guideline.")


_PREFIX = re.compile(r"^(eu[-_ ]?ti[-_ ]?rads|ti[-_ ]?rads|tr|category|cat\.?|class)[-_ :]*")
_LABEL = re.compile(r"^([1-6])([a-c])?$")


def normalize_label(text: str) -> str:
    """Canonical label text: "TIRADS 3", "EU-TIRADS 3", "eu-tirads3", "3" all give "3".

    Sub-categories of other schemes survive ("TI-RADS 4a" gives "4a"). An empty string
    means "unlabelled" and stays empty. Anything else raises `InputError`.
    """
    cleaned = str(text).strip().lower()
    if cleaned == "":
        return ""
    cleaned = _PREFIX.sub("", cleaned).strip().replace(" ", "")
    if _LABEL.match(cleaned):
        return cleaned
    raise InputError(f"unknown label {str(text)[:40]!r}; expected e.g. 3, 'EU-TIRADS 3' or '4a'")


def label_sort_key(label: str) -> tuple[int, str]:
    """Order labels by suspicion: "2" < "3" < "4a" < "4b" < "4c" < "5"; others after, by name."""
    match = _LABEL.match(label)
    if match:
        return int(match.group(1)), match.group(2) or ""
    return 99, label


def sort_labels(labels: Iterable[str]) -> list[str]:
    """Distinct non-empty labels in ordinal order."""
    return sorted({label for label in labels if label}, key=label_sort_key)
