"""`eutirads listen`: receive exams from scanners (DICOM C-STORE) into a dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from .ingest import add_pixel_options


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "listen", help="DICOM Storage SCP: scanners send exams, they are ingested",
        description="Accept Ultrasound, Ultrasound Multi-frame and Secondary Capture images "
                    "by C-STORE (and C-ECHO), spool them owner-only, and ingest them like "
                    "`eutirads ingest` (de-identified, resumable, quarantine). The spool copy "
                    "is deleted once ingested. SIGTERM or Ctrl+C: stop accepting, ingest "
                    "what was received, write the manifest, exit.")
    parser.add_argument("--out", required=True, metavar="DATASET", help="dataset folder")
    parser.add_argument("--key", metavar="KEYFILE",
                        help="de-identification key (as for ingest; default "
                             "$EUTIRADS_HOME/deid.key)")
    parser.add_argument("--port", type=int, default=11112, help="TCP port (default 11112)")
    parser.add_argument("--host", default="0.0.0.0",
                        help="address to listen on (default all; 127.0.0.1 for local only)")
    parser.add_argument("--ae-title", default="EUTIRADS", help="our AE title (default EUTIRADS)")
    parser.add_argument("--allow", action="append", default=[], metavar="AE@HOST,...",
                        help="accept only these calling AE titles (each from HOST, a name or "
                             "address; `AE` alone or `AE@*`: from anywhere); repeatable")
    parser.add_argument("--spool", metavar="DIR",
                        help="owner-only folder for objects waiting to be ingested (default "
                             "$EUTIRADS_HOME/listen-spool; never inside the dataset)")
    parser.add_argument("--tls-cert", metavar="PEM", help="serve DICOM over TLS with this certificate")
    parser.add_argument("--tls-key", metavar="PEM", help="its private key (if not in --tls-cert)")
    parser.add_argument("--tls-ca", metavar="PEM",
                        help="require senders to present a certificate signed by this CA")
    add_pixel_options(parser)  # --frames, --keep-dicom, --detect-region, --text-policy
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..dicom import parse_frames
    from ..pacs.listener import Listener, ListenOptions, default_spool, parse_allow

    path = lambda value: Path(value) if value else None  # noqa: E731
    options = ListenOptions(
        out=Path(args.out), key_path=path(args.key), ae_title=args.ae_title, host=args.host,
        port=args.port, allow=parse_allow(args.allow), spool=path(args.spool) or default_spool(),
        tls_cert=path(args.tls_cert), tls_key=path(args.tls_key), tls_ca=path(args.tls_ca),
        frames=parse_frames(args.frames), keep_dicom=args.keep_dicom,
        detect_region=args.detect_region, text_policy=args.text_policy)
    listener = Listener(options)
    print(f"eutirads listen: AE {options.ae_title} on {options.host}:{options.port} -> "
          f"{options.out} (SIGTERM or Ctrl+C to stop)", flush=True)
    listener.run_until_signal()
    print(f"eutirads listen: stopped; {listener.received} objects received, "
          f"{listener.refused} refused; manifest: {Path(args.out) / 'manifest.csv'}")
    return 0
