"""`eutirads predict BUNDLE IMAGE...`: classify images with a bundle (onnxruntime only)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import EutiradsError, InputError, NoImageAreaError


def _box(text: str) -> tuple[int, int, int, int]:
    try:
        x0, y0, x1, y1 = (int(round(float(v))) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X0,Y0,X1,Y1 in pixels, got {text!r}") from None
    if x1 <= x0 or y1 <= y0:
        raise argparse.ArgumentTypeError(f"empty box {text!r} (need x1 > x0 and y1 > y0)")
    return x0, y0, x1, y1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict", help="classify images (and find the nodule) with an exported bundle",
        description="Print, per image, the predicted category, its name and every class's "
                    "probability; with a localiser in the bundle, the nodule found (box, score, "
                    "regions with their axes and contour; 'nodule': null and a reason when none "
                    "is, still a result), and without --box the classifier then reads the "
                    "localiser's box. Runs on onnxruntime alone (no torch). A bad image gets a "
                    "one-line error and the others are still predicted; the exit code is 1 "
                    "when any image failed.")
    parser.add_argument("bundle", help="bundle folder written by 'eutirads export'")
    parser.add_argument("images", nargs="+", metavar="IMAGE",
                        help="PNG/JPEG image file(s), or ultrasound DICOM files (first frame, "
                             "blanked outside its ultrasound regions)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--heatmap", metavar="DIR",
                        help="write a heatmap overlay PNG per image into DIR "
                             "(named by the image's position: heatmap_0001.png, ...)")
    parser.add_argument("--opacity", type=float, default=0.5,
                        help="heatmap overlay opacity in [0, 1] (default 0.5)")
    parser.add_argument("--box", type=_box, metavar="X0,Y0,X1,Y1",
                        help="nodule box in pixels, used for every image given (else, with a "
                             "localiser in the bundle, the box it finds)")
    parser.add_argument("--masks", metavar="DIR",
                        help="with a localiser: write each image's nodule mask into DIR "
                             "(mask_0001.png, ... by position; 0/255 at the image's size)")
    parser.add_argument("--pixel-mm", type=_pixel_mm, metavar="MM[,MM]",
                        help="pixel size in mm (one number, or x,y) for the nodule's axes in "
                             "mm; a DICOM file's own ultrasound region spacing wins")
    parser.add_argument("--dicom-out", metavar="DIR",
                        help="write a DICOM SR (TID 1500) per DICOM exam, and a DICOM SEG when "
                             "the bundle localises the nodule, into DIR (sr_0001.dcm, "
                             "seg_0001.dcm, ...); they carry the exam's patient and study identity")
    parser.add_argument("--stow", metavar="URL",
                        help="send the SR (and SEG) to this PACS by STOW-RS (DICOMweb root; "
                             "credentials as for `ingest --dicomweb`)")
    parser.set_defaults(func=_run)


def _abstained():
    from ..inference.predictor import Prediction

    return Prediction(label=None, name=None, probabilities={}, crop_box=(0, 0, 0, 0),
                      abstain=True, abstain_reason="no-ultrasound-area")


def _dicom_results(predictor, image, result, args, index: int, entry: dict) -> None:
    """The SR/SEG of one exam, written and/or sent (eutirads.pacs.results)."""
    from ..pacs.results import results_for_exam

    done = results_for_exam(predictor, image, prediction=result, dicom_out=args.dicom_out,
                            stow=args.stow, index=index)
    entry["dicom_results"] = [str(p) for p in done["written"]]
    entry["stowed"] = done["sent"]
    if done.get("note"):
        entry["dicom_note"] = done["note"]


def _pixel_mm(text: str) -> tuple[float, float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MM or X_MM,Y_MM, got {text!r}") from None
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or not all(0 < v < 10 for v in values):
        raise argparse.ArgumentTypeError(f"pixel size {text!r} must be one or two numbers "
                                         "in (0, 10) mm")
    return values[0], values[1]


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..imageio import save_png
    from ..inference import Predictor, overlay_heatmap
    from ..inference.images import load_image_and_spacing

    if not 0.0 <= args.opacity <= 1.0:
        raise InputError(f"--opacity must be in [0, 1], got {args.opacity}")
    predictor = Predictor(args.bundle)
    heat_dir = Path(args.heatmap) if args.heatmap else None
    if heat_dir is not None and not predictor.has_classifier:
        raise InputError(f"{args.bundle}: --heatmap needs a classifier; this bundle holds a "
                         "localiser only")
    if heat_dir is not None:
        heat_dir.mkdir(parents=True, exist_ok=True)
    mask_dir = Path(args.masks) if args.masks else None
    if mask_dir is not None and not predictor.has_localiser:
        raise InputError(f"{args.bundle}: --masks needs a localiser; this bundle holds none "
                         "(export one with 'eutirads export RUN --localiser LOCALISER_RUN')")
    if mask_dir is not None:
        mask_dir.mkdir(parents=True, exist_ok=True)
    results, failed = [], 0
    for index, image in enumerate(tqdm(args.images, desc="predict", unit="img", file=sys.stderr,
                                       disable=len(args.images) < 2, leave=False), start=1):
        try:
            pixels, spacing = load_image_and_spacing(image)
            result = predictor.predict(pixels, box=args.box, heatmap=heat_dir is not None,
                                       pixel_mm=spacing or args.pixel_mm)
            entry = {"index": index, "image": image, **result.to_dict()}
            if mask_dir is not None:
                # By position, never by input name (it may identify a patient).
                target = mask_dir / f"mask_{index:04d}.png"
                save_png(result.mask, target)
                entry["mask"] = str(target)
            if heat_dir is not None:
                # Our own name, never one derived from the input file (it may identify a patient).
                target = heat_dir / f"heatmap_{index:04d}.png"
                save_png(overlay_heatmap(pixels, result.heatmap, args.opacity), target)
                entry["heatmap"] = str(target)
            if args.dicom_out or args.stow:
                _dicom_results(predictor, image, result, args, index, entry)
        except NoImageAreaError as exc:
            # No ultrasound area (a screen of text, a blank frame): an abstention, not an
            # error; nothing is shown or advised for it.
            tqdm.write(f"eutirads: abstained: {exc}", file=sys.stderr)
            entry = {"index": index, "image": image, "label": None, "abstain": True,
                     "abstain_reason": "no-ultrasound-area"}
            if args.dicom_out or args.stow:  # the SR records the abstention
                try:
                    _dicom_results(predictor, image, _abstained(), args, index, entry)
                except EutiradsError as err:
                    failed += 1
                    tqdm.write(f"eutirads: error: {err}", file=sys.stderr)
                    entry = {"index": index, "image": image, "error": str(err)}
        except EutiradsError as exc:
            failed += 1
            tqdm.write(f"eutirads: error: {exc}", file=sys.stderr)
            entry = {"index": index, "image": image, "error": str(exc)}
        results.append(entry)
        if not args.json and "error" not in entry:
            # tqdm.write keeps the line clear of the progress bar on a terminal.
            tqdm.write(f"{image}: {_line(entry)}", file=sys.stdout)
    if args.json:
        meta = predictor.metadata
        print(json.dumps({"bundle": {"name": meta.get("name"), "version": meta.get("version"),
                                     "class_names": predictor.class_names,
                                     "components": sorted(meta.get("components") or {})},
                          "predictions": results}, indent=2))
    print(f"predicted {len(results) - failed} of {len(results)} image(s)"
          + (f"; {failed} failed" if failed else ""), file=sys.stderr)
    return 1 if failed else 0


def _line(entry: dict) -> str:
    """One image's result for people. An abstention is a result (exit 0), shown as such,
    never as a category to act on."""
    parts = []
    if entry.get("abstain") and entry.get("label") is None:
        parts.append(f"abstained ({entry['abstain_reason']})")
    elif entry.get("label") is not None:
        probs = "  ".join(f"{k}:{v:.3f}" for k, v in entry["probabilities"].items())
        said = (f"ABSTAIN ({entry['abstain_reason']}; model's guess {entry['label']})"
                if entry.get("abstain") else f"{entry['label']} ({entry['name']})")
        parts.append(f"{said} p={entry['confidence']:.3f}  [{probs}]")
    if "nodule" in entry:
        nodule = entry["nodule"]
        if nodule is None:
            parts.append(f"no nodule found ({entry.get('nodule_reason')})")
        else:
            first = nodule["regions"][0]
            size = (f", long axis {first['long_axis_mm']:.1f} mm" if first["long_axis_mm"]
                    else f", long axis {first['long_axis_px']:.0f} px")
            parts.append(f"nodule box {','.join(map(str, nodule['box']))} score "
                         f"{nodule['score']:.2f} ({len(nodule['regions'])} region(s){size})")
    if entry.get("box_source") == "localiser":
        parts.append("classified in the localiser's box")
    for key in ("heatmap", "mask"):
        if key in entry:
            parts.append(f"{key}: {entry[key]}")
    if entry.get("dicom_results"):
        parts.append("dicom: " + " ".join(entry["dicom_results"]))
    if entry.get("stowed"):
        parts.append(f"sent to the PACS: {entry['stowed']} object(s)")
    if entry.get("rule_path"):
        parts.append(f"rule: {entry['rule_path']}")
    return "  ".join(parts)
