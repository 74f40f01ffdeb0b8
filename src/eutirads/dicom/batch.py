"""Batch ingest: DICOM exams (and plain JPEG/PNG screenshots) into a de-identified dataset.

`ingest` runs the per-file pipeline (`pipeline.ingest_file`) over files, folders and zip
archives (`sources`) on all cores (`pool`) and keeps the batch resumable:

- each source's outputs are written together or not at all (`writing.Staging`), under
  names made only of the keyed patient pseudonym, the source's keyed hash (HMAC-SHA256
  under the de-identification key) and the frame index;
- after each source, one line goes to `DATASET/.ingest/journal.jsonl` (`journal`); a
  rerun skips every source already done, so killing the batch and running it again gives
  the same dataset, with no duplicate and no gap;
- `manifest.csv` and `quarantine.csv` are assembled from the journal (`assembly`).

`which` looks sources up in a dataset instead of ingesting them: the quarantine list
names sources by keyed hash only, and whoever holds the key and the files finds them.

No identifying value (DICOM value or source file name) reaches a file name, a log line, an
error message or the manifest: quarantine reasons name only what was wrong.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

from ..errors import ConfigError, InputError
from . import pipeline
from .assembly import assemble
from .journal import append, check_state, exclusive, read_journal, state_of
from .keys import Keyring, default_key_path, load_or_create_key
from .pipeline import Context, ingest_file
from .pool import preload, run_pool
from .reading import DEFAULT_MAX_DECODED_BYTES
from .records import (EXTRA_COLUMNS, QUARANTINE_NAME, STATE_DIR, FileResult, IngestOptions,
                      Quarantine, parse_frames, parse_text_policy)
from .sources import SourceRef, collect_sources, read_source
from .writing import sweep_temporary

__all__ = ["IngestOptions", "SourceRef", "FileResult", "IngestReport", "ingest",
           "ingest_file", "collect_sources", "parse_frames", "parse_text_policy", "which",
           "SourceLookup", "EXTRA_COLUMNS", "QUARANTINE_NAME", "STATE_DIR"]


@dataclass
class IngestReport:
    files: int = 0
    done: int = 0
    skipped: int = 0
    duplicates: int = 0
    ignored: int = 0
    frames: int = 0
    text_boxes_redacted: int = 0
    quarantined: Counter = field(default_factory=Counter)
    manifest: Path | None = None
    quarantine: Path | None = None

    def summary(self) -> str:
        why = ", ".join(f"{code} {n}" for code, n in sorted(self.quarantined.items()))
        total_q = sum(self.quarantined.values())
        return (f"ingest: {self.files} files: {self.done} ingested ({self.frames} frames, "
                f"{self.text_boxes_redacted} burned-in text boxes redacted), "
                f"{self.skipped} already done, {self.duplicates} duplicates, "
                f"{total_q} quarantined" + (f" ({why})" if why else "") +
                f", {self.ignored} non-image files ignored")


def _keyring(out: Path, key_path: str | os.PathLike[str] | None, *, create: bool) -> Keyring:
    key_file = Path(key_path) if key_path is not None else default_key_path()
    if key_file.resolve().is_relative_to(out.resolve()):
        raise ConfigError(f"{key_file}: the key must not live inside the dataset folder")
    if not create and not key_file.is_file():
        raise ConfigError(f"{key_file}: key file not found")
    return Keyring(load_or_create_key(key_file))


def ingest(sources: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], *,
           key_path: str | os.PathLike[str] | None = None, frames: str | int = "all",
           keep_dicom: bool = False, detect_region: bool = False,
           text_policy: str = "redact",
           max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES, workers: int | None = None,
           progress: bool = True,
           on_result: Callable[[FileResult], None] | None = None) -> IngestReport:
    """Ingest `sources` into the dataset folder `out` (created, or resumed); see the module
    docstring. `text_policy` is redact (default), quarantine or off. `on_result` is
    called after each source's record is safely in the journal."""
    out = Path(out)
    keyring = _keyring(out, key_path, create=True)
    options = IngestOptions(parse_frames(frames), keep_dicom, detect_region, max_decoded_bytes,
                            parse_text_policy(text_policy))
    with exclusive(out / STATE_DIR):
        return _run_batch(sources, out, keyring, options, workers=workers, progress=progress,
                          on_result=on_result)


def _unhashed_quarantine(ref: SourceRef, ctx: Context, code: str, reason: str) -> FileResult:
    try:
        key_hash = ctx.keyring.source_hash(read_source(ref, ctx.options.max_file_bytes))
    except Quarantine:
        key_hash = ""
    return FileResult(key_hash, "quarantined", code, reason)


