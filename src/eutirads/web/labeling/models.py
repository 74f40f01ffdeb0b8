"""Labeling projects: images from a dataset, each read blind by N readers.

Slots: `Image.claims` counts the readings an image has or has promised (a reader's pending
claim while the image is on their screen, or a saved reading). It only ever changes by a
conditional UPDATE (`claims < readers_required`), so two readers at the same moment can
never push an image past N; the unique (image, reader) constraint stops a double reading.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import models

EU_TIRADS_CHOICES = [(str(n), f"EU-TIRADS {n}") for n in range(1, 6)]
EXCLUDED = "excluded"  # a consensus that the image is unusable
DESCRIPTOR_MODE = "descriptors"  # the reader sets the five descriptors; the rule gives the category
CATEGORY_MODE = "category"      # the reader picks the category only
READING_MODES = [(DESCRIPTOR_MODE, "descriptors"), (CATEGORY_MODE, "category")]
RANDOM_ORDER = "random"              # a fixed shuffle of the project's images (`shuffle_key`)
MANIFEST_ORDER = "manifest"         # images in the manifest's order
UNCERTAIN_FIRST = "uncertain-first"  # the model's least confident images first (active learning)
QUEUE_ORDERS = [(RANDOM_ORDER, "random"), (MANIFEST_ORDER, "manifest order"),
                (UNCERTAIN_FIRST, "uncertain first")]


class Project(models.Model):
    name = models.CharField(max_length=80, unique=True)
    # Images stay where the dataset is; this is the absolute folder holding manifest.csv.
    dataset_root = models.CharField(max_length=1000)
    readers_required = models.PositiveSmallIntegerField(default=2)
    reading_mode = models.CharField(max_length=12, choices=READING_MODES, default=DESCRIPTOR_MODE)
    queue_order = models.CharField(max_length=20, choices=QUEUE_ORDERS, default=RANDOM_ORDER)
    # Off by default: a reviewer adjudicates only images they did not read themselves.
    self_adjudication = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Image(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="images")
    path = models.CharField(max_length=1000)  # relative to project.dataset_root
    position = models.PositiveIntegerField()  # order in the manifest
    row = models.JSONField(default=dict)      # the manifest row, kept for export
    claims = models.PositiveSmallIntegerField(default=0)
    consensus_label = models.CharField(max_length=10, blank=True)
    consensus_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                     on_delete=models.SET_NULL, related_name="+")
    consensus_at = models.DateTimeField(null=True, blank=True)
    # True when the consensus came from unanimous readers, not from a reviewer.
    consensus_auto = models.BooleanField(default=False)
    # 1 - the model's top probability (`eutirads label rank`); None = not ranked.
    uncertainty = models.FloatField(null=True, blank=True)
    # The image's place in the project's random order: `shuffle_key(project, path)`.
    shuffle = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["project", "path"], name="image_unique_path"),
        ]
        indexes = [models.Index(fields=["project", "claims", "position"]),
                   models.Index(fields=["project", "claims", "shuffle"])]

    def __str__(self) -> str:
        return f"{self.project.name}#{self.position}"

    @property
    def has_overlay(self) -> bool:
        return has_overlay(self.row)


def shuffle_key(project_name: str, path: str) -> int:
    """A stable pseudo-random sort key (0 to 2**31 - 1): the project's random queue order.

    Derived, not drawn, so every reader of a project (and a re-import of the same dataset
    under the same name) gets the same order, and each image's key is set once, at import:
    the queue's claim query only sorts by it."""
    digest = hashlib.blake2b(f"{project_name}\0{path}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


def has_overlay(row: dict) -> bool:
    """True when the manifest row gives the nodule's mask or box (drawn over the image)."""
    return bool(row.get("mask")) or all(str(row.get(k, "")).strip() for k in ("x0", "y0", "x1", "y1"))


class Reading(models.Model):
    """One reader's verdict on one image: a label, or a flag (unusable, with a reason).

    `done=False` is a pending claim: the image is on the reader's screen."""

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="readings")
    reader = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                               related_name="readings")
    done = models.BooleanField(default=False)
    label = models.CharField(max_length=10, blank=True, choices=EU_TIRADS_CHOICES)
    flagged = models.BooleanField(default=False)
    flag_reason = models.CharField(max_length=300, blank=True)
    comment = models.TextField(blank=True, max_length=2000)
    # Descriptor mode: {"composition": "solid", ...} ({} = no nodule or category mode);
    # `rule_label` is what the guideline rule gives; `label` differs only by an override.
    descriptors = models.JSONField(default=dict, blank=True)
    rule_label = models.CharField(max_length=10, blank=True)
    override_reason = models.CharField(max_length=300, blank=True)
    diameter_mm = models.FloatField(null=True, blank=True)
    claimed_at = models.DateTimeField(auto_now_add=True)
    saved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["image", "reader"], name="one_reading_per_reader"),
        ]
        indexes = [models.Index(fields=["reader", "done"]),
                   models.Index(fields=["done", "claimed_at"])]

    def snapshot(self) -> dict:
        return {"label": self.label, "flagged": self.flagged, "flag_reason": self.flag_reason,
                "comment": self.comment, "descriptors": self.descriptors,
                "rule_label": self.rule_label, "override_reason": self.override_reason,
                "diameter_mm": self.diameter_mm}


class LabelHistory(models.Model):
    """Every saved version of a reading, oldest first: a changed label keeps its history."""

    reading = models.ForeignKey(Reading, on_delete=models.CASCADE, related_name="history")
    at = models.DateTimeField(auto_now_add=True)
    label = models.CharField(max_length=10, blank=True)
    flagged = models.BooleanField(default=False)
    flag_reason = models.CharField(max_length=300, blank=True)
    comment = models.TextField(blank=True)
    descriptors = models.JSONField(default=dict, blank=True)
    rule_label = models.CharField(max_length=10, blank=True)
    override_reason = models.CharField(max_length=300, blank=True)
    diameter_mm = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["at", "id"]


class Skip(models.Model):
    """A reader put an image aside; it leaves their queue until they revisit skipped ones."""

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="skips")
    reader = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                               related_name="+")
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["image", "reader"], name="one_skip")]
