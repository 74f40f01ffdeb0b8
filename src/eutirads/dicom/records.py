"""What one ingest run is told and what it records per source: the options, the per-file
result (a journal line), the quarantine signal, and the manifest columns ingest adds."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..data.manifest import CORE_COLUMNS
from ..errors import ConfigError
from .reading import DEFAULT_MAX_DECODED_BYTES

__all__ = ["IngestOptions", "FileResult", "Quarantine", "parse_frames", "parse_text_policy",
           "TEXT_POLICIES", "EXTRA_COLUMNS", "MANIFEST_COLUMNS", "QUARANTINE_NAME",
           "QUARANTINE_COLUMNS", "STATE_DIR"]

EXTRA_COLUMNS: tuple[str, ...] = ("study_id", "series_id", "frame", "pixel_spacing_mm_x",
                                  "pixel_spacing_mm_y", "text_boxes_redacted",
                                  "source_key_hash")
MANIFEST_COLUMNS: tuple[str, ...] = CORE_COLUMNS + EXTRA_COLUMNS
QUARANTINE_NAME = "quarantine.csv"
QUARANTINE_COLUMNS: tuple[str, ...] = ("source_key_hash", "reason_code", "reason")
STATE_DIR = ".ingest"
# redact: burned-in text inside the image area is blanked (and counted); quarantine: a
# source with such text is held back whole; off: no check (and the output is not
# declared clean: BurnedInAnnotation stays unknown).
TEXT_POLICIES: tuple[str, ...] = ("redact", "quarantine", "off")


@dataclass(frozen=True)
class IngestOptions:
    """What shapes the output; a dataset is always built with one set of options."""

    frames: str | int = "all"
    keep_dicom: bool = False
    detect_region: bool = False
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES
    text_policy: str = "redact"

    @property
    def max_file_bytes(self) -> int:
        # An uncompressed file is about its decoded size; compressed ones are smaller.
        return self.max_decoded_bytes + (16 << 20)


@dataclass
class FileResult:
    """One source's outcome; one journal line. `key_hash` is the keyed hash of its bytes."""

    key_hash: str
    status: str  # "done", "quarantined" or "skipped" (already done in an earlier run)
    reason_code: str = ""
    reason: str = ""
    rows: list[dict[str, str]] = field(default_factory=list)


class Quarantine(Exception):
    """Raised inside the per-file pipeline: hold this source back with a reason code and a
    one-line reason that names no identifying value."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def parse_frames(text: str | int) -> str | int:
    """'all', 'first', or N (keep every Nth frame)."""
    value = str(text).strip().lower()
    if value in ("all", "first"):
        return value
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise ConfigError(f"--frames must be all, first or a whole number >= 1, not {str(text)[:20]!r}")


def parse_text_policy(text: str) -> str:
    value = str(text).strip().lower()
    if value not in TEXT_POLICIES:
        raise ConfigError(f"--text-policy must be one of {', '.join(TEXT_POLICIES)}, "
                          f"not {str(text)[:20]!r}")
    return value
