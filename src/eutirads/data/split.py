"""Patient-grouped, duplicate-aware, label-stratified splits and cross-validation folds.

Rows are first joined into *groups* that must never be separated: rows of one patient
(`patient_id`), rows with identical pixels (`pixel_sha256`) and rows whose image areas are
near-duplicates (`phash` within `hashing.PHASH_THRESHOLD` bits). Rows without a patient id
are each their own patient.

Groups are then dealt out greedily (our own algorithm, in the spirit of scikit-learn's
StratifiedGroupKFold, which cannot give unequal train/val/test fractions): after a seeded
shuffle, groups holding the rarest labels go first, larger groups before smaller ones, and
each group goes to the split where the per-label shares and the overall size shares of
everything placed so far come closest (least squares, size weighted like all labels
together) to the requested fractions. Rare
classes are placed first, while every split still has room, which is what keeps a class of
three images from ending up all in train. Same rows, fractions and seed: same result.

Unlabelled rows get a split too (`include_unlabelled`, what `split_dataset` does): the
localiser learns from unlabelled images with outlines, and the classifier, which reads
labelled rows only, does not see them. Labelled rows are dealt out first, exactly as if the
unlabelled ones were absent, and a group is judged by its labelled rows; an unlabelled row
then follows its group, and groups holding no labelled row are dealt out by size alone
toward the same fractions. So a row labelled later (in the labeling app) already sits with
its patient.
"""

from __future__ import annotations

import os
import random
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Callable, Mapping, Sequence

from tqdm import tqdm

from ..categories import sort_labels
from ..errors import EutiradsError, InputError
from ..imageio import open_image
from .hashing import PHASH_THRESHOLD, hash_image, is_valid_phash, near_duplicate_pairs
from .manifest import Row, image_path, read_manifest, write_manifest

__all__ = ["SPLITS", "SplitReport", "group_rows", "assign_splits", "split_dataset",
           "patient_folds", "leaking_groups", "duplicate_groups"]

SPLITS: tuple[str, ...] = ("train", "val", "test")


class _UnionFind:
    def __init__(self, size: int):
        self.parent = list(range(size))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def group_rows(rows: Sequence[Mapping[str, str]], *, threshold: int = PHASH_THRESHOLD
               ) -> list[int]:
    """Group number per row (0, 1, ... in order of first row): same patient, identical
    pixels or near-duplicate image areas join one group."""
    uf = _UnionFind(len(rows))
    first: dict[tuple[str, str], int] = {}
    for i, row in enumerate(rows):
        for key in ("patient_id", "pixel_sha256"):
            value = row.get(key, "")
            if value:
                uf.union(first.setdefault((key, value), i), i)
    if threshold >= 0:
        for a, b in near_duplicate_pairs([row.get("phash", "") for row in rows], threshold):
            uf.union(a, b)
    numbers: dict[int, int] = {}
    return [numbers.setdefault(uf.find(i), len(numbers)) for i in range(len(rows))]


def leaking_groups(rows: Sequence[Mapping[str, str]], groups: Sequence[int]) -> list[int]:
    """Groups whose rows sit in more than one split (empty split ignored)."""
    splits: dict[int, set[str]] = defaultdict(set)
    for row, group in zip(rows, groups):
        if row.get("split"):
            splits[group].add(row["split"])
    return sorted(g for g, s in splits.items() if len(s) > 1)


def assign_splits(labels: Sequence[str], groups: Sequence[int], fractions: Mapping[str, float],
                  *, seed: int = 0, fixed: Sequence[str] | None = None,
                  include_unlabelled: bool = False) -> list[str]:
    """Split name per row, whole groups at a time ("" for unlabelled rows unless
    `include_unlabelled`; see the module docstring).

    `fractions` maps split names to the wanted share of labelled rows (summing to 1; a
    split with 0 gets nothing). `fixed` holds splits already decided per row ("" where
    free): those rows keep theirs, the other labelled rows of their group follow them, and
    the free groups are dealt out around them.
    """
    result = _assign_labelled(labels, groups, fractions, seed=seed, fixed=fixed)
    if include_unlabelled:
        _assign_unlabelled(result, labels, groups, fractions, seed=seed, fixed=fixed)
    return result


