"""The metric functions agree with scikit-learn on random and edge-case inputs."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from eutirads.categories import sort_labels
from eutirads.errors import InputError
from eutirads.evaluation import metrics as m

LABELS = ["1", "2", "3", "4", "5"]
DDTI = ["2", "3", "4a", "4b", "4c", "5"]


def _random_case(seed: int, n: int = 60, labels=LABELS, skew: float = 0.6):
    rng = np.random.default_rng(seed)
    y_true = rng.choice(labels, size=n).tolist()
    logits = rng.normal(size=(n, len(labels)))
    # Make the scores informative so the metrics are not all near chance.
    for i, lab in enumerate(y_true):
        logits[i, labels.index(lab)] += skew * 3
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y_pred = [labels[j] for j in proba.argmax(axis=1)]
    return y_true, y_pred, proba


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) < 1e-12


@pytest.mark.parametrize("seed", range(5))
def test_report_matches_sklearn_on_random_predictions(seed):
    y_true, y_pred, _ = _random_case(seed)
    ours = m.classification_report(y_true, y_pred, LABELS)
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=LABELS,
                                                     zero_division=np.nan)
    for i, lab in enumerate(LABELS):
        assert _same(ours["per_class"][lab]["precision"], p[i])
        assert _same(ours["per_class"][lab]["recall"], r[i])
        assert _same(ours["per_class"][lab]["f1"], f[i])
        assert ours["per_class"][lab]["support"] == s[i]
    for avg in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(y_true, y_pred, labels=LABELS,
                                                         average=avg, zero_division=np.nan)
        assert _same(ours[avg]["precision"], p)
        assert _same(ours[avg]["recall"], r)
        assert _same(ours[avg]["f1"], f)
    assert ours["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert m.accuracy(y_true, y_pred) == pytest.approx(skm.accuracy_score(y_true, y_pred))


def test_a_class_absent_from_truth_and_never_predicted_gives_nan_not_a_crash():
    y_true = ["1", "2", "2", "3", "3", "3"]
    y_pred = ["1", "2", "3", "3", "3", "2"]
    ours = m.classification_report(y_true, y_pred, LABELS)
    assert math.isnan(ours["per_class"]["4"]["precision"])
    assert math.isnan(ours["per_class"]["4"]["recall"])
    assert math.isnan(ours["per_class"]["5"]["f1"])
    assert ours["per_class"]["5"]["support"] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = skm.f1_score(y_true, y_pred, labels=LABELS, average="macro", zero_division=np.nan)
    assert ours["macro"]["f1"] == pytest.approx(f)


def test_a_class_predicted_but_never_true_has_zero_precision_and_undefined_recall():
    y_true = ["1", "1", "2"]
    y_pred = ["1", "5", "2"]
    ours = m.classification_report(y_true, y_pred, LABELS)
    assert ours["per_class"]["5"]["precision"] == 0.0
    assert math.isnan(ours["per_class"]["5"]["recall"])
    assert ours["per_class"]["5"]["f1"] == 0.0


@pytest.mark.parametrize("seed", range(3))
def test_confusion_matrix_and_per_class_specificity_match_sklearn(seed):
    y_true, y_pred, _ = _random_case(seed, labels=DDTI)
    assert (m.confusion_matrix(y_true, y_pred, DDTI)
            == skm.confusion_matrix(y_true, y_pred, labels=DDTI)).all()
    mcm = skm.multilabel_confusion_matrix(y_true, y_pred, labels=DDTI)
    ours = m.sensitivity_specificity(y_true, y_pred, DDTI)
    for i, lab in enumerate(DDTI):
        (tn, fp), (fn, tp) = mcm[i]
        assert ours[lab]["sensitivity"] == pytest.approx(tp / (tp + fn))
        assert ours[lab]["specificity"] == pytest.approx(tn / (tn + fp))


def test_an_unknown_label_is_a_clear_error():
    with pytest.raises(InputError, match="'7' is not one of the classes"):
        m.confusion_matrix(["1", "7"], ["1", "1"], LABELS)


@pytest.mark.parametrize("seed", range(4))
def test_roc_curve_and_auc_match_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.random(80) < 0.4
    scores = np.round(rng.random(80) + 0.3 * y, 1)  # rounding makes many ties
    fpr, tpr, thr = m.roc_curve(y, scores)
    sk_fpr, sk_tpr, sk_thr = skm.roc_curve(y, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_allclose(thr[1:], sk_thr[1:])
    assert m.roc_auc(y, scores) == pytest.approx(skm.roc_auc_score(y, scores))
    assert m.roc_auc(y, scores) == pytest.approx(np.trapezoid(tpr, fpr))


def test_auc_with_one_side_only_is_nan():
    assert math.isnan(m.roc_auc([True, True], [0.2, 0.9]))
    fpr, tpr, _ = m.roc_curve([True, True], [0.2, 0.9])
    assert np.isnan(fpr).all() and tpr[-1] == 1.0


@pytest.mark.parametrize("seed", range(3))
def test_one_vs_rest_auc_matches_sklearn_macro_ovr(seed):
    y_true, _, proba = _random_case(seed, n=100, skew=0.2)
    ours = m.one_vs_rest_auc(y_true, proba, LABELS)
    assert ours["macro"] == pytest.approx(
        skm.roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=LABELS))
    for i, lab in enumerate(LABELS):
        assert ours["per_class"][lab] == pytest.approx(
            skm.roc_auc_score(np.array(y_true) == lab, proba[:, i]))


def test_one_vs_rest_auc_skips_a_class_absent_from_truth():
    y_true, _, proba = _random_case(1, n=50, labels=["1", "2", "3"])
    labels = ["1", "2", "3", "4"]
    proba = np.c_[proba, np.full(len(proba), 0.01)]
    ours = m.one_vs_rest_auc(y_true, proba, labels)
    assert math.isnan(ours["per_class"]["4"])
    assert ours["macro"] == pytest.approx(np.mean([ours["per_class"][x] for x in "123"]))


@pytest.mark.parametrize("seed", range(4))
def test_quadratic_kappa_matches_sklearn_in_ordinal_order(seed):
    labels = sort_labels(["5", "4c", "2", "4a", "3", "4b"])
    assert labels == DDTI
    y_true, y_pred, _ = _random_case(seed, labels=labels, skew=0.3)
    assert m.quadratic_weighted_kappa(y_true, y_pred, labels) == pytest.approx(
        skm.cohen_kappa_score(y_true, y_pred, labels=labels, weights="quadratic"))


def test_kappa_of_a_single_class_is_nan_and_perfect_agreement_is_one():
    assert math.isnan(m.quadratic_weighted_kappa(["3", "3"], ["3", "3"], LABELS))
    assert m.quadratic_weighted_kappa(["1", "3", "5"], ["1", "3", "5"], LABELS) == 1.0


def test_kappa_punishes_far_misses_more_than_near_misses():
    truth = ["1", "2", "3", "4", "5"] * 4
    near = ["2", "1", "4", "5", "4"] * 4
    far = ["5", "5", "1", "1", "1"] * 4
    assert (m.quadratic_weighted_kappa(truth, near, LABELS)
            > m.quadratic_weighted_kappa(truth, far, LABELS))


def test_high_risk_view_defaults_to_four_and_five_and_matches_sklearn():
    y_true, y_pred, proba = _random_case(2, n=120, skew=0.3)
    hr = m.high_risk(y_true, y_pred, proba, LABELS)
    assert hr["positive"] == ["4", "5"]
    truth = np.isin(y_true, ["4", "5"])
    called = np.isin(y_pred, ["4", "5"])
    assert hr["sensitivity"] == pytest.approx(skm.recall_score(truth, called))
    assert hr["specificity"] == pytest.approx(skm.recall_score(~truth, ~called))
    assert hr["auc"] == pytest.approx(skm.roc_auc_score(truth, proba[:, 3] + proba[:, 4]))


def test_high_risk_view_takes_an_explicit_positive_set_for_ddti():
    y_true, y_pred, proba = _random_case(3, n=90, labels=DDTI)
    hr = m.high_risk(y_true, y_pred, proba, DDTI, positive=["4b", "4c", "5"])
    assert hr["negative"] == ["2", "3", "4a"]
    assert hr["n_positive"] == int(np.isin(y_true, ["4b", "4c", "5"]).sum())
    assert m.default_positive(DDTI) == ["4b", "4c", "5"]
    assert m.default_positive(["1", "2", "3", "4", "5"]) == ["4", "5"]
    with pytest.raises(InputError, match=r"positive label\(s\) 6 not among"):
        m.high_risk(y_true, y_pred, proba, DDTI, positive=["6"])


@pytest.mark.parametrize("seed", range(3))
def test_reliability_bins_match_sklearn_calibration_curve(seed):
    y_true, y_pred, proba = _random_case(seed, n=200, skew=0.4)
    cal = m.calibration(y_true, proba, LABELS, n_bins=10)
    confidence = proba.max(axis=1)
    correct = np.array(y_true) == np.array(y_pred)
    prob_true, prob_pred = calibration_curve(correct, confidence, n_bins=10)
    filled = [b for b in cal["bins"] if b["count"]]
    np.testing.assert_allclose([b["accuracy"] for b in filled], prob_true)
    np.testing.assert_allclose([b["confidence"] for b in filled], prob_pred)
    counts = np.array([b["count"] for b in filled])
    expected_ece = np.sum(counts / len(y_true) * np.abs(prob_true - prob_pred))
    assert cal["ece"] == pytest.approx(expected_ece)
    assert sum(b["count"] for b in cal["bins"]) == len(y_true)


def test_a_perfectly_confident_and_correct_model_has_zero_calibration_error():
    proba = np.eye(5)
    assert m.calibration(LABELS, proba, LABELS)["ece"] == 0.0


def test_log_loss_matches_sklearn():
    y_true, _, proba = _random_case(4)
    assert m.log_loss(y_true, proba, LABELS) == pytest.approx(
        skm.log_loss(y_true, proba, labels=LABELS))


def test_bootstrap_draws_whole_patients():
    groups = ["a"] * 5 + ["b"] * 3 + ["c"]
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx = m.resample_patients(groups, rng)
        drawn = [groups[i] for i in idx]
        for patient, size in (("a", 5), ("b", 3), ("c", 1)):
            assert drawn.count(patient) % size == 0


def test_bootstrap_by_patient_is_wider_than_by_image_when_images_cluster():
    # One patient with 40 images all right, 20 patients with one image each all wrong.
    y_true = ["3"] * 40 + ["4"] * 20
    y_pred = ["3"] * 40 + ["3"] * 20
    proba = np.array([[0, 0, 1.0, 0, 0] if p == "3" else [0, 0, 0, 1.0, 0] for p in y_pred])
    by_patient = ["big"] * 40 + [f"p{i}" for i in range(20)]
    by_image = [f"i{i}" for i in range(60)]
    ci_p = m.bootstrap_ci(y_true, y_pred, proba, LABELS, by_patient, n_boot=300, seed=1)
    ci_i = m.bootstrap_ci(y_true, y_pred, proba, LABELS, by_image, n_boot=300, seed=1)
    width = lambda ci: ci["accuracy"]["high"] - ci["accuracy"]["low"]  # noqa: E731
    assert width(ci_p) > 2 * width(ci_i)
    # A drawn set without the big patient has accuracy 0: the patient CI reaches it.
    assert ci_p["accuracy"]["low"] == 0.0


def test_bootstrap_is_seeded_and_brackets_the_point_estimate():
    y_true, y_pred, proba = _random_case(5, n=80)
    groups = [f"p{i // 2}" for i in range(80)]
    a = m.bootstrap_ci(y_true, y_pred, proba, LABELS, groups, n_boot=200, seed=7)
    b = m.bootstrap_ci(y_true, y_pred, proba, LABELS, groups, n_boot=200, seed=7)
    assert a == b
    point = m.summary_metrics(y_true, y_pred, proba, LABELS)
    for key in ("accuracy", "macro_f1", "kappa", "macro_auc", "high_risk_auc"):
        assert a[key]["low"] <= point[key] <= a[key]["high"]
        assert a[key]["n"] == 200


def test_compute_metrics_reports_absent_classes_and_survives_them():
    y_true, _, proba = _random_case(6, n=40, labels=["2", "3", "4"])
    proba = np.c_[np.full(40, 0.01), proba, np.full(40, 0.01)]
    proba /= proba.sum(axis=1, keepdims=True)
    out = m.compute_metrics(y_true, proba, LABELS, n_boot=50)
    assert out["absent_labels"] == ["1", "5"]
    assert out["n"] == 40 and out["n_patients"] == 40
    assert math.isnan(out["roc"]["per_class"]["1"])
    assert not math.isnan(out["summary"]["macro_auc"])
    assert out["bootstrap"]["ci"]["accuracy"]["n"] == 50


def test_compute_metrics_on_an_empty_split_does_not_crash():
    out = m.compute_metrics([], np.zeros((0, 5)), LABELS, n_boot=10)
    assert out["n"] == 0 and out["bootstrap"] is None
    assert math.isnan(out["summary"]["accuracy"])
