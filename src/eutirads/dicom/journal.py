"""The batch's memory: one journal line per source (so a rerun skips what is done), the
state file that pins the key and the options, and the lock that keeps one ingest at a
time per dataset."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict
from pathlib import Path

from ..errors import ConfigError
from .keys import Keyring
from .records import FileResult, IngestOptions

__all__ = ["STATE_FORMAT", "state_of", "check_state", "read_journal", "append", "exclusive"]

# 2: keyed source hashes (source_key_hash) instead of plain SHA-256, text policy.
STATE_FORMAT = 2
_PINNED = ("frames", "keep_dicom", "detect_region", "text_policy")


def state_of(keyring: Keyring, options: IngestOptions) -> dict:
    return {"format_version": STATE_FORMAT, "key_fingerprint": keyring.fingerprint,
            "frames": options.frames, "keep_dicom": options.keep_dicom,
            "detect_region": options.detect_region, "text_policy": options.text_policy}


def check_state(state_dir: Path, state: dict) -> None:
    """A dataset is built with one key and one set of options: refuse to mix."""
    file = state_dir / "state.json"
    if file.is_file():
        try:
            old = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise ConfigError(f"{file}: unreadable ingest state") from None
        if old.get("format_version") != STATE_FORMAT:
            raise ConfigError(f"{file}: this dataset was made by an older ingest (plain "
                              "source hashes); ingest into a new --out folder")
        if old.get("key_fingerprint") != state["key_fingerprint"]:
            raise ConfigError(f"{file}: this dataset was ingested with another key; use the "
                              "same --key, or a new --out folder")
        changed = [k for k in _PINNED if old.get(k) != state[k]]
        if changed:
            raise ConfigError(f"{file}: this dataset was ingested with other options "
                              f"({', '.join(changed)}); use the same options or a new --out")
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(".state.json.tmp")
    tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
    os.replace(tmp, file)


def read_journal(file: Path, *, repair: bool = True) -> dict[str, FileResult]:
    """The last record per source key hash. A line cut short by a kill is dropped (and,
    with `repair`, cut off the file, so the next record starts on a fresh line)."""
    records: dict[str, FileResult] = {}
    if not file.is_file():
        return records
    data = file.read_bytes()
    if data and not data.endswith(b"\n"):
        data = data[:data.rfind(b"\n") + 1]
        if repair:
            with open(file, "r+b") as handle:
                handle.truncate(len(data))
    for line in data.decode("utf-8", "replace").splitlines():
        try:
            record = FileResult(**json.loads(line))
        except (ValueError, TypeError):
            continue
        records[record.key_hash] = record
    return records


def append(log, result: FileResult) -> None:
    log.write(json.dumps(asdict(result), separators=(",", ":")) + "\n")
    log.flush()


@contextlib.contextmanager
def exclusive(state_dir: Path):
    """One ingest at a time per dataset: two would interleave their journal lines."""
    import fcntl

    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / "lock", "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"{state_dir.parent}: another ingest is writing to this "
                              "dataset; wait for it to finish") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
