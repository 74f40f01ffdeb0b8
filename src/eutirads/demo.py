"""`eutirads demo`: the whole pipeline on phantom data, in a few minutes on a laptop CPU.

phantom -> import -> split -> train the default recipe and the nodule localiser -> evaluate
both on the test split -> export one bundle holding both -> print where the reports and the
bundle are. Everything goes under one
work folder (default EUTIRADS_HOME/demo, EUTIRADS_HOME defaulting to ~/.eutirads). Serving
the bundle is the last step, `serve_bundle` below: the one place the web app hooks in.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .errors import InputError

__all__ = ["DEMO_IMAGES", "DEMO_RECIPE", "DEMO_LOCALISER", "DEMO_SEED", "DemoResult", "default_workdir", "run_demo",
           "serve_bundle"]

DEMO_IMAGES = 500          # phantom screens (100 per EU-TIRADS category)
# The phantom's recipe: two-stage lite0 on the nodule crop. The phantom's manifest carries
# every nodule's box, and its categories hinge on small details inside and at the edge of
# the nodule (echogenic foci, margins, shape) that a whole-screen 224 px input blurs away; a
# margin of half the box on each side keeps enough thyroid around it to judge echogenicity;
# fine-tuning the top stages on 360 clean images lifts val macro-F1 past 0.85
# (docs/benchmarks.md). Real data of a few hundred images gets the default (frozen) recipe.
DEMO_RECIPE: dict[str, object] = {"crop": "roi", "roi_margin": 0.5, "mode": "two-stage",
                                  "head_epochs": 60, "epochs": 12, "unfreeze": 3,
                                  "finetune_lr": 0.0003, "augment": True, "aug_passes": 3,
                                  "patience": 10}
# The cheap localiser recipe (frozen ImageNet Lite0 encoder, FPN decoder on cached features;
# configs/localiser.yaml fine-tunes the encoder too, at several times the cost) at a smaller
# input, to keep the demo within its budget. 40 epochs on 3 augmented passes (not 20 on 2)
# cost about 15 s more and outline the nodule better (test Dice 0.849 -> 0.859), which the
# measured echogenicity reads (docs/benchmarks.md, the demo's section). `mirror` answers the
# mean over the image and its mirror (about 17 s more): on 800 held-out screens every
# descriptor reads better and the category as well or better (docs/benchmarks.md, "The
# localiser's mirror average").
DEMO_LOCALISER: dict[str, object] = {
    "task": "segment", "model": "tf_efficientnet_lite0", "weights": "imagenet",
    "model_kwargs": {"decoder_channels": 32, "mirror": True}, "input_size": [144, 192],
    "mode": "frozen",
    "epochs": 40, "batch_size": 16, "lr": 0.003, "aug_passes": 3, "rotation": 10.0,
    "shift": 0.08, "zoom": 0.15, "monitor": "dice", "patience": 6, "min_region_px": 40}
DEMO_SEED = 2026
MARKER = ".eutirads-demo"  # marks a folder the demo made, so a rerun may clear it
PARTS = ("phantom", "dataset", "run", "localiser", "bundle")


@dataclass
class DemoResult:
    workdir: Path
    dataset: Path
    run: Path
    report: Path
    bundle: Path
    metrics: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)
    localiser_run: Path | None = None
    localiser_metrics: dict[str, Any] = field(default_factory=dict)
    # The bundle as served (Predictor, default category source, measured descriptors) on
    # the test split: macro_f1, category_source, <descriptor>_accuracy.
    served: dict[str, Any] = field(default_factory=dict)

    @property
    def macro_f1(self) -> float:
        value = (self.metrics.get("summary") or {}).get("macro_f1")
        return float("nan") if value is None else float(value)


def default_workdir() -> Path:
    home = os.environ.get("EUTIRADS_HOME") or "~/.eutirads"
    return Path(home).expanduser() / "demo"


def _prepare_workdir(workdir: Path) -> None:
    """Create the work folder, or clear the demo's own subfolders from an earlier run.

    A non-empty folder the demo did not make is refused rather than touched.
    """
    if workdir.exists() and not workdir.is_dir():
        raise InputError(f"{workdir}: exists and is not a folder")
    if workdir.is_dir() and any(workdir.iterdir()) and not (workdir / MARKER).is_file():
        raise InputError(f"{workdir}: folder is not empty and was not made by 'eutirads demo' "
                         "(choose another --workdir)")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / MARKER).write_text("made by eutirads demo; its subfolders are rebuilt on each run\n")
    for part in PARTS:
        target = workdir / part
        if target.is_dir():
            shutil.rmtree(target)


def run_demo(workdir: str | os.PathLike[str] | None = None, *, n: int = DEMO_IMAGES,
             seed: int = DEMO_SEED, overrides: Mapping[str, Any] | Sequence[str] | None = None,
             localiser_overrides: Mapping[str, Any] | Sequence[str] | None = None,
             progress: bool = True, echo: Callable[[str], None] | None = None) -> DemoResult:
    """Run the pipeline; `overrides` change the demo's recipe and `localiser_overrides` its
    localiser's (tests use tiny ones)."""
    from .data.importers import import_dataset
    from .data.split import split_dataset
    from .evaluation import evaluate_run
    from .evaluation.localiser import evaluate_localiser_run
    from .export import export_bundle
    from .phantom import generate_dataset
    from .training.config import resolve_config
    from .training.run import train

    say = echo or (lambda message: print(message, file=sys.stderr))
    workdir = Path(workdir).expanduser() if workdir else default_workdir()
    recipe = dict(DEMO_RECIPE)
    if overrides:
        from .training.config import parse_overrides

        recipe.update(overrides if isinstance(overrides, Mapping) else parse_overrides(overrides))
    config = resolve_config(None, recipe)  # a bad override fails before any work
    local_recipe = dict(DEMO_LOCALISER)
    if localiser_overrides:
        from .training.config import parse_overrides

        local_recipe.update(localiser_overrides if isinstance(localiser_overrides, Mapping)
                            else parse_overrides(localiser_overrides))
    local_config = resolve_config(None, local_recipe)
    _prepare_workdir(workdir)
    seconds: dict[str, float] = {}

    def step(name: str, func: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        value = func()
        seconds[name] = round(time.perf_counter() - started, 1)
        return value

    phantom = workdir / "phantom"
    dataset = workdir / "dataset"
    run = workdir / "run"
    local_run = workdir / "localiser"
    bundle = workdir / "bundle"
    step("phantom", lambda: generate_dataset(phantom, n=n, seed=seed, progress=progress))
    say(f"demo: {n} phantom screens in {seconds['phantom']:.0f} s -> {phantom}")
    report = step("import", lambda: import_dataset(phantom, dataset, fmt="folders",
                                                   progress=progress))
    say(f"demo: {report.summary_line()}" if hasattr(report, "summary_line")
        else f"demo: imported -> {dataset}")
    split = step("split", lambda: split_dataset(dataset, seed=seed, progress=progress))
    say(f"demo: {split.summary_line()}")
    trained = step("train", lambda: train(dataset, config, run, progress=progress))
    say(f"demo: trained {config.model} ({config.mode}) in {seconds['train']:.0f} s, "
        f"val macro-F1 {trained.best_metrics.get('macro_f1', 0):.3f}")
    located = step("localiser", lambda: train(dataset, local_config, local_run,
                                              progress=progress))
    say(f"demo: trained the localiser in {seconds['localiser']:.0f} s, val Dice "
        f"{located.best_metrics.get('dice', 0):.3f}")
    # The descriptors measured on the localiser's outline (training.measured): on the
    # phantom they read echogenicity far better than the CNN's heads (docs/benchmarks.md).
    from .training.measured import fit_measured

    measured = step("measured", lambda: fit_measured(dataset, run, local_run))
    test_acc = measured.get("test_metrics") or {}
    others = [n for n in measured.get("fitted", []) if n not in measured.get("heads", [])]
    say("demo: measured descriptors, test accuracy "
        + (", ".join(f"{k.replace('_accuracy', '')} {v:.2f}" for k, v in test_acc.items())
           or "none kept")
        + (f" (the classifier's heads read {', '.join(others)} better on val)" if others else "")
        + f"; default category source {measured.get('category_source', 'unchanged')}")
    metrics = step("evaluate", lambda: evaluate_run(run, split="test", progress=progress))
    local_metrics = step("evaluate localiser", lambda: evaluate_localiser_run(
        local_run, split="test", progress=progress, n_boot=200))
    step("export", lambda: export_bundle(run, bundle, localiser=local_run))
    served = step("served", lambda: served_metrics(bundle, dataset))
    seconds["total"] = round(sum(seconds.values()), 1)
    return DemoResult(workdir, dataset, run, run / "eval" / "test" / "report.html", bundle,
                      metrics, seconds, local_run, local_metrics, served)


def served_metrics(bundle: Path, dataset: Path, split: str = "test", *, n_boot: int = 0
                   ) -> dict[str, Any]:
    """What the bundle answers on the split's labelled images, as `predict` serves it (the
    default category source; the measured descriptors when it has them): macro-F1 of
    `label` and each descriptor's accuracy where the manifest knows it. With `n_boot`, each
    figure also gets a 95% patient-bootstrap interval (`<name>_ci`: [low, high])."""
    import numpy as np

    from .data.manifest import image_path, read_manifest
    from .evaluation.metrics import bootstrap_ci, classification_report
    from .inference import Predictor
    from .training.data import row_descriptors

    predictor = Predictor(bundle)
    rows = [r for r in read_manifest(dataset) if r.get("split") == split and r.get("label")]
    truth, served, hits, groups = [], [], {}, []
    for row in rows:
        result = predictor.predict(image_path(dataset, row), heatmap=False, name=row["path"])
        truth.append(row["label"])
        served.append(result.label)
        groups.append(row.get("patient_id") or row["path"])
        for name, value in row_descriptors(row).items():
            if result.descriptors and name in result.descriptors:
                hits.setdefault(name, {})[len(truth) - 1] = (
                    result.descriptors[name]["value"] == value)
    out: dict[str, Any] = {"category_source": predictor.category_source, "n": len(rows)}
    if not rows:
        return out

    def figures(idx: Any) -> dict[str, float]:
        """The figures on the rows `idx` (all of them, or one bootstrap sample)."""
        values = {"macro_f1": float(classification_report(
            [truth[i] for i in idx], [served[i] for i in idx],
            predictor.class_names)["macro"]["f1"])}
        for name, by_row in hits.items():
            scored = [by_row[i] for i in idx if i in by_row]
            values[f"{name}_accuracy"] = float(np.mean(scored)) if scored else float("nan")
        return values

    index = np.arange(len(rows))
    out.update(figures(index))
    if n_boot:  # the rows looked up by index, as evaluation.localiser.localiser_metrics does
        ci = bootstrap_ci(index, index, np.zeros((len(rows), 1)), [0], groups, n_boot=n_boot,
                          metric_fn=lambda y_true, *_: figures([int(i) for i in y_true]))
        out.update({f"{key}_ci": [round(v["low"], 4), round(v["high"], 4)]
                    for key, v in ci.items()})
    return out


def serve_bundle(result: DemoResult, *, serve: bool = True) -> int:
    """The demo's last step: register the bundle in the diagnosis app, create the demo
    account (password printed once) and, unless `serve` is False, serve on localhost."""
    from .web.diagnosis.demo import serve_demo

    return serve_demo(result.bundle, serve=serve, samples=result.workdir / "phantom",
                      dataset=result.dataset)
