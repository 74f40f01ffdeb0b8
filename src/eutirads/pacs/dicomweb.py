"""`eutirads ingest --dicomweb URL`: pull exams from a PACS into a de-identified dataset.

QIDO-RS finds the studies (by modality and date, or the UIDs given), WADO-RS retrieves
their instances (series of the modality only, in their stored transfer syntax) into an
owner-only temporary folder, and the ordinary ingest (`eutirads.dicom.ingest`) takes them
from there; the folder is deleted after each study. All HTTP goes through
`dicomweb-client`, credentials come from the environment (never the command line):

- `EUTIRADS_DICOMWEB_TOKEN`: sent as `Authorization: Bearer ...`; or
- `EUTIRADS_DICOMWEB_USER` and `EUTIRADS_DICOMWEB_PASSWORD`: HTTP basic authentication.

Resumable: a study whose instances were all retrieved and ingested is recorded in
`DATASET/.ingest/dicomweb.json` under a keyed hash of its UID (the UID itself is
identifying and never written), and skipped by the next pull. A study that fails halfway
is reported in one line (by its position, never its UID) and retried next time; what it
delivered is ingested, and the journal makes the retry skip it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Callable, Sequence
from urllib.parse import urlsplit, urlunsplit

from ..errors import ConfigError, EutiradsError, InputError

__all__ = ["PullReport", "pull", "dicomweb_session", "public_url", "parse_since"]

log = logging.getLogger(__name__)

STATE_NAME = "dicomweb.json"
_STUDY_UID, _SERIES_UID, _SOP_UID, _MODALITY = "0020000D", "0020000E", "00080018", "00080060"


@dataclass
class PullReport:
    studies: int = 0
    pulled: int = 0
    skipped: int = 0
    failed: int = 0
    instances: int = 0
    ingest: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.ingest.items()) if v)
        return (f"dicomweb: {self.studies} studies: {self.pulled} pulled ({self.instances} "
                f"instances), {self.skipped} already done, {self.failed} failed"
                + (f"; ingest: {counts}" if counts else ""))


def public_url(url: str) -> str:
    """The URL without any user:password part, fit for a message."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def parse_since(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--since must be a date YYYY-MM-DD, not {text[:20]!r}") from None


def dicomweb_session(env: dict[str, str] | None = None):
    """A requests session carrying the credentials the environment gives."""
    import requests

    env = os.environ if env is None else env
    session = requests.Session()
    token = env.get("EUTIRADS_DICOMWEB_TOKEN")
    user, password = env.get("EUTIRADS_DICOMWEB_USER"), env.get("EUTIRADS_DICOMWEB_PASSWORD")
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    elif user:
        session.auth = (user, password or "")
    return session


def _client(url: str, session=None):
    from dicomweb_client.api import DICOMwebClient

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--dicomweb must be an http(s) URL, not {public_url(url)[:80]!r}")
    if parts.username or parts.password:
        raise ConfigError("--dicomweb: put credentials in EUTIRADS_DICOMWEB_USER/_PASSWORD or "
                          "_TOKEN, not in the URL")
    client = DICOMwebClient(url, session=session or dicomweb_session(), timeout=60)
    # A busy PACS gets three tries, about 1 and 2 seconds apart, then the study is
    # reported and retried on the next pull.
    client.set_http_retry_params(max_attempts=3, wait_exponential_multiplier=500)
    return client


def _value(item: dict, tag: str) -> str:
    values = item.get(tag, {}).get("Value") or [""]
    return str(values[0])


