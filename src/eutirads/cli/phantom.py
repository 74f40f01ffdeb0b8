"""`eutirads phantom OUT --n N --seed S`: synthetic thyroid ultrasound with known labels."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "phantom", help="generate synthetic thyroid ultrasound (PNG dataset or DICOM exams)",
        description="Generate procedural thyroid B-mode ultrasound screens with known "
                    "EU-TIRADS labels: PNGs in class folders 1/..5/ plus manifest.csv, or "
                    "(--dicom) ultrasound DICOM files with invented identities.")
    parser.add_argument("out", type=Path, metavar="OUT", help="new (or empty) output folder")
    parser.add_argument("--n", type=int, default=200,
                        help="number of images (with --dicom: DICOM files) (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--width", type=int, default=560, help="screen width (default 560)")
    parser.add_argument("--height", type=int, default=360, help="screen height (default 360)")
    parser.add_argument("--balance", choices=("equal", "natural"), default="equal",
                        help="class balance: equal per class, or natural prevalence")
    parser.add_argument("--per-patient", type=int, default=1, metavar="K",
                        help="images per patient (same nodule, other view/gain) (default 1; "
                             "with --dicom the exam structure decides)")
    parser.add_argument("--dicom", action="store_true",
                        help="write ultrasound DICOM files (several patients, studies, "
                             "series, cine loops) instead of PNGs")
    parser.add_argument("--name-in-area", action="store_true",
                        help="with --dicom: also burn the patient's name inside the "
                             "ultrasound image area (for testing the burned-in text check)")
    parser.add_argument("--contact-sheet", type=Path, metavar="FILE.png",
                        help="also write a grid of samples with their labels")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes to render with (default: the available cores)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..data.manifest import read_manifest
    from ..errors import InputError
    from ..phantom import contact_sheet, generate_dataset

    if args.contact_sheet is not None and args.contact_sheet.suffix.lower() != ".png":
        raise InputError(f"{args.contact_sheet}: the contact sheet must be a .png file")
    common = dict(n=args.n, seed=args.seed, width=args.width, height=args.height,
                  balance=args.balance, images_per_patient=args.per_patient,
                  progress=not args.quiet, workers=args.workers)
    if args.dicom:
        from ..phantom.dicom import generate_dicom

        report = generate_dicom(args.out, **common, name_in_area=args.name_in_area)
        if args.contact_sheet is not None:
            contact_sheet(args.out, args.contact_sheet)
        print(f"phantom: wrote {report.files} DICOM files ({report.frames} frames) for "
              f"{report.patients} patients, {report.studies} studies, {report.series} series "
              f"to {args.out}; identities in {report.identities.name}")
        return 0
    manifest = generate_dataset(args.out, **common)
    counts = Counter(row["label"] for row in read_manifest(manifest))
    if args.contact_sheet is not None:
        contact_sheet(args.out, args.contact_sheet)
    per_class = ", ".join(f"{label}: {counts[label]}" for label in sorted(counts))
    print(f"phantom: wrote {sum(counts.values())} images ({per_class}) and {manifest}"
          + (f"; contact sheet {args.contact_sheet}" if args.contact_sheet else ""),
          file=sys.stdout)
    return 0
