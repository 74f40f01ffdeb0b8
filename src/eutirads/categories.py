"""The EU-TIRADS categories and the guideline's rules (Russ et al., Eur Thyroid J 2017).

The heart of this module is `classify`, a pure function from ultrasound features to the
category. Everything else is reference data (names, risks, FNA thresholds) and label
handling shared by every stage: import, training, the labeling app and the diagnosis page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Literal, Mapping

from .errors import InputError

__all__ = [
    "Category",
    "CATEGORIES",
    "DESCRIPTORS",
    "COMPOSITIONS",
    "ECHOGENICITIES",
    "SHAPES",
    "MARGINS",
    "ECHOGENIC_FOCI",
    "descriptor_word",
    "normalize_descriptor",
    "features_from_values",
    "rule_path",
    "rule_table",
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

# The one descriptor vocabulary: manifest columns, model heads, the labeling form, the
# diagnosis display and the static page all use these names and values (empty = unknown).
DESCRIPTORS: dict[str, tuple[str, ...]] = {
    "composition": COMPOSITIONS,
    "echogenicity": ECHOGENICITIES,
    "shape": SHAPES,
    "margins": MARGINS,
    "echogenic_foci": ECHOGENIC_FOCI,
}


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
        for field, allowed in DESCRIPTORS.items():
            value = getattr(self, field)
            if value not in allowed:
                raise InputError(f"unknown {field} {value!r}; expected one of {', '.join(allowed)}")


# The guideline's high-risk features, as data: descriptor -> value -> how it is said.
# `high_risk_features`, `rule_path` and `rule_table` all read this one table.
_HIGH_RISK: dict[str, dict[str, str]] = {
    "shape": {"non_oval": "non-oval shape", "taller_than_wide": "taller-than-wide shape"},
    "margins": {"irregular": "irregular margins"},
    "echogenic_foci": {"microcalcifications": "microcalcifications"},
    "echogenicity": {"markedly_hypoechoic": "marked hypoechogenicity"},
}
# What `rule_path` always names; a high-risk feature of these is said by their value.
_PATH_DESCRIPTORS: tuple[str, ...] = ("composition", "echogenicity")


def high_risk_features(features: NoduleFeatures) -> list[str]:
    """The guideline's high-risk features present in `features` (empty when none)."""
    if not features.nodule:
        return []
    return [said[getattr(features, name)] for name, said in _HIGH_RISK.items()
            if getattr(features, name) in said]


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


def descriptor_word(value: str) -> str:
    """How a descriptor value reads in text: "markedly_hypoechoic" -> "markedly hypoechoic"."""
    return value.replace("_", " ")


def normalize_descriptor(name: str, value: str) -> str:
    """Our value for a loosely written one of our own names ("Markedly hypoechoic",
    "non-oval" -> "markedly_hypoechoic", "non_oval"); "" for empty. Raises `InputError`
    (one line) for an unknown descriptor or a value outside the vocabulary: other
    vocabularies (DDTI, ACR TI-RADS) are mapped by `eutirads.data.vocabularies`."""
    if name not in DESCRIPTORS:
        raise InputError(f"unknown descriptor {name!r}; expected one of {', '.join(DESCRIPTORS)}")
    cleaned = re.sub(r"[\s_-]+", "_", str(value).strip().lower())
    if cleaned == "":
        return ""
    if cleaned not in DESCRIPTORS[name]:
        raise InputError(f"{str(value)[:40]!r} is not in the {name} vocabulary (expected "
                         f"one of {', '.join(DESCRIPTORS[name])} or empty)")
    return cleaned


def features_from_values(values: Mapping[str, str]) -> NoduleFeatures:
    """`NoduleFeatures` from a descriptor -> value mapping (a manifest row, a model's
    predictions). Every descriptor must be known; `{"nodule": False}` (or "no") gives no
    nodule. Raises `InputError` naming the missing or bad descriptor."""
    nodule = values.get("nodule", True)
    if nodule is False or str(nodule).strip().lower() in ("false", "no", "0"):
        return NoduleFeatures(nodule=False)
    missing = [name for name in DESCRIPTORS if not values.get(name)]
    if missing:
        raise InputError(f"the rule needs every descriptor; unknown: {', '.join(missing)}")
    return NoduleFeatures(**{name: normalize_descriptor(name, values[name])
                             for name in DESCRIPTORS})


def rule_path(features: NoduleFeatures | Mapping[str, str]) -> str:
    """The guideline's reasoning in one line, e.g. "solid, markedly hypoechoic -> EU-TIRADS 5".

    Names composition and echogenicity, then each other high-risk feature found; a
    finding without a nodule reads "no nodule -> EU-TIRADS 1". Accepts what
    `features_from_values` accepts.
    """
    if not isinstance(features, NoduleFeatures):
        features = features_from_values(features)
    number = classify(features)
    if not features.nodule:
        return f"no nodule -> EU-TIRADS {number}"
    parts = [descriptor_word(getattr(features, name)) for name in _PATH_DESCRIPTORS]
    parts += [said[getattr(features, name)] for name, said in _HIGH_RISK.items()
              if name not in _PATH_DESCRIPTORS and getattr(features, name) in said]
    return f"{', '.join(parts)} -> EU-TIRADS {number}"


def rule_table() -> dict:
    """The guideline rule as JSON-able data, for consumers that cannot call `classify`
    (the static in-browser page).

    How to read it: with no nodule the category is `no_nodule_category`. Otherwise go
    through `rules` in order; a rule applies when any one of its `any_of` conditions holds,
    and a condition holds when every descriptor it names has one of the listed values (an
    empty condition always holds). The first rule that applies gives the category.
    `rule_path` is built from `path`: the `words` of the `path.descriptors` values, then the
    `high_risk` text of each other descriptor whose value is listed there, joined by ", ",
    then " -> " and `label_format` of the category. tests/test_categories.py evaluates the
    table for every combination of values and checks it against `classify`.
    """
    return {
        "system": "EU-TIRADS",
        "descriptors": {name: list(values) for name, values in DESCRIPTORS.items()},
        "words": {name: {value: descriptor_word(value) for value in values}
                  for name, values in DESCRIPTORS.items()},
        "no_nodule_category": 1,
        "rules": [
            {"category": 5, "why": "at least one high-risk feature",
             "any_of": [{name: list(said)} for name, said in _HIGH_RISK.items()]},
            {"category": 2, "why": "pure cyst or entirely spongiform nodule",
             "any_of": [{"composition": ["cystic", "spongiform"]},
                        {"echogenicity": ["anechoic"]}]},
            {"category": 4, "why": "mildly hypoechoic, no high-risk feature",
             "any_of": [{"echogenicity": ["mildly_hypoechoic"]}]},
            {"category": 3, "why": "iso- or hyperechoic, no high-risk feature",
             "any_of": [{}]},
        ],
        "high_risk": {name: dict(said) for name, said in _HIGH_RISK.items()},
        "path": {"descriptors": list(_PATH_DESCRIPTORS), "separator": ", ", "arrow": " -> ",
                 "label_format": "EU-TIRADS {category}", "no_nodule": "no nodule"},
    }


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
