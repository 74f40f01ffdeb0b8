"""From descriptor-head probabilities to the guideline's category: the rule applied to the
predicted descriptors, as a label, a probability distribution and a one-line reasoning.

The rule is `categories.classify` (the one place it is written). Its distribution takes
the heads' probabilities as independent and sums, over every combination of descriptor
values, the probability of the combination into the category the rule gives it (4 x 5 x
3 x 2 x 3 = 360 combinations, their categories tabulated once by `classify`). The rule's
label is the rule applied to the most probable value of each descriptor, so it always
matches `rule_path`.
numpy only (the predictor's side).
"""

from __future__ import annotations

import functools
import itertools
from typing import Mapping, Sequence

import numpy as np

from ..categories import DESCRIPTORS, EU_TIRADS_LABELS, NoduleFeatures, classify, rule_path

__all__ = ["CATEGORY_SOURCES", "rule_applies", "rule_category", "combine"]

CATEGORY_SOURCES = ("head", "rule", "combined")


def rule_applies(class_names: Sequence[str], heads: Sequence[str]) -> bool:
    """The rule speaks EU-TIRADS and needs all five descriptors."""
    return set(class_names) <= set(EU_TIRADS_LABELS) and set(DESCRIPTORS) <= set(heads)


def rule_category(descriptor_probs: Mapping[str, np.ndarray], class_names: Sequence[str],
                  head: np.ndarray | None = None) -> tuple[str, np.ndarray, str]:
    """(label, probabilities over `class_names`, rule_path) from each descriptor's value
    probabilities (in `DESCRIPTORS[name]` order). Categories the model has no class for
    get no mass (renormalised).

    Descriptors describe a nodule; whether there is one is the category head's call:
    with `head` and a class "1" (EU-TIRADS 1, normal), the rule's distribution gives
    class 1 the head's probability and spreads the rest by the rule, and the rule's
    label is "1" when the head's most probable class is "1"."""
    names = list(DESCRIPTORS)
    probs = [np.asarray(descriptor_probs[n], np.float64) for n in names]
    index = {label: i for i, label in enumerate(class_names)}
    joint = functools.reduce(np.multiply.outer, probs)  # one axis per descriptor
    table = _rule_table()
    mass = dict(enumerate(np.bincount(table.ravel(), weights=joint.ravel())))
    out = np.array([mass.get(int(label), 0.0) if label.isdigit() else 0.0
                    for label in class_names])
    total = out.sum()
    out = out / total if total > 0 else np.full(len(class_names), 1 / len(class_names))
    top = NoduleFeatures(**{n: DESCRIPTORS[n][int(p.argmax())] for n, p in zip(names, probs)})
    if head is not None and "1" in index:
        normal = float(np.asarray(head)[index["1"]])
        out = out * (1 - normal)
        out[index["1"]] = normal
        if int(np.asarray(head).argmax()) == index["1"]:
            top = NoduleFeatures(nodule=False)
    label = str(classify(top))
    if label not in index:
        label = class_names[int(out.argmax())]
    return label, out, rule_path(top)


@functools.cache
def _rule_table() -> np.ndarray:
    """The rule's category of every combination of descriptor values: an integer array with
    one axis per descriptor (`DESCRIPTORS` order), indexed by value position."""
    names = list(DESCRIPTORS)
    shape = tuple(len(DESCRIPTORS[n]) for n in names)
    table = np.zeros(shape, np.int64)
    for combo in itertools.product(*[range(k) for k in shape]):
        table[combo] = classify(NoduleFeatures(**{n: DESCRIPTORS[n][i]
                                                  for n, i in zip(names, combo)}))
    return table


def combine(head: np.ndarray, rule: np.ndarray) -> np.ndarray:
    """The combined category distribution: the mean of the head's and the rule's."""
    return (np.asarray(head, np.float64) + np.asarray(rule, np.float64)) / 2
