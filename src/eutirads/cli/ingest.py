"""`eutirads ingest`: DICOM exams (and JPEG/PNG screenshots) into a de-identified dataset,
or, with --which, a lookup of source files in a dataset already made."""

from __future__ import annotations

import argparse

from ..errors import InputError


def add_pixel_options(parser: argparse.ArgumentParser) -> None:
    """The options of what ingest keeps of each file's pixels, shared by `ingest` and
    `listen` (one ingest pipeline, one set of options)."""
    parser.add_argument("--frames", default="all", metavar="all|first|N",
                        help="frames of a cine to keep: all, the first, or every Nth")
    parser.add_argument("--keep-dicom", action="store_true",
                        help="also write the de-identified DICOM (DATASET/dicom/)")
    parser.add_argument("--detect-region", action="store_true",
                        help="find the image area from the pixels when a file has no usable "
                             "ultrasound region (otherwise it is quarantined)")
    parser.add_argument("--text-policy", default="redact", choices=("redact", "quarantine", "off"),
                        help="burned-in text inside the image area: redact (blank each text "
                             "box, default), quarantine (hold the source back) or off (no "
                             "check; the output is then not declared free of burned-in text)")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ingest", help="de-identify DICOM exams into a dataset (PNG frames + manifest)",
        description="Read DICOM files, folders (recursive) and zip archives; de-identify the "
                    "tags (PS3.15 Annex E basic profile with Clean Pixel Data, Retain "
                    "Longitudinal Modified Dates and Clean Descriptors); blank and crop to the "
                    "ultrasound regions and redact burned-in text inside them; write one PNG "
                    "per kept frame and manifest rows. Resumable: a rerun skips what is done. "
                    "Bad files go to quarantine.csv. With --which FILE..., look files up in "
                    "the dataset instead (which output or quarantine record is theirs).")
    parser.add_argument("sources", nargs="*", metavar="SRC",
                        help="DICOM/JPEG/PNG file, folder or zip archive")
    parser.add_argument("--out", required=True, metavar="DATASET", help="dataset folder")
    parser.add_argument("--key", metavar="KEYFILE",
                        help="secret key file for pseudonyms, UIDs, date shifts and source "
                             "hashes (created on first use, mode 0600; default "
                             "$EUTIRADS_HOME/deid.key); keep it outside the dataset and "
                             "reuse it for later exams")
    parser.add_argument("--which", nargs="+", metavar="FILE",
                        help="look these files (or folders, zips) up in DATASET instead of "
                             "ingesting: prints each one's keyed hash, status and outputs")
    add_pixel_options(parser)
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes (default: all cores)")
    parser.add_argument("--max-mb", type=int, default=1024,
                        help="largest decoded image per file, in MiB (default 1024)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    from . import _dicomweb

    _dicomweb.add_arguments(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..dicom import ingest, parse_frames

    if args.dicomweb:
        from . import _dicomweb

        return _dicomweb.run(args)
    if args.which:
        if args.sources:
            raise InputError("give either sources to ingest or --which FILE..., not both")
        return _which(args)
    if not args.sources:
        raise InputError("nothing to ingest: give at least one SRC (or --which FILE..., or --dicomweb URL)")
    report = ingest(args.sources, args.out, key_path=args.key,
                    frames=parse_frames(args.frames), keep_dicom=args.keep_dicom,
                    detect_region=args.detect_region, text_policy=args.text_policy,
                    workers=args.workers, max_decoded_bytes=args.max_mb << 20,
                    progress=not args.no_progress)
    print(report.summary())
    print(f"manifest: {report.manifest}")
    if sum(report.quarantined.values()):
        print(f"quarantine list: {report.quarantine}")
    return 0


def _which(args: argparse.Namespace) -> int:
    from ..dicom import which

    for found in which(args.which, args.out, key_path=args.key,
                       max_decoded_bytes=args.max_mb << 20):
        # The user's own paths, printed back to the user who typed them: that is the point.
        name = found.source.path + (f"!{found.source.member}" if found.source.member else "")
        detail = f" {found.reason_code}: {found.reason}" if found.reason_code else ""
        outputs = f" -> {', '.join(found.paths)}" if found.paths else ""
        print(f"{name}\t{found.key_hash[:16] or '-'}\t{found.status}{detail}{outputs}")
    return 0
