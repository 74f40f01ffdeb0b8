import itertools
import json

import pytest

from eutirads.categories import (CATEGORIES, DESCRIPTORS, NoduleFeatures, category, classify,
                                 features_from_values, fna_advice, high_risk_features,
                                 label_sort_key, normalize_descriptor, normalize_label,
                                 rule_path, rule_table, sort_labels)
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


# ----------------------------------------------------------------------------- rule as data



def _evaluate_table(table: dict, values: dict[str, str] | None) -> int:
    """What a browser does with `rule_table()`: first rule with a matching condition."""
    if values is None:
        return table["no_nodule_category"]
    for rule in table["rules"]:
        if any(all(values[name] in allowed for name, allowed in condition.items())
               for condition in rule["any_of"]):
            return rule["category"]
    raise AssertionError("no rule applied")


def _path_from_table(table: dict, values: dict[str, str] | None) -> str:
    path = table["path"]
    number = _evaluate_table(table, values)
    label = path["label_format"].format(category=number)
    if values is None:
        return f"{path['no_nodule']}{path['arrow']}{label}"
    parts = [table["words"][name][values[name]] for name in path["descriptors"]]
    parts += [said[values[name]] for name, said in table["high_risk"].items()
              if name not in path["descriptors"] and values[name] in said]
    return f"{path['separator'].join(parts)}{path['arrow']}{label}"


def _every_combination():
    names = list(DESCRIPTORS)
    for combo in itertools.product(*(DESCRIPTORS[name] for name in names)):
        yield dict(zip(names, combo))


def test_the_rule_table_survives_json_and_gives_classify_for_every_combination():
    table = json.loads(json.dumps(rule_table()))
    count = 0
    for values in _every_combination():
        features = NoduleFeatures(**values)
        assert _evaluate_table(table, values) == classify(features), values
        assert _path_from_table(table, values) == rule_path(features), values
        count += 1
    assert count == 4 * 5 * 3 * 2 * 3
    assert _evaluate_table(table, None) == classify(NoduleFeatures(nodule=False)) == 1
    assert _path_from_table(table, None) == rule_path(NoduleFeatures(nodule=False))


def test_the_rule_table_lists_the_vocabulary():
    table = rule_table()
    assert table["descriptors"] == {name: list(values) for name, values in DESCRIPTORS.items()}
    assert list(DESCRIPTORS) == ["composition", "echogenicity", "shape", "margins",
                                 "echogenic_foci"]


def test_the_rule_path_names_composition_echogenicity_and_high_risk_features():
    values = {"composition": "solid", "echogenicity": "markedly_hypoechoic", "shape": "oval",
              "margins": "smooth", "echogenic_foci": "none"}
    assert rule_path(values) == "solid, markedly hypoechoic -> EU-TIRADS 5"
    assert rule_path(NoduleFeatures(nodule=False)) == "no nodule -> EU-TIRADS 1"
    assert rule_path({"nodule": False}) == "no nodule -> EU-TIRADS 1"
    assert rule_path(NoduleFeatures(composition="spongiform", margins="irregular",
                                    echogenic_foci="microcalcifications")) == (
        "spongiform, isoechoic, irregular margins, microcalcifications -> EU-TIRADS 5")
    assert rule_path(NoduleFeatures(echogenicity="mildly_hypoechoic")) == (
        "solid, mildly hypoechoic -> EU-TIRADS 4")


def test_the_rule_path_refuses_unknown_descriptors_in_one_line():
    with pytest.raises(InputError, match="unknown: shape"):
        rule_path({"composition": "solid", "echogenicity": "isoechoic", "margins": "smooth",
                   "echogenic_foci": "none"})
    with pytest.raises(InputError, match="not in the margins vocabulary"):
        features_from_values({"composition": "solid", "echogenicity": "isoechoic",
                              "shape": "oval", "margins": "wavy", "echogenic_foci": "none"})


def test_descriptor_values_are_normalised_loosely_but_never_guessed():
    assert normalize_descriptor("echogenicity", " Markedly hypoechoic ") == "markedly_hypoechoic"
    assert normalize_descriptor("shape", "taller-than-wide") == "taller_than_wide"
    assert normalize_descriptor("margins", "") == ""
    with pytest.raises(InputError, match="not in the echogenicity vocabulary"):
        normalize_descriptor("echogenicity", "hypoechoic")
    with pytest.raises(InputError, match="unknown descriptor"):
        normalize_descriptor("colour", "red")