def _assign_unlabelled(result: list[str], labels: Sequence[str], groups: Sequence[int],
                       fractions: Mapping[str, float], *, seed: int,
                       fixed: Sequence[str] | None) -> None:
    """Give unlabelled rows (in place) their group's split; groups without a labelled row
    keep a fixed split when they have one (most rows decide), else are dealt out by size."""
    names = [name for name, share in fractions.items() if share > 0]
    fixed = list(fixed) if fixed is not None else [""] * len(labels)
    of_group: dict[int, str] = {}
    for i, group in enumerate(groups):
        if labels[i] and result[i]:
            of_group.setdefault(group, result[i])
    members: dict[int, list[int]] = defaultdict(list)
    for i, group in enumerate(groups):
        if not labels[i]:
            members[group].append(i)
    size = Counter()
    free = []
    for group, rows in members.items():
        decided = Counter(fixed[i] for i in rows if fixed[i])
        if group not in of_group and decided:
            of_group[group] = max(decided, key=lambda s: (decided[s], -names.index(s)
                                                          if s in names else -len(names)))
        if group in of_group:
            size[of_group[group]] += len(rows)
        else:
            free.append(group)
    rng = random.Random(seed + 1)
    free.sort()
    rng.shuffle(free)
    free.sort(key=lambda g: -len(members[g]))  # big groups first, while there is room

    def cost(split: str, add: int) -> float:
        placed = sum(size[name] for name in names) + add
        return sum(((size[name] + (add if name == split else 0)) / placed
                    - fractions[name]) ** 2 for name in names)

    for group in free:
        best = min(names, key=lambda name: (cost(name, len(members[group])), names.index(name)))
        size[best] += len(members[group])
        of_group[group] = best
    for group, rows in members.items():
        for i in rows:
            result[i] = of_group[group]


def _assign_labelled(labels: Sequence[str], groups: Sequence[int],
                     fractions: Mapping[str, float], *, seed: int,
                     fixed: Sequence[str] | None) -> list[str]:
    """`assign_splits` for the labelled rows ("" for the others)."""
    if len(labels) != len(groups) or (fixed is not None and len(fixed) != len(labels)):
        raise ValueError("labels, groups and fixed must have one entry per row")
    names = [name for name, share in fractions.items() if share > 0]
    if not names or abs(sum(fractions.values()) - 1) > 1e-6:
        raise InputError(f"split fractions must sum to 1: {dict(fractions)}")
    fixed = list(fixed) if fixed is not None else [""] * len(labels)
    result = ["" if not label else split for label, split in zip(labels, fixed)]

    members: dict[int, list[int]] = defaultdict(list)
    for i, (label, group) in enumerate(zip(labels, groups)):
        if label:
            members[group].append(i)
    totals = Counter(label for label in labels if label)
    count = {name: Counter() for name in fractions}
    size = Counter()

    free = []
    for group, rows in members.items():
        decided = Counter(result[i] for i in rows if result[i])
        if not decided:
            free.append(group)
            continue
        # Most rows decide; ties go to the earlier split name.
        order = list(fractions)
        target = max(decided, key=lambda s: (decided[s],
                                             -order.index(s) if s in order else -len(order)))
        for i in rows:
            result[i] = result[i] or target
            count.setdefault(result[i], Counter())[labels[i]] += 1
            size[result[i]] += 1

    rng = random.Random(seed)
    free.sort()
    rng.shuffle(free)
    group_labels = {g: Counter(labels[i] for i in members[g]) for g in free}
    free.sort(key=lambda g: (min(totals[l] for l in group_labels[g]), -len(members[g])))

    # The overall size balance weighs as much as all per-label terms together: without it,
    # each class rounds its share of a small split down to nothing (20 patients of 5 classes
    # gave an empty 10% test split).
    size_weight = float(len(totals))

    def cost(split: str, add: Counter) -> float:
        # Shares of what is placed so far (not of the final totals): then the order in
        # which labels come does not bias early groups toward the largest split.
        value = 0.0
        added = sum(add.values())
        placed = sum(size[name] for name in names) + added
        for name in names:
            extra = add if name == split else Counter()
            for label in add:
                placed_label = sum(count[n][label] for n in names) + add[label]
                value += ((count[name][label] + extra[label]) / placed_label
                          - fractions[name]) ** 2
            value += size_weight * ((size[name] + (added if name == split else 0)) / placed
                                    - fractions[name]) ** 2
        return value

    for group in free:
        add = group_labels[group]
        best = min(names, key=lambda name: (cost(name, add), names.index(name)))
        count[best].update(add)
        size[best] += sum(add.values())
        for i in members[group]:
            result[i] = best
    return result


