import pytest

from eutirads.categories import (CATEGORIES, NoduleFeatures, category, classify, fna_advice,
                                 high_risk_features, label_sort_key, normalize_label, sort_labels)
from eutirads.errors import InputError


def test_no_nodule_is_category_1_whatever_else_is_said():
    assert classify(NoduleFeatures(nodule=False, margins="irregular")) == 1


@pytest.mark.parametrize("change", [
    {"shape": "non_oval"}, {"shape": "taller_than_wide"}, {"margins": "irregular"},
    {"echogenic_foci": "microcalcifications"}, {"echogenicity": "markedly_hypoechoic"},
])
def test_any_single_high_risk_feature_gives_5(change):
    features = NoduleFeatures(**{"composition": "solid", "echogenicity": "isoechoic", **change})
    assert classify(features) == 5
    assert len(high_risk_features(features)) == 1


def test_high_risk_feature_wins_over_a_benign_pattern():
    assert classify(NoduleFeatures(composition="spongiform", margins="irregular")) == 5


@pytest.mark.parametrize("features", [
    NoduleFeatures(composition="cystic", echogenicity="anechoic"),
    NoduleFeatures(composition="spongiform", echogenicity="isoechoic"),
])
def test_pure_cyst_or_spongiform_gives_2(features):
    assert classify(features) == 2


@pytest.mark.parametrize("echo", ["isoechoic", "hyperechoic"])
def test_oval_smooth_iso_or_hyperechoic_gives_3(echo):
    assert classify(NoduleFeatures(composition="solid", echogenicity=echo)) == 3


def test_oval_smooth_mildly_hypoechoic_gives_4():
    assert classify(NoduleFeatures(composition="solid", echogenicity="mildly_hypoechoic")) == 4


def test_mixed_nodule_is_classified_by_its_solid_part():
    assert classify(NoduleFeatures(composition="mixed", echogenicity="mildly_hypoechoic")) == 4
    assert classify(NoduleFeatures(composition="mixed", echogenicity="hyperechoic")) == 3


def test_macrocalcifications_alone_are_not_high_risk():
    assert classify(NoduleFeatures(echogenic_foci="macrocalcifications")) == 3


def test_unknown_feature_value_is_refused():
    with pytest.raises(InputError, match="echogenicity"):
        NoduleFeatures(echogenicity="glowing")


def test_categories_carry_guideline_thresholds_and_risks():
    assert [CATEGORIES[n].fna_threshold_mm for n in range(1, 6)] == [None, None, 20, 15, 10]
    assert CATEGORIES[5].risk_text == "26-87%"
    assert CATEGORIES[1].name == "Normal"


@pytest.mark.parametrize("category_number, size, expected", [
    (3, 25, "measures 25 mm."), (3, 15, "not indicated by size"), (4, 16, "measures 16 mm."),
    (4, 15, "not indicated by size"), (5, 11, "measures 11 mm."),
    (5, 8, "active surveillance or FNA is considered"), (2, 40, "not indicated"),
    (1, None, "No nodule"), (5, None, "over 10 mm"),
])
def test_fna_advice_follows_size_thresholds(category_number, size, expected):
    assert expected in fna_advice(category_number, size)


@pytest.mark.parametrize("size", [None, 5.0, 10.0, 12.0, 18.0, 25.0])
@pytest.mark.parametrize("category_number", [1, 2, 3, 4, 5])
def test_fna_advice_states_the_guideline_rule_never_an_order(category_number, size):
    text = fna_advice(category_number, size)
    assert "advised" not in text and not text.lower().startswith(("do ", "perform", "no fna"))
    if category_number >= 3:
        threshold = CATEGORIES[category_number].fna_threshold_mm
        assert text.startswith(f"FNA is indicated for EU-TIRADS {category_number} nodules "
                               f"over {threshold:g} mm")


@pytest.mark.parametrize("text", ["TIRADS 3", "EU-TIRADS 3", "eu-tirads3", "3", " 3 ",
                                  "TI-RADS 3", "EUTIRADS_3", "tr3", "Category 3"])
def test_label_spellings_normalise_to_the_number(text):
    assert normalize_label(text) == "3"


def test_subcategories_of_other_schemes_survive_normalisation():
    assert normalize_label("TI-RADS 4A") == "4a"


def test_empty_label_means_unlabelled():
    assert normalize_label("") == ""


@pytest.mark.parametrize("text", ["7", "benign", "3x", "TIRADS"])
def test_unknown_labels_are_refused(text):
    with pytest.raises(InputError, match="unknown label"):
        normalize_label(text)


def test_category_lookup_refuses_other_schemes():
    assert category("EU-TIRADS 4").name == "Intermediate risk"
    with pytest.raises(InputError):
        category("4a")


def test_labels_sort_by_suspicion():
    assert sort_labels(["5", "4b", "2", "4a", "", "3", "4c", "2"]) == ["2", "3", "4a", "4b", "4c", "5"]
    assert label_sort_key("4a") < label_sort_key("4b") < label_sort_key("5")
