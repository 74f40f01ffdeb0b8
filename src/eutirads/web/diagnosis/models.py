"""Registered model bundles, prediction history, the radiologist's decisions, blind
readings and API tokens."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class ModelBundle(models.Model):
    """An export bundle copied under EUTIRADS_HOME/bundles/ (folder name generated)."""

    name = models.CharField(max_length=200)
    version = models.CharField(max_length=100, blank=True)
    folder = models.CharField(max_length=100, unique=True,
                              help_text="generated folder name under EUTIRADS_HOME/bundles/")
    sha256 = models.CharField(max_length=64, help_text="SHA-256 of model.onnx")
    class_names = models.JSONField(default=list)
    metadata = models.JSONField(default=dict, blank=True)
    model_card = models.TextField(blank=True)
    active = models.BooleanField(default=False)
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-added_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["active"], condition=Q(active=True),
                                               name="diagnosis_one_active_bundle")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.name} {self.version}".strip()

    @property
    def test_metrics(self) -> dict[str, float]:
        """The bundle's scalar test metrics (its evaluation summary flattened), else {}."""
        raw = (self.metadata or {}).get("test_metrics") or {}
        if not isinstance(raw, dict):
            return {}
        flat = dict(raw.get("summary") or {}) if isinstance(raw.get("summary"), dict) else {}
        flat.update({k: v for k, v in raw.items() if k != "summary"})
        return {str(k): float(v) for k, v in flat.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v}


class Prediction(models.Model):
    """One classification: who, when, which model, what came out (image only on opt-in)."""

    WEB, API, READING = "web", "api", "reading"
    CHANNELS = [(WEB, "web page"), (API, "API"), (READING, "reading mode")]
    SOURCES = [("", "none"), ("given", "given"), ("measured", "measured from the box"),
               ("localiser", "measured on the model's outline")]
    BOX_SOURCES = [("none", "none"), ("given", "drawn"), ("localiser", "the model's")]

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL,
                             related_name="diagnosis_predictions")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    bundle = models.ForeignKey(ModelBundle, null=True, on_delete=models.SET_NULL,
                               related_name="predictions")
    channel = models.CharField(max_length=10, choices=CHANNELS, default=WEB)
    label = models.CharField(max_length=16)
    probabilities = models.JSONField(default=dict)
    box = models.JSONField(null=True, blank=True)
    diameter_mm = models.FloatField(null=True, blank=True)
    diameter_source = models.CharField(max_length=10, choices=SOURCES, blank=True)
    advice = models.TextField(blank=True)
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    # Generated name of the re-encoded PNG under EUTIRADS_HOME/diagnosis/images/; empty
    # unless the user opted in to keep the image.
    image_name = models.CharField(max_length=64, blank=True)
    # Where the kept image lies in the upload ({x0, y0, x1, y1}): it holds the image area
    # only, so outlines are drawn shifted by its corner.
    image_area = models.JSONField(null=True, blank=True)
    box_source = models.CharField(max_length=10, choices=BOX_SOURCES, default="none")
    # The localiser's object ({"box", "score", "regions": [{... "contour", "calipers"}]}).
    nodule = models.JSONField(null=True, blank=True)
    descriptors = models.JSONField(null=True, blank=True)  # {name: {"value", "probabilities"}}
    rule_path = models.TextField(blank=True)
    abstain = models.BooleanField(default=False)
    abstain_reason = models.CharField(max_length=40, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"prediction #{self.pk}: {self.label}"

    @property
    def confidence(self) -> float:
        return float((self.probabilities or {}).get(self.label, 0.0))

    @property
    def descriptor_values(self) -> dict[str, str]:
        return {k: str((v or {}).get("value") or "") for k, v in (self.descriptors or {}).items()}


class Decision(models.Model):
    """The radiologist's own conclusion on a prediction, stored beside the model's answer:
    the category and each descriptor as confirmed or changed. One per prediction (saving
    again updates it; the audit log keeps every version)."""

    prediction = models.OneToOneField(Prediction, on_delete=models.CASCADE,
                                      related_name="decision")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL,
                             related_name="diagnosis_decisions")
    label = models.CharField(max_length=16)
    descriptors = models.JSONField(default=dict, blank=True)  # {name: value}
    note = models.TextField(blank=True)
    decided_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-decided_at", "-id"]

    def __str__(self) -> str:
        return f"decision on prediction #{self.prediction_id}: {self.label}"

    @property
    def changed_fields(self) -> list[str]:
        """What differs from the model: "category" and/or descriptor names."""
        model = self.prediction
        out = ["category"] if self.label != model.label else []
        ours = model.descriptor_values
        out += [k for k, v in (self.descriptors or {}).items() if v and ours.get(k, "") != v]
        return out

    @property
    def differs(self) -> bool:
        return bool(self.changed_fields)

    @property
    def rule_path(self) -> str:
        """The guideline's rule on the radiologist's descriptors ("" unless all are given)."""
        from ...inference.diagnosis import descriptor_rule_path

        return descriptor_rule_path(self.descriptors)


class Reading(models.Model):
    """A reader's blind category for an image, stored before the model's answer is shown.

    `item_key` names the labeled image ("labeling:<item id>") when the image came from a
    labeling project, so the comparison report can look up its consensus label.
    """

    reader = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                               related_name="diagnosis_readings")
    prediction = models.OneToOneField(Prediction, on_delete=models.CASCADE,
                                      related_name="reading")
    item_key = models.CharField(max_length=64, blank=True, db_index=True)
    human_label = models.CharField(max_length=16)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["reader", "item_key"],
                                               condition=~Q(item_key=""),
                                               name="diagnosis_one_reading_per_item")]


class ApiToken(models.Model):
    """A per-user API token; only its SHA-256 is stored (the token is shown once)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="diagnosis_tokens")
    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=8, help_text="first characters, to tell tokens apart")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="empty: never expires")
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"#{self.pk} {self.prefix}… ({self.user})"

    def status(self, now=None) -> str:
        from django.utils import timezone

        now = now or timezone.now()
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"
