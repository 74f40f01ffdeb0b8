"""One exception family for the whole library.

The CLI maps an `EutiradsError` to a one-line message and exit code 2; the web app maps it
to a 4xx page or JSON. A traceback is never the user interface. Messages must never carry
an identifying value (patient name, id, upload file name): name our own file paths and the
reason only.
"""

from __future__ import annotations

__all__ = [
    "EutiradsError",
    "InputError",
    "ImageDecodeError",
    "NoImageAreaError",
    "ManifestError",
    "ConfigError",
    "ModelError",
]


class EutiradsError(Exception):
    """Base class: an expected failure with a message fit to show a user."""


class InputError(EutiradsError):
    """A user-supplied file, folder or value is missing or unusable."""


class ImageDecodeError(InputError):
    """An image file cannot be decoded safely (corrupt, truncated, too large, wrong type)."""


class NoImageAreaError(InputError):
    """A frame holds no ultrasound image area (only text, a blank screen, a thin band).
    Predict and the API turn it into an abstention (`no-ultrasound-area`); ingest
    quarantines the source (`no-region`)."""


class ManifestError(InputError):
    """A dataset manifest is missing, malformed or inconsistent."""


class ConfigError(EutiradsError):
    """A configuration value is invalid."""


class ModelError(EutiradsError):
    """A model, checkpoint or bundle cannot be created or loaded."""
