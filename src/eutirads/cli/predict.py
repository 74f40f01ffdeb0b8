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
        "predict", help="classify images with an exported bundle",
        description="Print, per image, the predicted category, its name and every class's "
                    "probability. Runs on onnxruntime alone (no torch). A bad image gets a "
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
                        help="nodule box in pixels, used for every image given")
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


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..imageio import save_png
    from ..inference import Predictor, load_image, overlay_heatmap

    if not 0.0 <= args.opacity <= 1.0:
        raise InputError(f"--opacity must be in [0, 1], got {args.opacity}")
    predictor = Predictor(args.bundle)
    heat_dir = Path(args.heatmap) if args.heatmap else None
    if heat_dir is not None:
        heat_dir.mkdir(parents=True, exist_ok=True)
    results, failed = [], 0
    for index, image in enumerate(tqdm(args.images, desc="predict", unit="img", file=sys.stderr,
                                       disable=len(args.images) < 2, leave=False), start=1):
        try:
            pixels = load_image(image)
            result = predictor.predict(pixels, box=args.box, heatmap=heat_dir is not None)
            entry = {"index": index, "image": image, **result.to_dict()}
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
        if not args.json and entry.get("label") is None and "error" not in entry:
            tqdm.write(f"{image}: abstained ({entry['abstain_reason']})", file=sys.stdout)
        elif not args.json and "error" not in entry:
            probs = "  ".join(f"{k}:{v:.3f}" for k, v in entry["probabilities"].items())
            extra = f"  heatmap: {entry['heatmap']}" if "heatmap" in entry else ""
            if entry.get("dicom_results"):
                extra += "  dicom: " + " ".join(entry["dicom_results"])
            if entry.get("stowed"):
                extra += f"  sent to the PACS: {entry['stowed']} object(s)"
            if entry.get("rule_path"):
                extra += f"  rule: {entry['rule_path']}"
            # An abstention is a result (exit 0), shown as such, never as a category to act on.
            said = (f"ABSTAIN ({entry['abstain_reason']}; model's guess {entry['label']})"
                    if entry.get("abstain") else f"{entry['label']} ({entry['name']})")
            # tqdm.write keeps the line clear of the progress bar on a terminal.
            tqdm.write(f"{image}: {said} p={entry['confidence']:.3f}  [{probs}]{extra}",
                       file=sys.stdout)
    if args.json:
        meta = predictor.metadata
        print(json.dumps({"bundle": {"name": meta.get("name"), "version": meta.get("version"),
                                     "class_names": predictor.class_names},
                          "predictions": results}, indent=2))
    print(f"predicted {len(results) - failed} of {len(results)} image(s)"
          + (f"; {failed} failed" if failed else ""), file=sys.stderr)
    return 1 if failed else 0
