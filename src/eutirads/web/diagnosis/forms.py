"""Forms for the diagnosis views: which fields a POST may carry, their length and type, in
one place (the views no longer read `request.POST` by hand). What the values mean (a box
inside the image, a size in range, a category or descriptor of the vocabulary) is checked
by the library's parsers and `services`, which the JSON API shares; a form error becomes
the same one-line InputError."""

from __future__ import annotations

from pathlib import Path

from django import forms
from django.utils.translation import gettext_lazy as _

from ...errors import InputError
from ...inference.diagnosis import DESCRIPTOR_VALUES


def cleaned(form: forms.Form) -> dict:
    """The form's clean values; InputError with its first error otherwise."""
    if form.is_valid():
        return form.cleaned_data
    field, errors = next(iter(form.errors.items()))
    name = "" if field == "__all__" else f"{field}: "
    raise InputError(f"{name}{errors[0]}")


def _number_text() -> forms.CharField:
    return forms.CharField(required=False, max_length=20)


class ClassifyForm(forms.Form):
    """The Classify page's upload form (the image itself comes from `request.FILES`)."""

    x0, y0, x1, y1 = _number_text(), _number_text(), _number_text(), _number_text()
    size_mm = _number_text()
    mm_per_pixel = _number_text()
    keep_image = forms.BooleanField(required=False)
    send_to_pacs = forms.BooleanField(required=False)

    FIELDS = ("x0", "y0", "x1", "y1", "size_mm", "mm_per_pixel", "keep_image", "send_to_pacs")

    def echo(self) -> dict:
        """The values as typed, to fill the form again after an error."""
        return {name: str(self.data.get(name, ""))[:20] for name in self.FIELDS}


class DecisionForm(forms.Form):
    """Accept or change: the radiologist's category, descriptors and note."""

    label = forms.CharField(required=False, max_length=10)
    note = forms.CharField(required=False, max_length=2000)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in DESCRIPTOR_VALUES:
            self.fields[f"d_{name}"] = forms.CharField(required=False, max_length=40)

    def descriptors(self) -> dict[str, str]:
        return {name: self.cleaned_data[f"d_{name}"] for name in DESCRIPTOR_VALUES}


class ModelAddForm(forms.Form):
    """Register a bundle folder that is on the server."""

    folder = forms.CharField(max_length=1000, error_messages={
        "required": _("Give the bundle's absolute folder path on the server.")})
    activate = forms.BooleanField(required=False)

    def clean_folder(self) -> Path:
        folder = Path(self.cleaned_data["folder"])
        if not folder.is_absolute():
            raise forms.ValidationError(_("Give the bundle's absolute folder path on the server."))
        return folder


class ReadingForm(forms.Form):
    """Reading mode: the reader's blind category for one item."""

    item = forms.CharField(max_length=20)
    label = forms.CharField(required=False, max_length=10)
