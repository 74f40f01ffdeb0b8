"""`eutirads ingest --dicomweb URL`: the options and run of the PACS form of ingest
(kept apart from cli/ingest.py, which only hands over to it)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "pull from a PACS (instead of SRC)",
        "QIDO-RS search and WADO-RS retrieval; credentials from EUTIRADS_DICOMWEB_TOKEN, or "
        "EUTIRADS_DICOMWEB_USER and EUTIRADS_DICOMWEB_PASSWORD. Resumable per study.")
    group.add_argument("--dicomweb", metavar="URL",
                       help="DICOMweb root of the PACS, e.g. https://pacs.example.org/dicom-web")
    group.add_argument("--modality", default="US",
                       help="studies holding this modality, and only its series (default US)")
    group.add_argument("--since", metavar="YYYY-MM-DD", help="studies from this date on")
    group.add_argument("--study", action="append", default=[], metavar="UID",
                       help="pull these studies only (repeatable)")


def run(args: argparse.Namespace) -> int:
    from ..dicom import parse_frames
    from ..errors import ConfigError
    from ..pacs.dicomweb import parse_since, pull

    if args.sources:
        raise ConfigError("ingest: give SRC or --dicomweb URL, not both")
    report = pull(args.dicomweb, args.out, key_path=args.key, modality=args.modality or None,
                  since=parse_since(args.since), studies=args.study,
                  frames=parse_frames(args.frames), keep_dicom=args.keep_dicom,
                  detect_region=args.detect_region, workers=args.workers)
    print(report.summary())
    return 1 if report.failed else 0
