"""Forms for the labeling views: the reader's verdict (from the reading screen's JSON) and
the reviewer's consensus. Validation lives here; `queue` receives clean values only."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from ...categories import DESCRIPTORS, EU_TIRADS_LABELS
from .models import DESCRIPTOR_MODE, EXCLUDED

_CATEGORY_CHOICES = [("", "")] + [(label, label) for label in EU_TIRADS_LABELS]


class VerdictForm(forms.Form):
    """One reading. Category mode: `label`. Descriptor mode: the five descriptors (or
    `nodule` false), an optional diameter and an optional `override` with its reason.
    A flag (unusable image, with a reason) needs neither."""

    label = forms.ChoiceField(choices=_CATEGORY_CHOICES, required=False)
    nodule = forms.BooleanField(required=False, initial=True)
    diameter_mm = forms.FloatField(required=False, min_value=0.1, max_value=200)
    override = forms.ChoiceField(choices=_CATEGORY_CHOICES, required=False)
    override_reason = forms.CharField(required=False, max_length=300)
    flagged = forms.BooleanField(required=False)
    reason = forms.CharField(required=False, max_length=300)
    comment = forms.CharField(required=False, max_length=2000)

    def __init__(self, data, *, mode: str):
        data = dict(data)
        data.setdefault("nodule", True)
        super().__init__(data)
        self.mode = mode
        for name, values in DESCRIPTORS.items():
            self.fields[name] = forms.ChoiceField(choices=[("", "")] + [(v, v) for v in values],
                                                  required=False)

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        if data.get("flagged"):
            if not data.get("reason"):
                raise forms.ValidationError(_("a flag needs a reason"))
            return data
        if self.mode != DESCRIPTOR_MODE:
            if not data.get("label"):
                raise forms.ValidationError(_("choose an EU-TIRADS category from 1 to 5"))
            return data
        if data.get("nodule"):
            missing = [name for name in DESCRIPTORS if not data.get(name)]
            if missing:
                raise forms.ValidationError(
                    _("set every descriptor first (missing: %(names)s)")
                    % {"names": ", ".join(missing)})
        if data.get("override") and not data.get("override_reason"):
            raise forms.ValidationError(_("an override of the computed category needs a reason"))
        return data

    def first_error(self) -> str:
        for errors in self.errors.values():
            return str(errors[0])
        return ""


class ConsensusForm(forms.Form):
    label = forms.ChoiceField(choices=[(label, label) for label in EU_TIRADS_LABELS]
                              + [(EXCLUDED, EXCLUDED)],
                              error_messages={"invalid_choice": _(
                                  "the consensus must be a category 1-5 or 'excluded'")})
