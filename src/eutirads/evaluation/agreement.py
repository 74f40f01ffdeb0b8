"""Inter-reader agreement, as pure functions over label lists (no Django, no numpy needed).

- `cohen_kappa(a, b, labels, weights=None|"linear"|"quadratic")`: two readers on the same
  images (Cohen 1960; weighted: Cohen 1968). Matches scikit-learn's cohen_kappa_score.
- `fleiss_kappa(table)`: any number of readers per image, the same count on every image
  (Fleiss 1971); `table[i][j]` = readers who put image i in category j.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

__all__ = ["confusion_matrix", "cohen_kappa", "fleiss_kappa", "fleiss_table",
           "label_distribution", "percent_agreement"]


def confusion_matrix(a: Sequence[str], b: Sequence[str], labels: Sequence[str]) -> list[list[int]]:
    """counts[i][j] = images that reader A put in labels[i] and reader B in labels[j]."""
    if len(a) != len(b):
        raise ValueError("the two readers must rate the same images")
    index = {label: i for i, label in enumerate(labels)}
    counts = [[0] * len(labels) for _ in labels]
    for x, y in zip(a, b):
        counts[index[x]][index[y]] += 1
    return counts


MIN_IMAGES = 2  # below this a kappa says nothing (one shared image gives 0 or NaN)


def cohen_kappa(a: Sequence[str], b: Sequence[str], labels: Sequence[str],
                weights: str | None = None) -> float:
    """Cohen's kappa of two readers; NaN when undefined (fewer than MIN_IMAGES images, or
    chance agreement 1).

    Weights count disagreement by category distance (ordinal labels in `labels` order):
    linear |i-j|, quadratic (i-j)^2."""
    n = len(a)
    if n < MIN_IMAGES:
        return math.nan
    k = len(labels)
    counts = confusion_matrix(a, b, labels)
    rows = [sum(r) for r in counts]
    cols = [sum(counts[i][j] for i in range(k)) for j in range(k)]
    if weights is None:
        w = [[0.0 if i == j else 1.0 for j in range(k)] for i in range(k)]
    elif weights == "linear":
        w = [[abs(i - j) for j in range(k)] for i in range(k)]
    elif weights == "quadratic":
        w = [[(i - j) ** 2 for j in range(k)] for i in range(k)]
    else:
        raise ValueError(f"unknown weights {weights!r}")
    observed = sum(w[i][j] * counts[i][j] for i in range(k) for j in range(k)) / n
    expected = sum(w[i][j] * rows[i] * cols[j] for i in range(k) for j in range(k)) / (n * n)
    if expected == 0:
        return math.nan
    return 1.0 - observed / expected


def percent_agreement(a: Sequence[str], b: Sequence[str]) -> float:
    return sum(x == y for x, y in zip(a, b)) / len(a) if a else math.nan


def fleiss_table(ratings: Sequence[Sequence[str]], labels: Sequence[str]) -> list[list[int]]:
    """Per-image category counts from each image's list of labels."""
    index = {label: i for i, label in enumerate(labels)}
    table = []
    for image_labels in ratings:
        row = [0] * len(labels)
        for label in image_labels:
            row[index[label]] += 1
        table.append(row)
    return table


def fleiss_kappa(table: Sequence[Sequence[int]]) -> float:
    """Fleiss' kappa; every row must sum to the same number of readers (>= 2). NaN with
    fewer than MIN_IMAGES images."""
    if len(table) < MIN_IMAGES:
        return math.nan
    n = sum(table[0])
    if n < 2 or any(sum(row) != n for row in table):
        raise ValueError("Fleiss' kappa needs the same number (>= 2) of readers on every image")
    subjects = len(table)
    k = len(table[0])
    p_j = [sum(row[j] for row in table) / (subjects * n) for j in range(k)]
    p_i = [(sum(c * c for c in row) - n) / (n * (n - 1)) for row in table]
    p_bar = sum(p_i) / subjects
    p_e = sum(p * p for p in p_j)
    if p_e == 1:
        return math.nan
    return (p_bar - p_e) / (1 - p_e)


def label_distribution(labels: Sequence[str], categories: Sequence[str]) -> dict[str, int]:
    counts = Counter(labels)
    return {c: counts.get(c, 0) for c in categories}
