"""Descriptor values of DDTI and ACR TI-RADS mapped to ours; unknown stays unknown."""

from __future__ import annotations

import pytest

from eutirads.categories import DESCRIPTORS
from eutirads.data.vocabularies import VOCABULARIES, map_ddti, map_term

# Every value found in DDTI-dev's case files (2026-12-01), with our reading.
DDTI_VALUES = {
    "composition": {"": "", "cystic": "cystic", "dense": "", "predominantly cystic": "mixed",
                    "predominantly solid": "mixed", "solid": "solid",
                    "spongiform": "spongiform"},
    "echogenicity": {"": "", "hyperechogenicity": "hyperechoic",
                     "hypoechogenicity": "mildly_hypoechoic", "isoechogenicity": "isoechoic",
                     "marked hypoechogenicity": "markedly_hypoechoic"},
    "margins": {"": "", "ill defined": "", "ill- defined": "", "macrolobulated": "",
                "microlobulated": "irregular", "spiculated": "irregular",
                "well defined smooth": "smooth", "well defined": "smooth"},
    "calcifications": {"": "", "macrocalcification": "macrocalcifications",
                       "macrocalcifications": "macrocalcifications",
                       "microcalcification": "microcalcifications",
                       "microcalcifications": "microcalcifications", "non": "none"},
}


@pytest.mark.parametrize("field", list(DDTI_VALUES))
def test_every_ddti_value_maps_to_our_vocabulary_or_to_unknown(field):
    column = "echogenic_foci" if field == "calcifications" else field
    for term, expected in DDTI_VALUES[field].items():
        assert map_ddti({field: term})[column] == expected, term


def test_ddti_has_no_shape_and_an_unseen_term_is_unknown_not_a_guess():
    values = map_ddti({"composition": "Solid", "echogenicity": "very strange",
                       "margins": "Well-defined", "calcifications": ""})
    assert values == {"composition": "solid", "echogenicity": "", "shape": "",
                      "margins": "smooth", "echogenic_foci": ""}


@pytest.mark.parametrize("descriptor,term,expected", [
    ("composition", "Cystic or almost completely cystic", "cystic"),
    ("composition", "Mixed cystic and solid", "mixed"),
    ("composition", "Solid or almost completely solid", "solid"),
    ("composition", "Cannot be determined due to calcification", ""),
    ("echogenicity", "Hyperechoic or isoechoic", ""),
    ("echogenicity", "Hypoechoic", "mildly_hypoechoic"),
    ("echogenicity", "Very hypoechoic", "markedly_hypoechoic"),
    ("shape", "Wider-than-tall", ""),
    ("shape", "Taller-than-wide", "taller_than_wide"),
    ("margins", "Ill-defined", ""),
    ("margins", "Lobulated or irregular", "irregular"),
    ("margins", "Extra-thyroidal extension", "irregular"),
    ("echogenic_foci", "None or large comet-tail artifacts", "none"),
    ("echogenic_foci", "Peripheral (rim) calcifications", "macrocalcifications"),
    ("echogenic_foci", "Punctate echogenic foci", "microcalcifications"),
])
def test_acr_lexicon_terms_map_to_ours(descriptor, term, expected):
    assert map_term("acr", descriptor, term) == expected


def test_every_mapped_value_is_in_our_vocabulary():
    for tables in VOCABULARIES.values():
        for descriptor, table in tables.items():
            assert set(table.values()) <= set(DESCRIPTORS[descriptor]), descriptor


def test_an_unknown_vocabulary_or_descriptor_is_a_programming_error():
    with pytest.raises(ValueError):
        map_term("kwak", "composition", "solid")
    with pytest.raises(ValueError):
        map_term("ddti", "colour", "red")
