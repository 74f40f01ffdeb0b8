"""Import a dataset into a labeling project, and export a project back to a dataset.

Images are referenced in place: the project stores the dataset folder's absolute path and
each image's relative path, and the login-checked image view reads them from there (they
are never copied into a public folder). Export copies the images (a hard link where the
file system allows) beside a new manifest, so the exported dataset stands alone.
"""

from __future__ import annotations

import os
import re
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from django.contrib.auth import get_user_model
from django.db import transaction
from tqdm import tqdm

from ...categories import DESCRIPTORS, EU_TIRADS_LABELS, normalize_label
from ...data.manifest import image_path, read_manifest, write_manifest
from ...errors import EutiradsError, InputError
from ..core.audit import record
from .models import (CATEGORY_MODE, DESCRIPTOR_MODE, EXCLUDED, QUEUE_ORDERS, RANDOM_ORDER, Image,
                     LabelHistory, Project, Reading, shuffle_key)

PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,79}$")
READER_COLUMN = "reader_"


@dataclass
class ImportReport:
    project: str
    added: int = 0
    already: int = 0
    kept_labels: int = 0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (f"project {self.project}: {self.added} images added, {self.already} already "
                f"there, {self.kept_labels} labels kept, {len(self.problems)} problems")
        return text


def import_project(dataset: str | os.PathLike[str], name: str, *, readers: int = 2,
                   keep_labels_as: str | None = None, progress: bool = True,
                   mode: str = DESCRIPTOR_MODE, queue_order: str = RANDOM_ORDER,
                   user=None) -> ImportReport:
    """Add a dataset's images to project `name` (created when new; re-import adds only new
    images). With `keep_labels_as=READER`, the manifest's EU-TIRADS labels become that
    reader's saved readings (the reader account is created without a role or password).
    `mode`: readers set the descriptors (`descriptors`, default) or the category only.
    `queue_order` (a new project's; an existing one keeps its own): `random` (default),
    `manifest` or `uncertain-first`."""
    if not PROJECT_NAME.match(name or ""):
        raise InputError(f"project name {name!r}: use 1-80 letters, digits, '-' or '_'")
    if mode not in (DESCRIPTOR_MODE, CATEGORY_MODE):
        raise InputError(f"--mode {mode!r}: use {DESCRIPTOR_MODE} or {CATEGORY_MODE}")
    orders = [order for order, _ in QUEUE_ORDERS]
    if queue_order not in orders:
        raise InputError(f"--queue-order {queue_order!r}: use {', '.join(orders)}")
    if not 1 <= readers <= 20:
        raise InputError("--readers must be between 1 and 20")
    root = Path(dataset).resolve()
    if root.suffix.lower() == ".csv":
        root = root.parent
    rows = read_manifest(root)
    report = ImportReport(project=name)
    reader = None
    if keep_labels_as:
        reader, _ = get_user_model().objects.get_or_create(
            username=keep_labels_as, defaults={"is_active": False})
    project, created = Project.objects.get_or_create(
        name=name, defaults={"dataset_root": str(root), "readers_required": readers,
                             "reading_mode": mode, "queue_order": queue_order,
                             "created_by": user})
    if not created and Path(project.dataset_root) != root:
        raise InputError(f"{root}: project {name} already reads images from "
                         f"{project.dataset_root}; choose another project name")
    known = set(project.images.values_list("path", flat=True))
    position = (project.images.order_by("-position").values_list("position", flat=True)
                .first() or 0)
    for number, row in enumerate(tqdm(rows, desc=f"import {name}", unit="image",
                                      disable=not progress), start=2):
        where = f"{root / 'manifest.csv'} line {number}"
        try:
            path = image_path(root, row)
            if not path.is_file():
                raise InputError(f"{where}: image {row['path']} is missing")
            if row["path"] in known:
                report.already += 1
                continue
            label = ""
            if reader is not None and row.get("label"):
                try:
                    label = normalize_label(row["label"])
                except InputError:
                    label = "?"
                if label not in EU_TIRADS_LABELS:
                    # The image is still imported, only without this reader's label.
                    report.problems.append(f"{where}: label is not EU-TIRADS 1-5; not kept")
                    label = ""
            with transaction.atomic():
                position += 1
                image = Image.objects.create(project=project, path=row["path"],
                                             position=position, row=dict(row),
                                             shuffle=shuffle_key(name, row["path"]),
                                             claims=1 if label else 0)
                if label:
                    kept = _kept_reading(row, label, project.reading_mode)
                    reading = Reading.objects.create(image=image, reader=reader, done=True,
                                                     saved_at=image_timestamp(), **kept)
                    LabelHistory.objects.create(reading=reading,
                                                comment="imported from the manifest", **kept)
                    report.kept_labels += 1
            known.add(row["path"])
            report.added += 1
        except EutiradsError as exc:
            report.problems.append(str(exc))
    record("project_import", user=user, username=None if user else "(command line)",
           target=f"project {name}", after={"added": report.added, "kept": report.kept_labels,
                                            "readers": project.readers_required})
    return report


