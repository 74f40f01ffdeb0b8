"""The secret key and everything derived from it: pseudonyms, UIDs and date shifts.

Every replacement value is an HMAC-SHA256 of the original under one secret key, so the same
input and key always give the same output (a rerun, or next month's exams of the same
patient, land on the same pseudonym, UIDs and date offset), while another key gives
unrelated values and nobody without the key can link a pseudonym back to the patient.

The key lives in a file readable by its owner only (created on first use with mode 0600);
it is never written into a dataset.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

__all__ = ["Keyring", "load_or_create_key", "default_key_path"]

KEY_BYTES = 32
# Dates move back by 1 to 10 years (whole days, so times of day and weekdays' spacing stay
# consistent and DA/DT/TM never disagree). A backward shift keeps dates plausible.
_MIN_SHIFT_DAYS = 366
_MAX_SHIFT_DAYS = 3652


def default_key_path() -> Path:
    """`$EUTIRADS_HOME/deid.key` (default `~/.eutirads/deid.key`)."""
    home = Path(os.environ.get("EUTIRADS_HOME") or Path.home() / ".eutirads")
    return home / "deid.key"


def load_or_create_key(path: str | os.PathLike[str]) -> bytes:
    """Read the key file, creating it (0600, 32 random bytes as hex) when it does not exist.

    Refuses a key file that its group or others may read or write: a leaked key undoes the
    pseudonymisation of every dataset made with it.
    """
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # O_EXCL: two processes racing to create the key never overwrite each other.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(secrets.token_hex(KEY_BYTES) + "\n")
    if not path.is_file():
        raise ConfigError(f"{path}: key file is not a regular file")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"{path}: key file is readable or writable by group/others "
                          f"(mode {mode:04o}); run 'chmod 600 {path}'")
    text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise ConfigError(f"{path}: key file does not hold a hex key") from None
    if len(key) < 16:
        raise ConfigError(f"{path}: key is too short ({len(key)} bytes; need at least 16)")
    return key


@dataclass(frozen=True)
class Keyring:
    """Keyed replacements. Pure: no I/O, the same key always gives the same values."""

    key: bytes

    def digest(self, purpose: str, value: str | bytes) -> bytes:
        data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
        # The purpose prefix keeps the pseudonym of a value unrelated to its UID or shift.
        return hmac.new(self.key, purpose.encode() + b"\0" + data, hashlib.sha256).digest()

    @property
    def fingerprint(self) -> str:
        """Identifies the key (to refuse mixing keys in one dataset) without revealing it."""
        return self.digest("fingerprint", b"").hex()[:16]

    def source_hash(self, data: bytes) -> str:
        """Keyed hash of a source file's bytes (HMAC-SHA256, hex): names its outputs and
        its journal and quarantine records. Without the key nobody holding the original
        files can link an output to its source (a plain SHA-256 would let them)."""
        mac = hmac.new(self.key, b"source\0", hashlib.sha256)
        mac.update(data)  # incremental: a large file is not copied
        return mac.hexdigest()

    def pseudonym(self, patient: str) -> str:
        """PatientID replacement, e.g. 'P3F9A0C12B7D1'."""
        return "P" + self.digest("patient", patient).hex()[:12].upper()

    def short_id(self, purpose: str, value: str, prefix: str) -> str:
        """Short pseudonymous id for the manifest (study, series)."""
        return prefix + self.digest(purpose, value).hex()[:12].upper()

    def uid(self, original: str) -> str:
        """A UID in the 2.25 (UUID-derived integer) root, at most 44 characters."""
        number = int.from_bytes(self.digest("uid", original.strip())[:16], "big")
        return f"2.25.{number}"

    def date_shift_days(self, patient: str) -> int:
        """Per-patient offset in days (negative): every date of a patient moves by it, so
        intervals within a patient are kept."""
        number = int.from_bytes(self.digest("dateshift", patient)[:8], "big")
        return -(_MIN_SHIFT_DAYS + number % (_MAX_SHIFT_DAYS - _MIN_SHIFT_DAYS + 1))


def shift_date(value: str, days: int) -> str | None:
    """Shift a DA value ('YYYYMMDD', or the partial 'YYYYMM' / 'YYYY' some devices write).

    Returns None when the value is not a date (the caller then removes it)."""
    text = value.strip()
    try:
        if len(text) == 8 and text.isdigit():
            return (_dt.date(int(text[:4]), int(text[4:6]), int(text[6:])) +
                    _dt.timedelta(days=days)).strftime("%Y%m%d")
        if len(text) == 6 and text.isdigit():
            moved = _dt.date(int(text[:4]), int(text[4:6]), 15) + _dt.timedelta(days=days)
            return moved.strftime("%Y%m")
        if len(text) == 4 and text.isdigit():
            moved = _dt.date(int(text), 7, 1) + _dt.timedelta(days=days)
            return moved.strftime("%Y")
    except (ValueError, OverflowError):
        return None
    return None


def shift_datetime(value: str, days: int) -> str | None:
    """Shift the date part of a DT value; the time of day and UTC offset stay as they are."""
    text = value.strip()
    digits = len(text) - len(text.lstrip("0123456789"))
    date_part = text[:min(8, digits)]
    shifted = shift_date(date_part, days)
    if shifted is None:
        return None
    return shifted + text[len(date_part):]
