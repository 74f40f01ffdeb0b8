"""Descriptor values of other vocabularies, mapped to ours (`eutirads.categories.DESCRIPTORS`).

Each table maps a source term, normalised by `_key` (lower case, spaces for hyphens and
underscores, single spaces), to our value. A term that is not in a table, or that has no
single EU-TIRADS meaning, maps to "" (unknown): a guess here would become a training label.

DDTI (Pedraza et al., 2015): the values found in the case files of DDTI-dev. Its readers
used Kwak's TI-RADS lexicon: "hypoechogenicity" there means darker than thyroid but not
than the strap muscles (marked hypoechogenicity is its own value), our `mildly_hypoechoic`.
DDTI records no shape. Left unknown on purpose:
- composition "dense": not a composition term of any TI-RADS lexicon (solid? calcified?);
- margins "ill defined": neither smooth nor irregular in EU-TIRADS (and not a high-risk
  feature);
- margins "macrolobulated": Kwak counts only microlobulation as suspicious, EU-TIRADS
  counts lobulated margins as irregular: the two disagree.

ACR TI-RADS (Tessler et al., 2017) lexicon terms, with our reading:
- "hyperechoic or isoechoic" (one ACR choice) and "ill-defined" margins are unknown;
- "wider-than-tall" is unknown (ACR does not say oval or not), "taller-than-wide" maps;
- "extra-thyroidal extension" is an infiltrative, hence irregular, margin;
- "peripheral (rim) calcifications" are coarse: `macrocalcifications`;
- "punctate echogenic foci" are `microcalcifications`, "large comet-tail artifacts" are
  not calcifications: `none`.
"""

from __future__ import annotations

import re
from typing import Mapping

from ..categories import DESCRIPTORS

__all__ = ["VOCABULARIES", "DDTI_FIELDS", "map_term", "map_ddti"]

_DDTI: dict[str, dict[str, str]] = {
    "composition": {
        "solid": "solid", "predominantly solid": "mixed", "predominantly cystic": "mixed",
        "cystic": "cystic", "spongiform": "spongiform",
    },
    "echogenicity": {
        "isoechogenicity": "isoechoic", "hyperechogenicity": "hyperechoic",
        "hypoechogenicity": "mildly_hypoechoic",
        "marked hypoechogenicity": "markedly_hypoechoic", "anechoic": "anechoic",
    },
    "margins": {
        "well defined": "smooth", "well defined smooth": "smooth", "smooth": "smooth",
        "microlobulated": "irregular", "spiculated": "irregular", "irregular": "irregular",
    },
    "echogenic_foci": {
        "non": "none", "none": "none",
        "microcalcification": "microcalcifications", "microcalcifications": "microcalcifications",
        "macrocalcification": "macrocalcifications", "macrocalcifications": "macrocalcifications",
    },
}

_ACR: dict[str, dict[str, str]] = {
    "composition": {
        "cystic": "cystic", "almost completely cystic": "cystic",
        "cystic or almost completely cystic": "cystic", "spongiform": "spongiform",
        "mixed cystic and solid": "mixed", "mixed": "mixed",
        "solid": "solid", "almost completely solid": "solid",
        "solid or almost completely solid": "solid",
    },
    "echogenicity": {
        "anechoic": "anechoic", "hyperechoic": "hyperechoic", "isoechoic": "isoechoic",
        "hypoechoic": "mildly_hypoechoic", "very hypoechoic": "markedly_hypoechoic",
    },
    "shape": {"taller than wide": "taller_than_wide"},
    "margins": {
        "smooth": "smooth", "lobulated": "irregular", "irregular": "irregular",
        "lobulated or irregular": "irregular", "extra thyroidal extension": "irregular",
        "extrathyroidal extension": "irregular",
    },
    "echogenic_foci": {
        "none": "none", "none or large comet tail artifacts": "none",
        "large comet tail artifacts": "none",
        "macrocalcifications": "macrocalcifications",
        "peripheral calcifications": "macrocalcifications",
        "rim calcifications": "macrocalcifications",
        "peripheral (rim) calcifications": "macrocalcifications",
        "punctate echogenic foci": "microcalcifications",
    },
}

VOCABULARIES: dict[str, dict[str, dict[str, str]]] = {"ddti": _DDTI, "acr": _ACR}

# DDTI case-file field -> our descriptor column.
DDTI_FIELDS: dict[str, str] = {"composition": "composition", "echogenicity": "echogenicity",
                               "margins": "margins", "calcifications": "echogenic_foci"}


def _key(term: str) -> str:
    return " ".join(re.sub(r"[-_]", " ", str(term).lower()).split())


def map_term(vocabulary: str, descriptor: str, term: str) -> str:
    """Our value of `descriptor` for a source `term` of `vocabulary` ("ddti", "acr");
    "" when the term is empty, unknown or has no single meaning in EU-TIRADS."""
    if vocabulary not in VOCABULARIES:
        raise ValueError(f"unknown vocabulary {vocabulary!r}; expected one of "
                         f"{', '.join(VOCABULARIES)}")
    if descriptor not in DESCRIPTORS:
        raise ValueError(f"unknown descriptor {descriptor!r}")
    value = VOCABULARIES[vocabulary].get(descriptor, {}).get(_key(term), "")
    assert value == "" or value in DESCRIPTORS[descriptor], (vocabulary, descriptor, value)
    return value


def map_ddti(fields: Mapping[str, str]) -> dict[str, str]:
    """Our five descriptor columns from a DDTI case's fields (shape always unknown)."""
    values = dict.fromkeys(DESCRIPTORS, "")
    for field, descriptor in DDTI_FIELDS.items():
        values[descriptor] = map_term("ddti", descriptor, fields.get(field, ""))
    return values