def _run_batch(sources: Sequence[str | os.PathLike[str]], out: Path, keyring: Keyring,
               options: IngestOptions, *, workers: int | None, progress: bool,
               on_result: Callable[[FileResult], None] | None) -> IngestReport:
    from tqdm import tqdm

    state_dir = out / STATE_DIR
    check_state(state_dir, state_of(keyring, options))
    sweep_temporary(out)  # what a killed run was writing when it died
    journal_file = state_dir / "journal.jsonl"
    journal = read_journal(journal_file)
    refs, ignored = collect_sources(sources, exclude=out)
    done = frozenset(key for key, r in journal.items() if r.status == "done")
    ctx = Context(keyring, options, out, done)
    report = IngestReport(files=len(refs), ignored=ignored)
    seen: set[str] = set()

    def record(result: FileResult, log) -> None:
        if result.status == "skipped":
            report.skipped += 1
        elif result.key_hash and result.key_hash in seen:
            report.duplicates += 1  # the same bytes under another name: ingested once
        else:
            seen.add(result.key_hash)
            append(log, result)
            journal[result.key_hash] = result
            if result.status == "done":
                report.done += 1
                report.frames += len(result.rows)
                report.text_boxes_redacted += sum(int(r.get("text_boxes_redacted") or 0)
                                                  for r in result.rows)
            else:
                report.quarantined[result.reason_code] += 1
        if on_result is not None:
            on_result(result)

    workers = max(1, min(workers or os.cpu_count() or 1, len(refs) or 1))
    if workers > 1:
        preload()
    try:
        with open(journal_file, "a", encoding="utf-8") as log, \
                tqdm(total=len(refs), unit="file", desc="ingest", file=sys.stderr,
                     disable=not progress) as bar:
            if workers == 1:
                for ref in refs:
                    record(pipeline.ingest_file(ref, ctx), log)
                    bar.update()
            else:
                crashed = run_pool(refs, ctx, workers, lambda r: (record(r, log), bar.update()))
                # A decoder that kills its process takes the pool down; retry those files
                # one per process, so only the guilty one is quarantined.
                for ref in crashed:
                    again = run_pool([ref], ctx, 1, lambda r: record(r, log))
                    if again:
                        record(_unhashed_quarantine(ref, ctx, "crashed",
                                                    "the decoder crashed on this file"), log)
                    bar.update()
    finally:
        report.manifest, report.quarantine = assemble(out, journal)
    return report


@dataclass(frozen=True)
class SourceLookup:
    """What a dataset knows of one source file: its keyed hash, status ("done",
    "quarantined" or "not in this dataset"), reason and output paths."""

    source: SourceRef
    key_hash: str
    status: str
    reason_code: str = ""
    reason: str = ""
    paths: tuple[str, ...] = ()


def which(sources: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], *,
          key_path: str | os.PathLike[str] | None = None,
          max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES) -> Iterator[SourceLookup]:
    """Look `sources` (files, folders, zips) up in the dataset `out` without ingesting:
    the keyed hash of each file's bytes, under the dataset's own key, against its
    journal. Reads nothing but the sources and the journal; writes nothing."""
    out = Path(out)
    keyring = _keyring(out, key_path, create=False)
    state = out / STATE_DIR / "state.json"
    if not state.is_file():
        raise InputError(f"{out}: not an ingested dataset (no {STATE_DIR}/state.json)")
    import json

    try:
        fingerprint = json.loads(state.read_text(encoding="utf-8")).get("key_fingerprint")
    except (OSError, ValueError):
        raise ConfigError(f"{state}: unreadable ingest state") from None
    if fingerprint != keyring.fingerprint:
        raise ConfigError(f"{state}: this dataset was ingested with another key; give its "
                          "--key")
    journal = read_journal(out / STATE_DIR / "journal.jsonl", repair=False)
    refs, _ignored = collect_sources(sources, exclude=out)
    limit = IngestOptions(max_decoded_bytes=max_decoded_bytes).max_file_bytes
    for ref in refs:
        try:
            key_hash = keyring.source_hash(read_source(ref, limit))
        except Quarantine as q:
            yield SourceLookup(ref, "", "unreadable", q.code, q.reason)
            continue
        record = journal.get(key_hash)
        if record is None:
            yield SourceLookup(ref, key_hash, "not in this dataset")
        else:
            yield SourceLookup(ref, key_hash, record.status, record.reason_code, record.reason,
                               tuple(row["path"] for row in record.rows))
