"""Readers and the model against consensus labels: accuracy, quadratic weighted kappa and
confusion, with the evaluation's metric functions.

`compare` is pure (records in, report out); `compare_readers` reads the stored blind
readings and the labeling app's consensus labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...categories import EU_TIRADS_LABELS
from ...evaluation.metrics import accuracy, confusion_matrix, quadratic_weighted_kappa

__all__ = ["Record", "compare", "compare_readers", "DecisionRecord", "compare_decisions",
           "decision_report"]

MODEL = "model"


@dataclass(frozen=True)
class Record:
    """One blind reading: who read which item, what consensus, the reader and the model said."""

    reader: str
    item: str
    consensus: str
    human: str
    model: str


def _scores(truth: list[str], predicted: list[str]) -> dict:
    labels = list(EU_TIRADS_LABELS)
    kappa = quadratic_weighted_kappa(truth, predicted, labels=labels) if truth else math.nan
    return {
        "n": len(truth),
        "accuracy": accuracy(truth, predicted) if truth else math.nan,
        "kappa": kappa,
        "confusion": confusion_matrix(truth, predicted, labels=labels).tolist() if truth else
        [[0] * len(labels) for _ in labels],
    }


def compare(records: list[Record]) -> dict:
    """Per reader: their scores and the model's on the same items; overall: the model on
    every item read (its latest answer per item)."""
    usable = [r for r in records if r.consensus in EU_TIRADS_LABELS
              and r.human in EU_TIRADS_LABELS and r.model in EU_TIRADS_LABELS]
    readers = []
    for name in sorted({r.reader for r in usable}):
        mine = [r for r in usable if r.reader == name]
        truth = [r.consensus for r in mine]
        readers.append({"reader": name, "human": _scores(truth, [r.human for r in mine]),
                        "model": _scores(truth, [r.model for r in mine])})
    latest: dict[str, Record] = {}
    for record in usable:  # records come oldest first: the last one per item wins
        latest[record.item] = record
    items = list(latest.values())
    return {"labels": list(EU_TIRADS_LABELS), "readers": readers,
            "model": _scores([r.consensus for r in items], [r.model for r in items]),
            "skipped": len(records) - len(usable)}


def compare_readers() -> dict:
    """The report from the database: blind readings of labeling images with a consensus."""
    from ..labeling.models import Image
    from .models import Reading

    readings = list(Reading.objects.exclude(item_key="").select_related("reader", "prediction")
                    .order_by("created_at", "id"))
    ids = {int(r.item_key.split(":", 1)[1]) for r in readings
           if r.item_key.startswith("labeling:")}
    consensus = dict(Image.objects.filter(pk__in=ids).values_list("pk", "consensus_label"))
    records = [Record(reader=r.reader.get_username(), item=r.item_key,
                      consensus=consensus.get(int(r.item_key.split(":", 1)[1]), ""),
                      human=r.human_label, model=r.prediction.label)
               for r in readings if r.item_key.startswith("labeling:")]
    return compare(records)


# ---- signed decisions against the model (the "accept or change" step) ---------------------

@dataclass(frozen=True)
class DecisionRecord:
    """One radiologist's signed decision beside the model's answer on the same image."""

    radiologist: str
    model: str
    decided: str
    model_descriptors: dict
    decided_descriptors: dict


def compare_decisions(records: list[DecisionRecord]) -> dict:
    """Per radiologist: how often the signed category is the model's (accuracy of the
    model against the radiologist, and their quadratic kappa), and how often each
    descriptor was changed. Pure: records in, report out."""
    from ...inference.diagnosis import DESCRIPTOR_NAMES

    usable = [r for r in records if r.model in EU_TIRADS_LABELS and r.decided in EU_TIRADS_LABELS]
    rows = []
    for name in sorted({r.radiologist for r in usable}):
        mine = [r for r in usable if r.radiologist == name]
        scores = _scores([r.decided for r in mine], [r.model for r in mine])
        changed = {}
        for descriptor in DESCRIPTOR_NAMES:
            both = [r for r in mine if r.decided_descriptors.get(descriptor)
                    and r.model_descriptors.get(descriptor)]
            changed[descriptor] = {"n": len(both), "changed": sum(
                r.decided_descriptors[descriptor] != r.model_descriptors[descriptor]
                for r in both)}
        rows.append({"radiologist": name, "n": len(mine), "same_category": scores["accuracy"],
                     "kappa": scores["kappa"], "confusion": scores["confusion"],
                     "descriptors": changed})
    return {"labels": list(EU_TIRADS_LABELS), "radiologists": rows,
            "skipped": len(records) - len(usable)}


def decision_report() -> dict:
    """The decisions report from the database (every stored decision, abstentions left out)."""
    from .models import Decision

    decisions = Decision.objects.select_related("user", "prediction").filter(
        prediction__abstain=False).order_by("decided_at", "id")
    return compare_decisions([
        DecisionRecord(radiologist=d.user.get_username() if d.user else "(deleted)",
                       model=d.prediction.label, decided=d.label,
                       model_descriptors=d.prediction.descriptor_values,
                       decided_descriptors=dict(d.descriptors or {}))
        for d in decisions])