def _kept_reading(row: Mapping[str, str], label: str, mode: str) -> dict:
    """The fields of a reading kept from the manifest (`--keep-labels`). In a descriptor
    project the row's descriptors come too when all five are known: the rule's category is
    stored beside the manifest's label, which stands as an override where they differ."""
    from ...categories import classify, features_from_values
    from ...data.manifest import row_descriptors

    fields = {"label": label}
    if mode != DESCRIPTOR_MODE:
        return fields
    descriptors = row_descriptors(row)
    if label == "1" and not any(descriptors.values()):
        return {**fields, "rule_label": "1"}
    if not all(descriptors.values()):
        return fields
    rule_label = str(classify(features_from_values(descriptors)))
    return {**fields, "descriptors": descriptors, "rule_label": rule_label,
            "override_reason": "" if rule_label == label else "label kept from the manifest"}


def image_timestamp():
    from django.utils import timezone

    return timezone.now()


def decide_label(labels: Mapping[str, str], consensus: str, policy: str, *,
                 required: int = 1) -> str:
    """The exported label of one image under `policy` (empty: no label under it).

    labels: reader name -> saved label ("" for a flag). consensus: adjudicated label,
    'excluded' or "". Policies: consensus (adjudicated, else unanimous readers), majority
    (adjudicated, else more than half the readers), reader:NAME (that reader's label).
    Without an adjudication, consensus and majority need `required` saved readings."""
    if policy.startswith("reader:"):
        return labels.get(policy.split(":", 1)[1], "")
    if consensus == EXCLUDED:
        return ""
    if consensus:
        return consensus
    given = [label for label in labels.values() if label]
    if len(labels) < required or not given or len(given) < len(labels):
        # Too few readers yet, or a flag: no automatic decision.
        return ""
    if policy == "consensus":
        return given[0] if len(set(given)) == 1 else ""
    if policy == "majority":
        label, count = Counter(given).most_common(1)[0]
        return label if count * 2 > len(given) else ""
    raise InputError(f"unknown policy {policy!r}; use consensus, majority or reader:NAME")


def descriptor_columns(readings: Mapping[str, Reading], readers: list[str], policy: str, *,
                       required: int) -> dict[str, str]:
    """The descriptor columns of one exported row: each descriptor decided like the label
    (`decide_label` per descriptor, no adjudication), then reader_<name>_<descriptor>."""
    columns: dict[str, str] = {}
    for descriptor in DESCRIPTORS:
        values = {name: (r.descriptors or {}).get(descriptor, "") for name, r in readings.items()}
        columns[descriptor] = decide_label(values, "", policy, required=required)
    for reader in readers:
        r = readings.get(reader)
        for descriptor in DESCRIPTORS:
            columns[f"{READER_COLUMN}{reader}_{descriptor}"] = \
                "" if r is None else (r.descriptors or {}).get(descriptor, "")
    return columns


