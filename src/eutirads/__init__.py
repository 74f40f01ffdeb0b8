"""eutirads: EU-TIRADS classification of thyroid-nodule ultrasound images.

The library has one module or subpackage per pipeline stage:
categories (the guideline), phantom (synthetic data), dicom (ingest and
de-identification), data (manifest, import, split), models, training, evaluation,
export, inference; web is the Django application built on top of them.
"""

from .categories import CATEGORIES, NoduleFeatures, classify, fna_advice, normalize_label
from .errors import EutiradsError

__version__ = "0.1.0"

__all__ = ["__version__", "CATEGORIES", "NoduleFeatures", "classify", "fna_advice",
           "normalize_label", "EutiradsError"]
