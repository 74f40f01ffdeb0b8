"""Read-only summaries of a project from the database: agreement, disagreements."""

from __future__ import annotations

import math
from collections import defaultdict
from itertools import combinations

from ...categories import DESCRIPTORS, EU_TIRADS_LABELS
from ...evaluation.agreement import (cohen_kappa, confusion_matrix, fleiss_kappa, fleiss_table,
                        label_distribution, percent_agreement)
from .models import Image, Project, Reading

LABELS = list(EU_TIRADS_LABELS)


def saved_readings(project: Project) -> dict[int, dict[str, Reading]]:
    """image id -> {reader name: saved reading}."""
    out: dict[int, dict[str, Reading]] = defaultdict(dict)
    for r in (Reading.objects.filter(image__project=project, done=True)
              .select_related("reader").order_by("reader__username")):
        out[r.image_id][r.reader.username] = r
    return out


def project_agreement(project: Project) -> dict:
    """Everything the agreement page shows; flags are left out of the kappas."""
    by_image = saved_readings(project)
    labels_by_image = {img: {name: r.label for name, r in readers.items() if r.label}
                       for img, readers in by_image.items()}
    readers = sorted({name for readers in by_image.values() for name in readers})
    pairs = []
    for first, second in combinations(readers, 2):
        shared = [(v[first], v[second]) for v in labels_by_image.values()
                  if first in v and second in v]
        a = [x for x, _ in shared]
        b = [y for _, y in shared]
        pairs.append({
            "a": first, "b": second, "n": len(shared),
            "kappa": cohen_kappa(a, b, LABELS),
            "kappa_quadratic": cohen_kappa(a, b, LABELS, weights="quadratic"),
            "agreement": percent_agreement(a, b),
            "confusion": list(zip(LABELS, confusion_matrix(a, b, LABELS))),
        })
    n_req = project.readers_required
    complete = [list(v.values()) for v in labels_by_image.values() if len(v) == n_req]
    fleiss = fleiss_kappa(fleiss_table(complete, LABELS)) if complete and n_req >= 2 else math.nan
    distributions = []
    for name in readers:
        given = [v[name] for v in labels_by_image.values() if name in v]
        flags = sum(1 for readers_ in by_image.values()
                    if name in readers_ and readers_[name].flagged)
        dist = label_distribution(given, LABELS)
        distributions.append({"reader": name, "n": len(given), "flags": flags,
                              "counts": dist,
                              "percent": {k: (100 * c / len(given) if given else 0)
                                          for k, c in dist.items()}})
    return {"readers": readers, "pairs": pairs, "fleiss": fleiss, "fleiss_n": len(complete),
            "labels": LABELS, "distributions": distributions,
            "descriptors": descriptor_agreement(by_image, readers, n_req)}


def descriptor_agreement(by_image: dict[int, dict[str, Reading]], readers: list[str],
                         n_req: int) -> list[dict]:
    """Cohen's kappa per pair and Fleiss' kappa per descriptor, over the images where the
    readers described a nodule: which descriptor a clinic's readers disagree on."""
    out = []
    for name, values in DESCRIPTORS.items():
        given = {img: {reader: r.descriptors[name] for reader, r in rs.items()
                       if (r.descriptors or {}).get(name) in values}
                 for img, rs in by_image.items()}
        pairs = []
        for first, second in combinations(readers, 2):
            shared = [(v[first], v[second]) for v in given.values() if first in v and second in v]
            pairs.append({"a": first, "b": second, "n": len(shared),
                          "kappa": cohen_kappa([x for x, _ in shared], [y for _, y in shared],
                                               list(values))})
        complete = [list(v.values()) for v in given.values() if len(v) == n_req]
        fleiss = (fleiss_kappa(fleiss_table(complete, list(values)))
                  if complete and n_req >= 2 else math.nan)
        out.append({"descriptor": name, "pairs": pairs, "fleiss": fleiss,
                    "fleiss_n": len(complete)})
    return out


def disagreements(project: Project, *, resolved: bool = False) -> list[dict]:
    """Complete images (N saved readings) whose readers disagree or flagged it, and
    flagged images still short of N readings (a reviewer may exclude them early).

    `resolved=False`: still without a consensus; True: already adjudicated."""
    by_image = saved_readings(project)
    images = {img.pk: img for img in Image.objects.filter(pk__in=list(by_image))}
    out = []
    for image_id, readers in sorted(by_image.items(), key=lambda kv: images[kv[0]].position):
        image = images[image_id]
        flagged = any(r.flagged for r in readers.values())
        if len(readers) < project.readers_required and not flagged:
            continue
        verdicts = {r.label if not r.flagged else "flag" for r in readers.values()}
        if len(verdicts) < 2 and "flag" not in verdicts:
            continue
        if bool(image.consensus_label) != resolved:
            continue
        out.append({"image": image, "readings": readers})
    return out
