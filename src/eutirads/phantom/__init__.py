"""Procedural thyroid B-mode ultrasound ("phantom") with known EU-TIRADS labels.

`generate_dataset` writes screen captures (PNG, class folders, manifest.csv);
`generate_dicom` writes ultrasound DICOM exams with invented identities for the
de-identification tests; `contact_sheet` draws a grid of samples to look at. The label of
every image is `eutirads.categories.classify` of the features drawn into it.
"""

from __future__ import annotations

from .dataset import Example, generate_dataset, render_example
from .dicom import DicomReport, generate_dicom
from .scene import FEATURE_COLUMNS, NATURAL_PREVALENCE
from .sheet import contact_sheet

__all__ = ["generate_dataset", "generate_dicom", "DicomReport", "contact_sheet", "render_example", "Example", "FEATURE_COLUMNS",
           "NATURAL_PREVALENCE"]
