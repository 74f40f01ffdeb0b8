"""`eutirads listen`: a DICOM Storage SCP feeding the ordinary ingest.

What a scanner sends with C-STORE (Ultrasound, Ultrasound Multi-frame, Secondary Capture,
in every transfer syntax ingest decodes) is written, as received, to an owner-only spool
folder, then ingested by `eutirads.dicom.ingest` exactly like files on disk: de-identified,
journaled, quarantined when bad. A spooled object is deleted as soon as ingest reports its
record journaled, so identified data lives only in the spool and only until then.

Spool layout (`--spool`, default `$EUTIRADS_HOME/listen-spool`, mode 0700):
- `incoming/`: an object being written (fsync'd, then renamed to `ready/`); what is left
  here after a crash was never acknowledged to the sender, who sends it again: deleted;
- `ready/`: received and acknowledged, waiting for the next batch;
- `work/`: the batch being ingested; after a crash it is ingested on the next start (the
  journal makes that idempotent: a finished object is "already done" and just deleted).

Nothing received is ever logged: log lines carry counts, reason codes and AE titles only.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import socket
import ssl
import stat
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..errors import ConfigError, EutiradsError

__all__ = ["ListenOptions", "Listener", "parse_allow", "STORAGE_SOP_CLASSES",
           "TRANSFER_SYNTAXES", "default_spool"]

log = logging.getLogger(__name__)

# The image classes a thyroid exam arrives as (PS3.4 Annex B).
STORAGE_SOP_CLASSES: tuple[str, ...] = (
    "1.2.840.10008.5.1.4.1.1.6.1",    # Ultrasound Image Storage
    "1.2.840.10008.5.1.4.1.1.3.1",    # Ultrasound Multi-frame Image Storage
    "1.2.840.10008.5.1.4.1.1.7",      # Secondary Capture Image Storage
    "1.2.840.10008.5.1.4.1.1.7.2",    # Multi-frame Grayscale Byte Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.4",    # Multi-frame True Color Secondary Capture
)
# Every transfer syntax ingest decodes (12-bit JPEG Extended is beyond the PyPI decoders,
# so it is not offered: a sender then picks another one instead of a file being lost).
TRANSFER_SYNTAXES: tuple[str, ...] = (
    "1.2.840.10008.1.2",          # Implicit VR Little Endian
    "1.2.840.10008.1.2.1",        # Explicit VR Little Endian
    "1.2.840.10008.1.2.1.99",     # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",        # Explicit VR Big Endian
    "1.2.840.10008.1.2.5",        # RLE Lossless
    "1.2.840.10008.1.2.4.50",     # JPEG Baseline (8-bit)
    "1.2.840.10008.1.2.4.57",     # JPEG Lossless
    "1.2.840.10008.1.2.4.70",     # JPEG Lossless, first-order prediction
    "1.2.840.10008.1.2.4.80",     # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",     # JPEG-LS Near-lossless
    "1.2.840.10008.1.2.4.90",     # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",     # JPEG 2000
)
_VERIFICATION = "1.2.840.10008.1.1"
_SUCCESS, _NOT_AUTHORISED, _OUT_OF_RESOURCES = 0x0000, 0x0124, 0xA700


def default_spool() -> Path:
    home = Path(os.environ.get("EUTIRADS_HOME") or Path.home() / ".eutirads")
    return home / "listen-spool"


@dataclass(frozen=True)
class Allowed:
    """One `--allow` entry: a calling AE title, from one address (None: any address)."""

    ae_title: str
    addresses: frozenset[str] | None = None

    def matches(self, ae_title: str, address: str) -> bool:
        return ae_title.strip() == self.ae_title and (self.addresses is None or
                                                       address in self.addresses)


def parse_allow(text: str | Sequence[str]) -> tuple[Allowed, ...]:
    """`AE@HOST,AE2,...` -> entries; HOST (name or address) is resolved once, now."""
    items = [text] if isinstance(text, str) else list(text)
    entries = []
    for item in (part.strip() for chunk in items for part in chunk.split(",")):
        if not item:
            continue
        title, _, host = item.partition("@")
        if not title or len(title) > 16 or not title.isprintable() or "\\" in title:
            raise ConfigError(f"--allow: {item[:40]!r} is not AE@HOST (AE title: 1-16 "
                              "printable characters)")
        addresses = None
        if host and host != "*":
            try:
                addresses = frozenset({str(ipaddress.ip_address(host))})
            except ValueError:
                try:
                    addresses = frozenset(socket.gethostbyname_ex(host)[2])
                except OSError:
                    raise ConfigError(f"--allow: host {host[:60]!r} does not resolve") from None
        entries.append(Allowed(title, addresses))
    return tuple(entries)


@dataclass(frozen=True)
class ListenOptions:
    out: Path
    key_path: Path | None = None
    ae_title: str = "EUTIRADS"
    host: str = "0.0.0.0"
    port: int = 11112
    allow: tuple[Allowed, ...] = ()
    spool: Path = field(default_factory=default_spool)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None   # given: senders must present a certificate it signed
    frames: str | int = "all"
    keep_dicom: bool = False
    detect_region: bool = False
    text_policy: str = "redact"
    batch_seconds: float = 2.0   # received objects are ingested in batches this far apart


def _owner_only_folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = path.stat()
    if info.st_uid != os.geteuid():
        raise ConfigError(f"{path}: the spool folder belongs to another user")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o700)
    return path


def _tls_context(options: ListenOptions) -> ssl.SSLContext | None:
    if options.tls_cert is None:
        if options.tls_key or options.tls_ca:
            raise ConfigError("--tls-key/--tls-ca need --tls-cert")
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(options.tls_cert, options.tls_key)
        if options.tls_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(options.tls_ca)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{options.tls_cert}: unusable TLS certificate or key "
                          f"({type(exc).__name__})") from None
    return context


class Listener:
    """The Storage SCP and its ingest thread. `start()`, then `stop()` (or
    `run_until_signal()`, which does both around SIGTERM/SIGINT)."""

    def __init__(self, options: ListenOptions):
        self.options = options
        out, spool = Path(options.out).resolve(), Path(options.spool).resolve()
        if spool.is_relative_to(out) or out.is_relative_to(spool):
            raise ConfigError(f"{options.spool}: the spool holds identified exams; keep it "
                              "apart from the dataset folder")
        self._spool = _owner_only_folder(spool)
        self._incoming = _owner_only_folder(spool / "incoming")
        self._ready = _owner_only_folder(spool / "ready")
        self._work = _owner_only_folder(spool / "work")
        self._tls = _tls_context(options)
        from ..dicom import Keyring, default_key_path, load_or_create_key

        # Ingest names each source by a keyed hash of its bytes; the same one tells which
        # spooled file a journal record belongs to.
        self._keyring = Keyring(load_or_create_key(options.key_path or default_key_path()))
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._server = None
        self._ae = None
        self._thread: threading.Thread | None = None
        self._ingest_lock = threading.Lock()
        self.received = 0
        self.refused = 0
        self.reports: list = []

    # ---- network ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server is not None else self.options.port

    def start(self) -> int:
        """Recover what a crash left, start ingesting and listening; returns the port."""
        from pynetdicom import AE, evt
        from pynetdicom.transport import ThreadedAssociationServer

        # pynetdicom's debug output can quote received values: keep it to warnings.
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)
        for partial in self._incoming.iterdir():
            partial.unlink(missing_ok=True)  # never acknowledged: the sender resends it
        ae = AE(ae_title=self.options.ae_title)
        ae.maximum_pdu_size = 0
        for sop_class in STORAGE_SOP_CLASSES:
            ae.add_supported_context(sop_class, list(TRANSFER_SYNTAXES))
        ae.add_supported_context(_VERIFICATION)
        if self.options.allow:
            # Unknown calling AE titles are rejected at association (A-ASSOCIATE-RJ).
            ae.require_calling_aet = sorted({a.ae_title for a in self.options.allow})
        hosts = self._allowed_hosts()

        class _Server(ThreadedAssociationServer):
            def verify_request(self, request, client_address) -> bool:
                # Connections from addresses no entry allows are closed before DICOM.
                return hosts is None or client_address[0] in hosts

        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_C_ECHO, self._on_echo),
                    (evt.EVT_REJECTED, self._on_rejected)]
        try:
            self._server = ae.make_server((self.options.host, self.options.port),
                                          ssl_context=self._tls, evt_handlers=handlers,
                                          server_class=_Server)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {self.options.host}:{self.options.port} "
                              f"({exc.strerror or type(exc).__name__})") from None
        self._ae = ae
        ae._servers.append(self._server)  # where pynetdicom's own start_server keeps it
        threading.Thread(target=self._server.serve_forever, name="listen-accept",
                         daemon=True).start()
        self._thread = threading.Thread(target=self._ingest_loop, name="listen-ingest",
                                        daemon=True)
        self._thread.start()
        self._wake.set()  # ingest what a crash left in ready/ and work/ right away
        return self.port

    def _allowed_hosts(self) -> frozenset[str] | None:
        if not self.options.allow or any(a.addresses is None for a in self.options.allow):
            return None
        hosts = set()
        for entry in self.options.allow:
            hosts |= entry.addresses or set()
        return frozenset(hosts)

    def _authorised(self, assoc) -> bool:
        if not self.options.allow:
            return True
        return any(a.matches(assoc.requestor.ae_title, assoc.requestor.address)
                   for a in self.options.allow)

    def _on_rejected(self, event) -> None:
        self.refused += 1
        log.warning("listen: association from AE %r refused (calling AE title not allowed)",
                    event.assoc.requestor.ae_title)

    def _on_echo(self, event) -> int:
        return _SUCCESS if self._authorised(event.assoc) else _NOT_AUTHORISED

    def _on_store(self, event) -> int:
        if not self._authorised(event.assoc):
            # An allowed AE title calling from another address.
            self.refused += 1
            log.warning("listen: C-STORE from AE %r refused (not allowed from that address)",
                        event.assoc.requestor.ae_title)
            return _NOT_AUTHORISED
        name = f"{uuid.uuid4().hex}.dcm"
        partial = self._incoming / name
        try:
            data = event.encoded_dataset(include_meta=True)
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, self._ready / name)
        except Exception as exc:  # never acknowledge what is not safely on disk
            partial.unlink(missing_ok=True)
            log.error("listen: cannot spool a received object (%s)", type(exc).__name__)
            return _OUT_OF_RESOURCES
        self.received += 1
        self._wake.set()
        return _SUCCESS

    # ---- ingest -------------------------------------------------------------------------

    def _ingest_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(timeout=self.options.batch_seconds)
            if self._stopping.is_set():
                break
            # Let a burst of objects land before the batch starts.
            time.sleep(min(0.5, self.options.batch_seconds))
            self._wake.clear()
            try:
                self.ingest_pending()
            except Exception as exc:  # never let the ingest thread die: the spool keeps the files
                log.error("listen: ingest failed (%s); retrying with the next batch",
                          type(exc).__name__)

    def ingest_pending(self):
        """Ingest everything spooled so far; returns the IngestReport (None when idle)."""
        from ..dicom import ingest

        with self._ingest_lock:
            for ready in sorted(self._ready.iterdir()):
                os.replace(ready, self._work / ready.name)
            files = sorted(p for p in self._work.iterdir() if p.is_file())
            if not files:
                return None
            by_hash: dict[str, list[Path]] = {}
            for path in files:
                by_hash.setdefault(self._keyring.source_hash(path.read_bytes()), []).append(path)

            def journaled(result) -> None:
                # Called once the source's record is in the journal: the identified copy
                # has served its purpose.
                for path in by_hash.pop(result.key_hash, []):
                    path.unlink(missing_ok=True)

            try:
                report = ingest([self._work], self.options.out, key_path=self.options.key_path,
                                frames=self.options.frames, keep_dicom=self.options.keep_dicom,
                                detect_region=self.options.detect_region,
                                text_policy=self.options.text_policy, workers=1,
                                progress=False, on_result=journaled)
            except EutiradsError as exc:
                # e.g. another ingest holds the dataset: keep the files, retry next batch.
                log.error("listen: ingest deferred: %s", str(exc).splitlines()[0])
                return None
            self.reports.append(report)
            log.info("listen: %s", report.summary())
            return report

    # ---- stopping -----------------------------------------------------------------------

    def stop(self, timeout: float = 60.0) -> None:
        """Refuse new associations, let the open ones finish, ingest everything received,
        write the manifest; nothing acknowledged is lost."""
        if self._server is not None:
            self._server.shutdown()
            deadline = time.monotonic() + timeout
            while self._ae.active_associations and time.monotonic() < deadline:
                time.sleep(0.1)
            self._server = None
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.ingest_pending()

    def run_until_signal(self) -> None:
        """Serve until SIGTERM or SIGINT, then stop gracefully."""
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set())
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            while not stop.wait(1.0):
                pass
            log.info("listen: stopping: finishing what was received")
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
