"""Training configuration in layers: dataclass defaults <- YAML file <- key=value overrides.

The resolved config is saved as RUN/config.yaml, so a run folder says exactly how it was
made (timm's train.py does the same with args.yaml).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from ..errors import ConfigError

__all__ = ["TrainConfig", "resolve_config", "parse_overrides", "save_config", "MODES", "LOSSES",
           "recipe_note", "DEFAULT_RECIPE", "DEFAULT_RECIPE_WHY", "LARGE_DATASET"]

# What `eutirads train` says when it runs the built-in default (configs/default.yaml spells
# it out). The measurement behind it: docs/benchmarks.md, "Recipes for a few hundred real
# images" (benchmarks/recipe_cv.py).
DEFAULT_RECIPE = ("lite0 frozen ImageNet features of the whole image area, linear category "
                  "head + descriptor heads; with nodule masks, also the localiser and the "
                  "category from ImageNet features pooled inside its outline")
DEFAULT_RECIPE_WHY = ("on DDTI-dev (170 images, 5 x 5 patient-grouped CV) the outline's "
                      "features scored the best mean AUC, and no fine-tuning, nodule crop or "
                      "other head beat the whole-image features; see docs/benchmarks.md")
# Above this many training images the default, sized for a few hundred, is not the measured
# choice any more.
LARGE_DATASET = 2000

MODES = ("frozen", "finetune", "two-stage")
LOSSES = ("ce", "ordinal")
MONITORS = ("macro_f1", "accuracy", "loss", "dice")
TASKS = ("classify", "segment")


@dataclass
class TrainConfig:
    # Task: classify (a category classifier) | segment (the nodule localiser)
    task: str = "classify"
    # Model
    model: str = "tf_efficientnet_lite0"
    weights: str = "imagenet"            # imagenet | none | PATH
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    # Preprocessing (None: the model's own default)
    input_size: list[int] | None = None  # [height, width]
    crop: str = "full"                   # full | roi
    roi_margin: float = 0.25
    frame: str = "detect"                # detect | none
    resize: str = "stretch"              # stretch | letterbox
    # Schedule
    mode: str = "frozen"                 # frozen | finetune | two-stage
    epochs: int = 100                    # frozen/finetune; two-stage: the fine-tuning stage
    head_epochs: int = 60                # two-stage: epochs of the head on the frozen base
    unfreeze: int = 3                    # stages trained when fine-tuning, from the top; -1 all
    freeze_bn: str = "auto"              # keep batch-norm statistics of trained stages fixed:
                                         # auto = when the weights are pretrained
    batch_size: int = 32
    lr: float = 3e-3                     # the head
    finetune_lr: float = 3e-4            # the base whenever it trains (and the head in stage 2)
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    # Loss
    loss: str = "ce"                     # ce | ordinal (adds the expected class distance)
    ordinal_weight: float = 1.0
    label_smoothing: float = 0.0
    class_weights: bool = True           # inverse class frequency from the training counts
    descriptor_weight: float = 1.0       # loss weight of each descriptor head (masked where
                                         # unknown); 0 = no descriptor heads
    # Augmentation (train only; eval is deterministic)
    augment: bool = False
    aug_passes: int = 3                  # augmented passes cached when the base is frozen
    rotation: float = 10.0               # degrees
    shift: float = 0.1                   # fraction of width/height
    shear: float = 5.0                   # degrees
    zoom: float = 0.1                    # +- fraction
    brightness: float = 0.2              # +- fraction
    hflip: bool = True
    tta: bool = False                    # evaluation averages the image and its mirror
    # Localiser (task: segment): a pixel is nodule at probability >= threshold; regions
    # smaller than min_region_px pixels of the input grid are dropped
    threshold: float = 0.5
    min_region_px: int = 64
    min_score: str = "auto"              # regions whose mean probability is below it are
                                         # dropped: a number in [0, 1), or auto = fitted on
                                         # val (the best found-rate on nodule images minus
                                         # false alarms on nodule-free ones; 0 without any)
    dice_loss: str = "batch"             # the soft Dice over the batch, or "image": the
                                         # mean of each nodule image's own Dice
    # Knowing when not to answer (fitted on the val split after training)
    category_source: str = "auto"        # the default category: head | rule | combined;
                                         # auto = the best on val (rule needs EU-TIRADS
                                         # classes and all five descriptor heads)
    calibrate: bool = True               # temperature scaling of the category probabilities
    abstain_quantile: float = 0.1        # low-confidence threshold: this quantile of the
                                         # calibrated val confidences
    ood_quantile: float = 0.99           # out-of-distribution threshold: this quantile of
                                         # the val images' distance to the training images
    # The outline's category (training.outline): `eutirads train` also trains the
    # localiser into RUN/localiser and reads the category inside its outline, when the
    # dataset has nodule masks and the classifier is ImageNet EfficientNet-Lite; off = never
    outline: str = "auto"                # auto | off
    # Early stopping
    monitor: str = "macro_f1"            # macro_f1 | accuracy | loss (on the val split)
    patience: int = 20                   # epochs without improvement; 0 = never stop early
    # Data
    train_split: str = "train"
    val_split: str = "val"
    cache_limit_mb: int = 3000           # largest in-memory feature cache
    # Machine
    seed: int = 0
    device: str = "auto"                 # auto | cpu | cuda
    amp: bool = True                     # mixed precision on CUDA
    num_threads: int = 0                 # torch CPU threads; 0 = torch's default
    workers: int = 0

    def validate(self) -> "TrainConfig":
        def bad(msg: str) -> ConfigError:
            return ConfigError(f"config: {msg}")

        if self.task not in TASKS:
            raise bad(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.task == "segment" and self.monitor not in ("dice", "loss"):
            raise bad(f"task segment early-stops on dice or loss, not {self.monitor!r} "
                      "(set monitor: dice)")
        if self.task == "classify" and self.monitor == "dice":
            raise bad("monitor dice is for task segment")
        if self.task == "segment" and self.crop != "full":
            raise bad("task segment sees the whole image area: crop must be full")
        if not 0 < self.threshold < 1:
            raise bad("threshold must be in (0, 1)")
        if self.min_region_px < 0:
            raise bad("min_region_px must not be negative")
        if self.min_score != "auto":
            try:
                value = float(self.min_score)
            except ValueError:
                value = -1.0
            if not 0.0 <= value < 1.0:
                raise bad(f"min_score must be auto or a number in [0, 1), got {self.min_score!r}")
        if self.dice_loss not in ("batch", "image"):
            raise bad(f"dice_loss must be batch or image, got {self.dice_loss!r}")
        if self.mode not in MODES:
            raise bad(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.loss not in LOSSES:
            raise bad(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.monitor not in MONITORS:
            raise bad(f"monitor must be one of {', '.join(MONITORS)}, got {self.monitor!r}")
        if self.crop not in ("full", "roi"):
            raise bad(f"crop must be full or roi, got {self.crop!r}")
        if self.input_size is not None and (len(self.input_size) != 2 or min(self.input_size) < 16):
            raise bad(f"input_size must be [height, width] >= 16, got {self.input_size}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise bad(f"{name} must be at least 1")
        for name in ("head_epochs", "patience", "aug_passes", "num_threads", "workers"):
            if getattr(self, name) < 0:
                raise bad(f"{name} must not be negative")
        for name in ("lr", "finetune_lr"):
            if not getattr(self, name) > 0:
                raise bad(f"{name} must be positive")
        if self.category_source not in ("auto", "head", "rule", "combined"):
            raise bad(f"category_source must be auto, head, rule or combined, "
                      f"got {self.category_source!r}")
        if self.outline == "false":  # YAML reads a bare `off` as false
            self.outline = "off"
        if self.outline not in ("auto", "off"):
            raise bad(f"outline must be auto or off, got {self.outline!r}")
        if self.descriptor_weight < 0:
            raise bad("descriptor_weight must not be negative")
        if not 0 <= self.abstain_quantile < 1:
            raise bad("abstain_quantile must be in [0, 1)")
        if not 0 < self.ood_quantile <= 1:
            raise bad("ood_quantile must be in (0, 1]")
        if not 0 <= self.label_smoothing < 1:
            raise bad("label_smoothing must be in [0, 1)")
        if self.freeze_bn not in ("auto", "true", "false"):
            raise bad(f"freeze_bn must be auto, true or false, got {self.freeze_bn!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise bad(f"device must be auto, cpu or cuda, got {self.device!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(name: str, value: Any, default: Any, annotation: str) -> Any:
    """Bring a YAML or command-line value to the field's type; ConfigError otherwise."""
    if value is None:
        if "None" in annotation:
            return None
        raise ConfigError(f"config: {name} may not be empty")
    try:
        if annotation == "bool":
            if isinstance(value, str):
                low = value.lower()
                if low in ("true", "yes", "1", "on"):
                    return True
                if low in ("false", "no", "0", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if annotation == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if annotation == "float":
            return float(value)
        if annotation == "str":
            # YAML reads true/false as booleans; string options spell them in lower case.
            return str(value).lower() if isinstance(value, bool) else str(value)
        if annotation.startswith("list"):
            if isinstance(value, str):
                value = yaml.safe_load(value)
            if isinstance(value, int):
                value = [value, value]
            return [int(v) for v in value]
        if annotation.startswith("dict"):
            if isinstance(value, str):
                value = yaml.safe_load(value)
            if not isinstance(value, dict):
                raise ValueError(value)
            return dict(value)
    except (TypeError, ValueError, yaml.YAMLError):
        raise ConfigError(f"config: {name}={value!r} is not a valid {annotation}") from None
    return value


def _apply(config: TrainConfig, values: Mapping[str, Any], source: str) -> None:
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"{source}: unknown config key {key!r}")
        annotation = str(fields[key].type)
        setattr(config, key, _coerce(key, value, getattr(config, key), annotation))


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """['epochs=5', 'crop=roi'] -> {'epochs': 5, 'crop': 'roi'} (values read as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected key=value")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


def resolve_config(path: str | os.PathLike[str] | None = None,
                   overrides: Mapping[str, Any] | Iterable[str] | None = None) -> TrainConfig:
    """Defaults, then the YAML file at `path`, then `overrides`; validated."""
    config = TrainConfig()
    if path is not None:
        file = Path(path)
        try:
            values = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise ConfigError(f"{file}: config file not found") from None
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(f"{file}: not a readable YAML config ({first})") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{file}: a config is a mapping of key: value")
        _apply(config, values, str(file))
    if overrides:
        if not isinstance(overrides, Mapping):
            overrides = parse_overrides(overrides)
        _apply(config, overrides, "command line")
    return config.validate()


def recipe_note(config_file: str | os.PathLike[str] | None, n_train: int,
                overrides: Iterable[str] | None = None) -> str:
    """One line for `eutirads train`: which recipe runs and why."""
    changed = f" with {' '.join(overrides)}" if overrides else ""
    if config_file is not None:
        return f"recipe: {config_file}{changed} (chosen with --config)"
    line = f"recipe: the default ({DEFAULT_RECIPE}){changed}: {DEFAULT_RECIPE_WHY}"
    if n_train > LARGE_DATASET:
        line += (f"; note: {n_train} training images is far more than it was measured on: "
                 "fine-tuning more of the network (unfreeze=-1, more epochs) may pay off; "
                 "measure with benchmarks/recipe_cv.py")
    return line


def save_config(config: TrainConfig, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
    os.replace(tmp, path)
    return path
