"""Agreement math checked against scikit-learn and a hand-worked Fleiss example."""

import math

import pytest
from sklearn.metrics import cohen_kappa_score

from eutirads.evaluation.agreement import (cohen_kappa, confusion_matrix, fleiss_kappa,
                                             fleiss_table, label_distribution)

LABELS = ["1", "2", "3", "4", "5"]
A = list("3344455523213445")
B = list("3443455423313545")


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_cohen_kappa_matches_scikit_learn(weights):
    expected = cohen_kappa_score(A, B, labels=LABELS, weights=weights)
    assert cohen_kappa(A, B, LABELS, weights=weights) == pytest.approx(expected, abs=1e-12)


def test_cohen_kappa_is_one_for_identical_readers_and_nan_without_images():
    assert cohen_kappa(A, A, LABELS) == pytest.approx(1.0)
    assert math.isnan(cohen_kappa([], [], LABELS))


def test_quadratic_kappa_forgives_near_misses_more_than_unweighted():
    a = list("1234512345")
    b = list("2345423454")  # always one category off
    assert cohen_kappa(a, b, LABELS, weights="quadratic") > cohen_kappa(a, b, LABELS)


def test_fleiss_kappa_matches_the_hand_worked_example():
    # Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories;
    # P-bar = 0.378, P-e = 0.213, kappa = (0.378 - 0.213) / (1 - 0.213) = 0.210.
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0],
             [2, 2, 8, 1, 1], [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2],
             [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert fleiss_kappa(table) == pytest.approx(0.20993, abs=1e-4)


def test_fleiss_kappa_of_two_readers_is_close_to_cohen_kappa():
    table = fleiss_table([[x, y] for x, y in zip(A, B)], LABELS)
    # With two readers Fleiss' kappa equals Scott's pi, close to (not equal to) Cohen's.
    assert fleiss_kappa(table) == pytest.approx(cohen_kappa(A, B, LABELS), abs=0.05)


def test_fleiss_kappa_refuses_images_with_different_reader_counts():
    with pytest.raises(ValueError):
        fleiss_kappa([[2, 0], [1, 0]])


def test_confusion_matrix_and_distribution_count_every_label():
    matrix = confusion_matrix(["3", "4", "4"], ["3", "5", "4"], LABELS)
    assert matrix[2][2] == 1 and matrix[3][4] == 1 and matrix[3][3] == 1
    assert sum(map(sum, matrix)) == 3
    assert label_distribution(["3", "3", "5"], LABELS) == {"1": 0, "2": 0, "3": 2, "4": 0, "5": 1}


def test_kappa_is_undefined_with_a_single_shared_image_not_zero():
    assert math.isnan(cohen_kappa(["3"], ["4"], LABELS))
    assert math.isnan(fleiss_kappa([[1, 1, 0, 0, 0]]))
