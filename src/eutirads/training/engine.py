"""The training loop: phases, feature caching, early stopping, prediction.

A phase trains the top `k` feature stages plus the head (k = 0: the head alone). The
frozen part below them runs without gradients; when its output fits in memory it is
computed once and cached (without augmentation: one pass; with augmentation:
`aug_passes` augmented passes, epoch e reading pass e mod passes), so an epoch costs only
the trainable top. Modes: frozen = one phase with k = 0; finetune = one phase with
k = unfreeze; two-stage = k = 0, then k = unfreeze at the lower learning rate.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .config import TrainConfig
from .data import eval_transform, train_transform
from .losses import balanced_class_weights, classification_loss
from ..preprocess import PreprocessSpec

__all__ = ["Phase", "phases_for", "fit", "predict_proba", "basic_metrics", "FitResult",
           "select_device"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Phase:
    name: str
    trainable: int           # feature stages trained, from the top; -1 = all
    epochs: int
    head_lr: float
    base_lr: float


def phases_for(config: TrainConfig) -> list[Phase]:
    if config.mode == "frozen":
        return [Phase("frozen", 0, config.epochs, config.lr, 0.0)]
    if config.mode == "finetune":
        return [Phase("finetune", config.unfreeze, config.epochs, config.lr, config.finetune_lr)]
    phases = []
    if config.head_epochs > 0:
        phases.append(Phase("head", 0, config.head_epochs, config.lr, 0.0))
    phases.append(Phase("finetune", config.unfreeze, config.epochs, config.finetune_lr,
                        config.finetune_lr))
    return phases


def select_device(config: TrainConfig) -> torch.device:
    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            from ..errors import ConfigError
            raise ConfigError("config: device cuda asked for, but no CUDA device is present")
        return torch.device("cuda")
    return torch.device("cpu")


def basic_metrics(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict[str, float]:
    """Accuracy and macro precision / recall / F1 from the confusion matrix."""
    cm = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    tp = np.diag(cm).astype(np.float64)
    predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    present = actual > 0  # classes absent from this split don't dilute the macro average
    return {
        "accuracy": float(tp.sum() / max(cm.sum(), 1)),
        "precision": float(precision[present].mean()) if present.any() else 0.0,
        "recall": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
    }


# ---------------------------------------------------------------------------------------
# Splitting a model into a frozen bottom and a trainable top


class _Split:
    """The model as bottom (no gradients, eval mode) + top (trained) + head."""

    def __init__(self, model: nn.Module, trainable: int) -> None:
        self.model = model
        stages = model.feature_stages()
        n = len(stages)
        k = n if trainable < 0 else min(trainable, n)
        self.k, self.n = k, n
        self.bottom = stages[: n - k]
        self.top = stages[n - k:]
        # Only models whose stages, run in order, are their forward_features can be cut in
        # the middle; the others run whole (k = n) or as features + head (k = 0).
        self.sequential = k in (0, n) or _stages_are_sequential(model, stages)

    def bottom_forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.k == 0:
            return self.model.forward_features(x).mean(dim=(2, 3), keepdim=True)
        if self.k == self.n:
            return x
        for stage in self.bottom:
            x = stage(x)
        return x

    def advance(self, x: torch.Tensor, level: int) -> torch.Tensor:
        """From the output of stages[:level] to this split's top input (sequential models)."""
        for stage in self.model.feature_stages()[level:self.n - self.k]:
            x = stage(x)
        return x.mean(dim=(2, 3), keepdim=True) if self.k == 0 else x

    def top_forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.k == 0:
            return self.model.forward_head(x)
        if self.k == self.n:
            return self.model(x)
        for stage in self.top:
            x = stage(x)
        return self.model.forward_head(x)

    def trainable_parameters(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        head = list(self.model.head.parameters())
        base = [p for stage in self.top for p in stage.parameters()]
        return head, base

    def set_modes(self, training: bool, *, freeze_bn: bool = False) -> None:
        """Bottom always in eval (its batch-norm statistics stay put); top and head train.

        With `freeze_bn`, the top's batch-norm layers stay in eval mode too: fine-tuning a
        pretrained network on a few hundred images in batches of 32 otherwise replaces its
        statistics with noisy ones, and the first fine-tuning epochs undo the head's work.
        """
        self.model.eval()
        if training:
            for module in [*self.top, self.model.head, getattr(self.model, "dropout", nn.Identity())]:
                module.train()
            if freeze_bn:
                for module in self.top:
                    for sub in module.modules():
                        if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                            sub.eval()

    def freeze(self) -> None:
        for p in self.model.parameters():
            p.requires_grad_(False)
        head, base = self.trainable_parameters()
        for p in head + base:
            p.requires_grad_(True)


def _stages_are_sequential(model: nn.Module, stages: Sequence[nn.Module]) -> bool:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x = torch.randn(1, 3, 64, 64, device=next(model.parameters()).device)
            y = x
            for stage in stages:
                y = stage(y)
            ref = model.forward_features(x)
        return y.shape == ref.shape and torch.allclose(y, ref, atol=1e-4, rtol=1e-4)
    except Exception:  # a stage that needs side inputs: not sequential
        return False
    finally:
        model.train(was_training)


# ---------------------------------------------------------------------------------------
# Batches


def _batches(n: int, batch_size: int, generator: torch.Generator | None) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def _stack(images: Sequence[np.ndarray], indices: torch.Tensor,
           transform: Callable[[np.ndarray], np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack([transform(images[int(i)]) for i in indices]))


@torch.no_grad()
def _encode(split: _Split, images: Sequence[np.ndarray], transform, device, batch_size: int,
            *, desc: str, progress: bool, amp: bool) -> torch.Tensor:
    """The frozen bottom's output for every image (on the CPU, float32)."""
    outs = []
    for idx in tqdm(_batches(len(images), batch_size, None), desc=desc, unit="batch",
                    disable=not progress, leave=False):
        x = _stack(images, idx, transform).to(device)
        with _autocast(device, amp):
            outs.append(split.bottom_forward(x).float().cpu())
    return torch.cat(outs) if outs else torch.empty(0)


def _encode_passes(split: _Split, images, augment, device, config: TrainConfig, passes: int,
                   name: str, progress: bool) -> list[torch.Tensor]:
    return [_encode(split, images, augment, device, config.batch_size,
                    desc=f"{name}: caching pass {p + 1}/{passes}", progress=progress,
                    amp=config.amp) for p in range(passes)]


@torch.no_grad()
def _advance_all(split: _Split, cache: torch.Tensor, level: int, device,
                 batch_size: int) -> torch.Tensor:
    split.set_modes(False)
    outs = [split.advance(cache[i:i + batch_size].to(device), level).float().cpu()
            for i in range(0, len(cache), batch_size)]
    return torch.cat(outs) if outs else cache


def _autocast(device: torch.device, amp: bool):
    if device.type == "cuda" and amp:
        return torch.autocast("cuda", dtype=torch.float16)
    return torch.autocast("cpu", enabled=False)


def _bottom_bytes(split: _Split, image_shape: tuple[int, int], device) -> int:
    if split.k == split.n:
        return 3 * image_shape[0] * image_shape[1] * 4
    with torch.no_grad():
        split.set_modes(False)
        out = split.bottom_forward(torch.zeros(1, 3, *image_shape, device=device))
    return out.numel() * 4


# ---------------------------------------------------------------------------------------
# Fit


@dataclass
class FitResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_metrics: dict[str, float] = field(default_factory=dict)
    best_state: dict[str, torch.Tensor] | None = None
    last_state: dict[str, torch.Tensor] | None = None
    train_images_per_s: float = 0.0
    seconds: float = 0.0


def _improved(config: TrainConfig, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value < best - 1e-6 if config.monitor == "loss" else value > best + 1e-6


def fit(model: nn.Module, spec: PreprocessSpec, config: TrainConfig,
        train_images: Sequence[np.ndarray], train_labels: Sequence[int],
        val_images: Sequence[np.ndarray], val_labels: Sequence[int], *,
        progress: bool = True, on_epoch: Callable[[dict[str, Any], bool, nn.Module], None] | None = None,
        early_stopping: bool = True) -> FitResult:
    """Train `model` in place through the config's phases; the model ends with the best
    weights (by config.monitor on the val images) loaded.

    `on_epoch(row, improved, model)` is called after each epoch (the run folder writes
    its history and checkpoints there). Without early stopping (cross-validation), every
    epoch runs and the last weights are kept.
    """
    device = select_device(config)
    model.to(device)
    n_classes = len(spec.class_names)
    y_train = torch.as_tensor(np.asarray(train_labels, np.int64))
    y_val = np.asarray(val_labels, np.int64)
    counts = np.bincount(y_train.numpy(), minlength=n_classes)
    weight = (torch.from_numpy(balanced_class_weights(counts)).to(device)
              if config.class_weights else None)
    ordinal = config.ordinal_weight if config.loss == "ordinal" else 0.0
    generator = torch.Generator().manual_seed(config.seed)
    evaluate = eval_transform(spec)
    augment = (train_transform(spec, rotation=config.rotation, shift=config.shift,
                               shear=config.shear, zoom=config.zoom,
                               brightness=config.brightness, hflip=config.hflip)
               if config.augment else evaluate)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and config.amp)

    result = FitResult()
    best_value: float | None = None
    epoch_no = 0
    started = time.perf_counter()
    images_seen, train_seconds = 0, 0.0

    passes = config.aug_passes if config.augment else 1
    freeze_bn = (config.freeze_bn == "true"
                 or (config.freeze_bn == "auto" and str(config.weights) != "none"))
    plan = []
    for phase in phases_for(config):
        split = _Split(model, phase.trainable)
        if not split.sequential:
            log.info("%s: stages cannot be run one by one; training all of them", phase.name)
            split = _Split(model, -1)
        plan.append((phase, split))
    # One cache for all phases: the output of the stages no phase trains, computed once
    # (per augmentation pass); each phase runs the few frozen stages above it cheaply.
    shared = None
    middle = [sp for _, sp in plan if 0 < sp.k < sp.n]
    if middle and passes > 0:
        level = min(sp.n - sp.k for sp in middle)
        prefix = _Split(model, middle[0].n - level)
        per_image = _bottom_bytes(prefix, spec.input_size, device)
        if per_image * len(train_images) * passes <= config.cache_limit_mb * 2**20:
            prefix.set_modes(False)
            shared = {"level": level,
                      "train": _encode_passes(prefix, train_images, augment, device, config,
                                              passes, "shared", progress),
                      "val": _encode(prefix, val_images, evaluate, device, config.batch_size,
                                     desc="caching val", progress=progress, amp=config.amp),
                      "val_flip": (_encode(prefix, val_images, lambda im: evaluate(im[:, ::-1]),
                                           device, config.batch_size, desc="val mirror",
                                           progress=False, amp=config.amp)
                                   if config.tta else None)}

    for phase, split in plan:
        split.freeze()
        head, base = split.trainable_parameters()
        groups = [{"params": head, "lr": phase.head_lr}]
        if base:
            groups.append({"params": base, "lr": phase.base_lr})
        optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
        steps_per_epoch = math.ceil(len(train_images) / config.batch_size)
        total = max(1, phase.epochs * steps_per_epoch)
        warmup = min(total - 1, int(config.warmup_epochs * steps_per_epoch))

        def schedule(step: int, warmup=warmup, total=total) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            progress_ = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress_)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

        # Caches of the frozen bottom's output: from the shared cache when there is one,
        # else computed for this phase.
        split.set_modes(False)
        train_cache: list[torch.Tensor] = []
        val_cache = val_flip = None
        if split.k < split.n and shared is not None:
            level = shared["level"]
            train_cache = [_advance_all(split, c, level, device, config.batch_size)
                           for c in shared["train"]]
            val_cache = _advance_all(split, shared["val"], level, device, config.batch_size)
            if shared["val_flip"] is not None:
                val_flip = _advance_all(split, shared["val_flip"], level, device, config.batch_size)
        elif split.k < split.n:
            per_image = _bottom_bytes(split, spec.input_size, device)
            if per_image * len(train_images) * passes <= config.cache_limit_mb * 2**20:
                train_cache = _encode_passes(split, train_images, augment, device, config,
                                             passes, phase.name, progress)
            val_cache = _encode(split, val_images, evaluate, device, config.batch_size,
                                desc=f"{phase.name}: caching val", progress=progress,
                                amp=config.amp)
            if config.tta:
                val_flip = _encode(split, val_images, lambda im: evaluate(im[:, ::-1]), device,
                                   config.batch_size, desc="val mirror", progress=False,
                                   amp=config.amp)
        cache_train = bool(train_cache)

        stale = 0
        bar = tqdm(range(phase.epochs), desc=f"train {phase.name}", unit="epoch",
                   disable=not progress)
        for local_epoch in bar:
            epoch_no += 1
            t0 = time.perf_counter()
            split.set_modes(True, freeze_bn=freeze_bn)
            total_loss, correct, seen = 0.0, 0, 0
            for idx in _batches(len(train_images), config.batch_size, generator):
                if len(idx) < 2 and split.k > 0:
                    continue  # batch-norm cannot train on a single image
                if cache_train:
                    x = train_cache[local_epoch % passes][idx].to(device)
                else:
                    x = _stack(train_images, idx, augment).to(device)
                    if split.k < split.n:
                        with torch.no_grad(), _autocast(device, config.amp):
                            x = split.bottom_forward(x).float()
                y = y_train[idx].to(device)
                with _autocast(device, config.amp):
                    logits = split.top_forward(x)
                loss = classification_loss(logits, y, weight=weight,
                                           label_smoothing=config.label_smoothing,
                                           ordinal_weight=ordinal)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                total_loss += loss.item() * len(idx)
                correct += int((logits.argmax(1) == y).sum())
                seen += len(idx)
            train_seconds += time.perf_counter() - t0
            images_seen += seen

            split.set_modes(False)
            probs = _predict_split(split, val_images, evaluate, device, config, val_cache, val_flip)
            with torch.no_grad():
                logp = torch.log(torch.from_numpy(probs).clamp_min(1e-12))
                val_loss = float(torch.nn.functional.nll_loss(
                    logp, torch.from_numpy(y_val),
                    weight=weight.cpu() if weight is not None else None))
            metrics = basic_metrics(y_val, probs.argmax(1), n_classes)
            row = {"epoch": epoch_no, "phase": phase.name,
                   "lr": optimizer.param_groups[-1]["lr"],
                   "train_loss": total_loss / max(seen, 1), "train_accuracy": correct / max(seen, 1),
                   "val_loss": val_loss, **{f"val_{k}": v for k, v in metrics.items()},
                   "seconds": time.perf_counter() - t0}
            result.history.append(row)
            value = val_loss if config.monitor == "loss" else metrics[config.monitor]
            improved = _improved(config, value, best_value)
            if improved:
                best_value = value
                result.best_epoch = epoch_no
                result.best_metrics = {"loss": val_loss, **metrics}
                result.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
                stale = 0
            else:
                stale += 1
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_loss=f"{val_loss:.3f}",
                            val_f1=f"{metrics['macro_f1']:.3f}")
            if on_epoch is not None:
                on_epoch(row, improved, model)
            if early_stopping and config.patience and stale >= config.patience:
                log.info("%s: early stop after %d epochs without improvement", phase.name, stale)
                break
        bar.close()
        result.last_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if early_stopping and result.best_state is not None:
            # The next phase (and the caller) start from the best weights so far.
            model.load_state_dict(result.best_state)

    if not early_stopping:
        result.best_state = result.last_state
        last = result.history[-1]
        result.best_epoch = last["epoch"]
        result.best_metrics = {"loss": last["val_loss"],
                               **{k[4:]: v for k, v in last.items() if k.startswith("val_") and k != "val_loss"}}
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    result.seconds = time.perf_counter() - started
    result.train_images_per_s = images_seen / train_seconds if train_seconds > 0 else 0.0
    return result


@torch.no_grad()
def _predict_split(split: _Split, images, transform, device, config: TrainConfig,
                   cache: torch.Tensor | None, cache_flip: torch.Tensor | None) -> np.ndarray:
    outs = []
    for idx in _batches(len(images), config.batch_size, None):
        views = []
        if cache is not None:
            views.append(cache[idx].to(device))
            if cache_flip is not None:
                views.append(cache_flip[idx].to(device))
        else:
            x = _stack(images, idx, transform).to(device)
            views.append(x)
            if config.tta:
                views.append(torch.flip(x, dims=[3]))
        probs = 0
        for view in views:
            with _autocast(device, config.amp):
                probs = probs + split.top_forward(view).float().softmax(1)
        outs.append((probs / len(views)).cpu())
    return torch.cat(outs).numpy() if outs else np.zeros((0, 0), np.float32)


def predict_proba(model: nn.Module, spec: PreprocessSpec, images: Sequence[np.ndarray],
                  config: TrainConfig) -> np.ndarray:
    """Class probabilities for input-size uint8 images (eval preset, optional mirror TTA)."""
    device = select_device(config)
    model.to(device)
    split = _Split(model, -1)
    split.set_modes(False)
    return _predict_split(split, images, eval_transform(spec), device, config, None, None)