def _fractions(val: float, test: float) -> dict[str, float]:
    for name, value in (("val", val), ("test", test)):
        if not 0 <= value < 1:
            raise InputError(f"--{name} must be a fraction in [0, 1), got {value}")
    if val + test >= 1:
        raise InputError(f"--val + --test must leave room for train (got {val} + {test})")
    return {"train": 1 - val - test, "val": val, "test": test}


def patient_folds(rows: Sequence[Mapping[str, str]], k: int, seed: int = 0, *,
                  threshold: int = PHASH_THRESHOLD, include_unlabelled: bool = False
                  ) -> list[int]:
    """Cross-validation fold (0..k-1) per row, -1 for unlabelled rows (unless
    `include_unlabelled`: then they get folds too, e.g. for the localiser's images with
    outlines; the labelled rows' folds stay the same).

    Folds are stratified by label and grouped like the splits (patient, identical and
    near-duplicate images), using the fingerprints cached in the rows (an imported
    dataset has them). Pass the rows you want to fold, e.g. train + val.
    """
    if k < 2:
        raise InputError(f"cross-validation needs at least 2 folds, got {k}")
    groups = group_rows(rows, threshold=threshold)
    names = {str(i): 1 / k for i in range(k)}
    # Equal shares that sum to 1 up to rounding.
    names[str(k - 1)] = 1 - sum(1 / k for _ in range(k - 1))
    labels = [row.get("label", "") for row in rows]
    folds = assign_splits(labels, groups, names, seed=seed,
                          include_unlabelled=include_unlabelled)
    return [int(f) if f else -1 for f in folds]


@dataclass
class SplitReport:
    dataset: str
    seed: int
    fractions: dict[str, float]
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> label -> n
    unlabelled: int = 0
    unlabelled_counts: dict[str, int] = field(default_factory=dict)  # split -> n
    groups: int = 0
    duplicate_groups: int = 0
    kept_existing: int = 0
    without_patient_id: int = 0
    leaking_groups: int = 0
    undecodable: list[str] = field(default_factory=list)

    def summary_line(self) -> str:
        sizes = " / ".join(f"{s} {sum(self.counts.get(s, {}).values())}" for s in SPLITS)
        unlabelled = " / ".join(f"{s} {self.unlabelled_counts.get(s, 0)}" for s in SPLITS)
        line = (f"split {self.dataset}: {sizes} labelled image(s), {self.groups} group(s), "
                f"{self.duplicate_groups} duplicate group(s), {self.unlabelled} unlabelled "
                f"({unlabelled})")
        if self.without_patient_id:
            line += (f"; {self.without_patient_id} image(s) without patient id, each its own "
                     "group")
        if self.kept_existing:
            line += f"; kept {self.kept_existing} existing assignment(s) (--force to redo)"
        if self.leaking_groups:
            line += f"; WARNING {self.leaking_groups} group(s) straddle splits"
        if self.undecodable:
            line += f"; {len(self.undecodable)} undecodable image(s) left out"
        return line

    def to_dict(self) -> dict:
        return asdict(self)