@dataclass
class ExportReport:
    out: Path
    written: int = 0
    unlabelled: int = 0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.out}: {self.written} images written, {self.unlabelled} left out "
                f"without a label under the policy, {len(self.problems)} problems")


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def export_project(name: str, out: str | os.PathLike[str], *, policy: str = "consensus",
                   keep_unlabelled: bool = False, progress: bool = True,
                   user=None) -> ExportReport:
    """Write the project as a dataset (manifest.csv + images) that `eutirads train` reads.

    The `label` column follows `policy`; per-reader labels go to reader_<name> columns
    ('flag' for a flagged image), the adjudicated label to `consensus`. In a descriptor
    project the descriptor columns follow the same policy per descriptor (empty: unknown,
    e.g. readers disagree), and each reader's values go to reader_<name>_<descriptor>.
    Rows without a label under the policy are left out unless keep_unlabelled."""
    project = Project.objects.filter(name=name).first()
    if project is None:
        raise InputError(f"no labeling project named {name!r}")
    if not (policy in ("consensus", "majority") or
            (policy.startswith("reader:") and len(policy) > 7)):
        raise InputError(f"unknown policy {policy!r}; use consensus, majority or reader:NAME")
    out = Path(out).resolve()
    root = Path(project.dataset_root)
    if out == root:
        raise InputError(f"{out}: export into the source dataset folder would overwrite it")
    report = ExportReport(out=out)
    from .report import saved_readings

    by_image = saved_readings(project)
    readers = sorted({n for readings in by_image.values() for n in readings})
    if policy.startswith("reader:") and policy[7:] not in readers:
        raise InputError(f"reader {policy[7:]!r} has no saved reading in project {name}")
    rows = []
    for image in tqdm(list(project.images.order_by("position")), desc=f"export {name}",
                      unit="image", disable=not progress):
        readings = by_image.get(image.pk, {})
        labels = {n: r.label for n, r in readings.items()}
        label = decide_label(labels, image.consensus_label, policy,
                             required=project.readers_required)
        if not label and not keep_unlabelled:
            report.unlabelled += 1
            continue
        row = dict(image.row)
        row["label"] = label
        for reader in readers:
            r = readings.get(reader)
            row[READER_COLUMN + reader] = "" if r is None else ("flag" if r.flagged else r.label)
        if project.reading_mode == DESCRIPTOR_MODE:
            row.update(descriptor_columns(readings, readers, policy,
                                          required=project.readers_required))
        row["consensus"] = image.consensus_label
        try:
            _copy(image_path(root, {"path": image.path}), image_path(out, {"path": image.path}))
        except (OSError, EutiradsError) as exc:
            report.problems.append(f"{root / image.path}: not copied ({exc.__class__.__name__})")
            continue
        if row.get("mask"):  # the nodule mask travels with its image (the localiser reads it)
            try:
                _copy(image_path(root, {"path": row["mask"]}), image_path(out, {"path": row["mask"]}))
            except (OSError, EutiradsError) as exc:
                report.problems.append(f"{root / row['mask']}: mask not copied, row kept without "
                                       f"it ({exc.__class__.__name__})")
                row["mask"] = ""
        rows.append(row)
        report.written += 1
    write_manifest(out, rows)
    record("export", user=user, username=None if user else "(command line)",
           target=f"project {name}", after={"policy": policy, "out": str(out),
                                            "written": report.written})
    return report


def setup_demo_project(dataset: str | os.PathLike[str], *, name: str = "demo",
                       readers: int = 2, host: str = "127.0.0.1", port: int = 8000) -> str:
    """For `eutirads demo`: load `dataset` into a labeling project; return how to open it."""
    from .. import setup

    setup(migrate=True)
    root = Path(dataset).resolve()
    root = root.parent if root.suffix.lower() == ".csv" else root
    base, number = name, 1
    # A demo rerun in another work folder gets a new project; labels are never dropped.
    while (existing := Project.objects.filter(name=name).first()) is not None \
            and Path(existing.dataset_root) != root:
        number += 1
        name = f"{base}-{number}"
    report = import_project(root, name, readers=readers, progress=False)
    return (f"Labeling: project '{name}' holds {report.added + report.already} images. "
            f"Create a reader with 'eutirads users add NAME --role radiologist', run "
            f"'eutirads serve --port {port}', then open http://{host}:{port}/labeling/{name}/")