def _why(exc: Exception) -> str:
    """A one-line reason that quotes nothing from the server (its errors can echo UIDs)."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if status == 401 or status == 403:
        return f"access refused (HTTP {status}; check EUTIRADS_DICOMWEB_USER/_PASSWORD/_TOKEN)"
    if status is not None:
        return f"HTTP {status}"
    return type(exc).__name__


class _State:
    """Done studies by keyed hash, in DATASET/.ingest/dicomweb.json."""

    def __init__(self, out: Path, keyring):
        self.file = out / ".ingest" / STATE_NAME
        self.keyring = keyring
        self.done: set[str] = set()
        if self.file.is_file():
            try:
                self.done = set(json.loads(self.file.read_text(encoding="utf-8"))["done"])
            except (OSError, ValueError, KeyError, TypeError):
                raise ConfigError(f"{self.file}: unreadable DICOMweb state") from None

    def key(self, study_uid: str) -> str:
        return self.keyring.digest("dicomweb-study", study_uid).hex()[:32]

    def add(self, study_uid: str) -> None:
        self.done.add(self.key(study_uid))
        self.file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_name(f".{STATE_NAME}.tmp")
        tmp.write_text(json.dumps({"format_version": 1, "done": sorted(self.done)}),
                       encoding="utf-8")
        os.replace(tmp, self.file)


def _search_all(search, *, page: int = 500, **kwargs) -> list[dict]:
    """Every match of a QIDO-RS search, page by page. Stops on a short page, and on a page
    with nothing new: some servers ignore `offset` and would repeat themselves forever."""
    results: list[dict] = []
    seen: set[str] = set()
    offset = 0
    while True:
        batch = search(limit=page, offset=offset, **kwargs)
        fresh = [item for item in batch if json.dumps(item, sort_keys=True) not in seen]
        seen.update(json.dumps(item, sort_keys=True) for item in fresh)
        results.extend(fresh)
        if len(batch) < page or not fresh:
            return results
        offset += len(batch)


def _find_studies(client, modality: str | None, since: date | None) -> list[str]:
    filters: dict[str, str] = {}
    if modality:
        filters["ModalitiesInStudy"] = modality
    if since:
        filters["StudyDate"] = f"{since:%Y%m%d}-"
    found = _search_all(client.search_for_studies, search_filters=filters, fields=[_STUDY_UID])
    return sorted({_value(item, _STUDY_UID) for item in found} - {""})


def _retrieve_study(client, study_uid: str, modality: str | None, folder: Path) -> int:
    """Write the study's instances (of `modality`) into folder; returns how many."""
    from pydicom import dcmwrite

    instances = _search_all(client.search_for_instances, study_instance_uid=study_uid,
                            fields=[_SERIES_UID, _SOP_UID, _MODALITY])
    count = 0
    for item in instances:
        if modality and _value(item, _MODALITY) and _value(item, _MODALITY) != modality:
            continue
        ds = client.retrieve_instance(study_uid, _value(item, _SERIES_UID),
                                      _value(item, _SOP_UID),
                                      media_types=(("application/dicom", "*"),))
        path = folder / f"{uuid.uuid4().hex}.dcm"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            dcmwrite(handle, ds, enforce_file_format=True)
        count += 1
    return count


@contextlib.contextmanager
def _owner_only_temp():
    folder = Path(tempfile.mkdtemp(prefix="eutirads-dicomweb-"))  # mode 0700
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def pull(url: str, out: str | os.PathLike[str], *, key_path: str | os.PathLike[str] | None = None,
         modality: str | None = "US", since: date | None = None,
         studies: Sequence[str] = (), frames: str | int = "all", keep_dicom: bool = False,
         detect_region: bool = False, workers: int | None = None, session=None,
         on_study: Callable[[int], None] | None = None) -> PullReport:
    """Pull studies from the DICOMweb service at `url` into the dataset `out`."""
    from ..dicom import Keyring, default_key_path, ingest, load_or_create_key

    # Their debug lines quote request URLs, and those hold study and instance UIDs.
    for name in ("dicomweb_client", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    out = Path(out)
    key_file = Path(key_path) if key_path is not None else default_key_path()
    client = _client(url, session)
    state = _State(out, Keyring(load_or_create_key(key_file)))
    where = public_url(url)
    try:
        uids = sorted(set(studies)) if studies else _find_studies(client, modality, since)
    except EutiradsError:
        raise
    except Exception as exc:  # connection refused, DNS, TLS, HTTP errors
        raise InputError(f"{where}: cannot search the PACS ({_why(exc)})") from None
    report = PullReport(studies=len(uids))
    for number, uid in enumerate(uids, 1):
        if state.key(uid) in state.done:
            report.skipped += 1
            continue
        with _owner_only_temp() as folder:
            failure = None
            try:
                count = _retrieve_study(client, uid, modality, folder)
                if count == 0:
                    failure = f"no {modality or ''} instances found".replace("  ", " ")
            except Exception as exc:  # one study's failure never stops the pull
                failure = f"retrieval failed ({_why(exc)})"
                count = sum(1 for _ in folder.iterdir())
            if count:
                result = ingest([folder], out, key_path=key_file, frames=frames,
                                keep_dicom=keep_dicom, detect_region=detect_region,
                                workers=workers, progress=False)
                report.instances += count
                report.ingest["ingested"] += result.done
                report.ingest["already done"] += result.skipped
                report.ingest["quarantined"] += sum(result.quarantined.values())
        if failure is None:
            state.add(uid)
            report.pulled += 1
        else:
            report.failed += 1
            message = (f"{where}: study {number} of {len(uids)}: {failure}; "
                       "it is retried on the next pull")
            report.errors.append(message)
            log.warning("%s", message)
        if on_study is not None:
            on_study(number)
    return report