def _fill_hashes(dataset: str | os.PathLike[str], rows: list[Row], progress: bool,
                 notify: Callable[[str], None] | None) -> list[str]:
    """Fingerprint rows that lack them (a manifest not written by our import); returns
    the paths of images that cannot be decoded."""
    bad = []
    todo = [row for row in rows
            if not row.get("pixel_sha256") or not is_valid_phash(row.get("phash", ""))]
    for row in tqdm(todo, desc="split: hashing", unit="image", disable=not progress or not todo,
                    leave=False):
        try:
            path = image_path(dataset, row)
            hashes = hash_image(open_image(path, name=str(path)))
        except EutiradsError as exc:
            bad.append(row["path"])
            if notify:
                notify(f"warning: {exc}; left out of the split")
            continue
        row["pixel_sha256"], row["phash"] = hashes.pixel_sha256, hashes.phash
    return bad


def split_dataset(dataset: str | os.PathLike[str], *, val: float = 0.18, test: float = 0.10,
                  seed: int = 0, force: bool = False, threshold: int = PHASH_THRESHOLD,
                  progress: bool = True, on_problem: Callable[[str], None] | None = None
                  ) -> SplitReport:
    """Write the `split` column of a dataset's manifest (see the module docstring).

    Splits already present (e.g. from a folders import with train/val/test folders) are
    kept unless `force`; rows without one are added around them. Missing fingerprints are
    computed and cached in the manifest.
    """
    fractions = _fractions(val, test)
    rows = read_manifest(dataset)
    if not rows:
        raise InputError(f"{dataset}: the manifest has no rows")
    bad = set(_fill_hashes(dataset, rows, progress, on_problem))
    for row in rows:
        if row["split"] and row["split"] not in SPLITS:
            raise InputError(f"{dataset}: unknown split {row['split'][:20]!r} in the manifest "
                             f"(expected {', '.join(SPLITS)} or empty)")
    labels = ["" if row["path"] in bad else row["label"] for row in rows]
    fixed = ["" if force or row["path"] in bad else row["split"] for row in rows]
    groups = group_rows(rows, threshold=threshold)
    splits = assign_splits(labels, groups, fractions, seed=seed, fixed=fixed,
                           include_unlabelled=True)
    for row, split in zip(rows, splits):
        row["split"] = "" if row["path"] in bad else split
    write_manifest(dataset, rows)

    report = SplitReport(dataset=str(dataset), seed=seed, fractions=fractions)
    for split in SPLITS:
        counts = Counter(l for l, s in zip(labels, splits) if s == split and l)
        report.counts[split] = {label: counts[label] for label in sort_labels(counts)}
    unlabelled = [row["split"] for row, label in zip(rows, labels)
                  if not label and row["path"] not in bad]
    report.unlabelled = len(unlabelled)
    report.unlabelled_counts = {split: unlabelled.count(split) for split in SPLITS}
    sizes = Counter(groups)
    report.groups = len(sizes)
    report.duplicate_groups = len(duplicate_groups(rows, threshold=threshold))
    report.kept_existing = sum(1 for s in fixed if s)
    report.without_patient_id = sum(1 for row in rows if not row["patient_id"])
    report.leaking_groups = len(leaking_groups(rows, groups))
    report.undecodable = sorted(bad)
    return report


def duplicate_groups(rows: Sequence[Mapping[str, str]], *, threshold: int = PHASH_THRESHOLD
                     ) -> list[list[int]]:
    """Row indices of each set of identical or near-duplicate images (two or more rows),
    ignoring patient ids."""
    plain = [{k: v for k, v in row.items() if k != "patient_id"} for row in rows]
    members: dict[int, list[int]] = defaultdict(list)
    for i, group in enumerate(group_rows(plain, threshold=threshold)):
        members[group].append(i)
    return [m for m in members.values() if len(m) > 1]
