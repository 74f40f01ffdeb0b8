"""The training loop, in the torchvision reference's shape: `train_one_epoch`, `evaluate`,
`fit` (the phases around them), one prediction loop and a feature cache.

A phase trains the top `k` feature stages plus the heads (k = 0: the heads alone). The
frozen part below them runs without gradients; when its output fits in memory it is
computed once and kept in a `FeatureCache` (without augmentation: one pass; with
augmentation: `aug_passes` augmented passes, epoch e reading pass e mod passes), so an
epoch costs only the trainable top. Modes: frozen = one phase with k = 0; finetune = one
phase with k = unfreeze; two-stage = k = 0, then k = unfreeze at the lower learning rate.

Targets are an N x (1 + D) integer matrix: column 0 the category, then one column per
descriptor head (-1 = unknown, masked out of that head's loss).

`fit` is the only function that reads the whole `TrainConfig`; it turns it into the small
option objects below, and everything under it takes only those.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..evaluation.metrics import training_metrics
from ..preprocess import PreprocessSpec
from . import distributed
from .config import TrainConfig
from .data import eval_transform, train_transform
from .losses import balanced_class_weights, multitask_loss

__all__ = ["Phase", "phases_for", "fit", "train_one_epoch", "evaluate", "predict_outputs",
           "predict_proba", "pooled_features", "image_views", "FeatureCache", "FitResult", "LoopOptions",
           "LossOptions", "FitOptions", "select_device", "to_device", "inference_batch",
           "model_heads", "tensor_views", "CATEGORY"]

log = logging.getLogger(__name__)

CATEGORY = "category"   # the name of the category head among a model's outputs


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


def select_device(config: TrainConfig | str) -> torch.device:
    choice = config if isinstance(config, str) else config.device
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            from ..errors import ConfigError
            raise ConfigError("config: device cuda asked for, but no CUDA device is present")
        return torch.device("cuda")
    return torch.device("cpu")


def to_device(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` on `device` with its convolution weights channels-last (NHWC). On the CPU,
    oneDNN runs EfficientNet-Lite0 at 224x224 1.7x faster in that layout (about the same at
    144x192; benchmarks/channels_last.py, docs/benchmarks.md "`eutirads demo` on the slower
    VM"); CUDA's tensor cores prefer it too. The outputs are the same up to float rounding."""
    return model.to(device, memory_format=torch.channels_last)


# On the CPU, no-gradient passes of lite0 at 224x224 ran fastest per image in batches of
# 8-16, 1.4x slower in batches of 32 (benchmarks/channels_last.py).
CPU_INFERENCE_BATCH = 16


def inference_batch(batch_size: int, device: torch.device) -> int:
    """The batch for a no-gradient pass (caching features, predicting): the training
    batch, capped at CPU_INFERENCE_BATCH on the CPU. Eval-mode outputs do not depend on
    it beyond float rounding."""
    return min(batch_size, CPU_INFERENCE_BATCH) if device.type == "cpu" else batch_size


# ---------------------------------------------------------------------------------------
# Option objects: what each part of the loop needs, and nothing more


@dataclass(frozen=True)
class LoopOptions:
    """How batches run: size, device, mixed precision, mirror test-time augmentation."""
    batch_size: int = 32
    device: torch.device = torch.device("cpu")
    amp: bool = True
    tta: bool = False

    @classmethod
    def from_config(cls, config: TrainConfig) -> "LoopOptions":
        return cls(config.batch_size, select_device(config), config.amp, config.tta)

    @property
    def inference_batch(self) -> int:
        return inference_batch(self.batch_size, self.device)


@dataclass(frozen=True)
class LossOptions:
    class_weights: bool = True
    label_smoothing: float = 0.0
    ordinal_weight: float = 0.0          # 0 = plain cross-entropy
    descriptor_weight: float = 1.0       # each descriptor head's loss, relative to the category's

    @classmethod
    def from_config(cls, config: TrainConfig) -> "LossOptions":
        return cls(config.class_weights, config.label_smoothing,
                   config.ordinal_weight if config.loss == "ordinal" else 0.0,
                   float(getattr(config, "descriptor_weight", 1.0)))


@dataclass(frozen=True)
class FitOptions:
    loop: LoopOptions
    loss: LossOptions
    phases: tuple[Phase, ...]
    augment: dict[str, Any] | None       # train_transform's arguments; None = no augmentation
    passes: int                          # augmented passes cached for a frozen bottom
    freeze_bn: bool
    weight_decay: float
    warmup_epochs: float
    monitor: str
    patience: int
    cache_limit_mb: int
    seed: int

    @classmethod
    def from_config(cls, config: TrainConfig) -> "FitOptions":
        augment = (dict(rotation=config.rotation, shift=config.shift, shear=config.shear,
                        zoom=config.zoom, brightness=config.brightness, hflip=config.hflip)
                   if config.augment else None)
        freeze_bn = (config.freeze_bn == "true"
                     or (config.freeze_bn == "auto" and str(config.weights) != "none"))
        return cls(LoopOptions.from_config(config), LossOptions.from_config(config),
                   tuple(phases_for(config)), augment,
                   config.aug_passes if config.augment else 1, freeze_bn,
                   config.weight_decay, config.warmup_epochs, config.monitor, config.patience,
                   config.cache_limit_mb, config.seed)


# ---------------------------------------------------------------------------------------
# Splitting a model into a frozen bottom and a trainable top


def model_heads(model: nn.Module, features: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every head's logits from a feature map: {"category": ..., descriptor: ...}."""
    forward_heads = getattr(model, "forward_heads", None)
    if forward_heads is not None:
        return forward_heads(features)
    return {CATEGORY: model.forward_head(features)}


class _Split:
    """The model as bottom (no gradients, eval mode) + top (trained) + heads."""

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

    @property
    def cacheable(self) -> bool:
        return self.k < self.n

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

    def top_forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every head's logits from this split's top input."""
        if self.k == self.n:
            x = self.model.forward_features(x)
        elif self.k > 0:
            for stage in self.top:
                x = stage(x)
        return model_heads(self.model, x)

    def trainable_parameters(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        head = list(self.model.head.parameters())
        extra = getattr(self.model, "descriptor_heads", None)
        if extra is not None:
            head += list(extra.parameters())
        base = [p for stage in self.top for p in stage.parameters()]
        return head, base

    def set_modes(self, training: bool, *, freeze_bn: bool = False) -> None:
        """Bottom always in eval (its batch-norm statistics stay put); top and heads train.

        With `freeze_bn`, the top's batch-norm layers stay in eval mode too: fine-tuning a
        pretrained network on a few hundred images in batches of 32 otherwise replaces its
        statistics with noisy ones, and the first fine-tuning epochs undo the head's work.
        """
        self.model.eval()
        if training:
            heads = [self.model.head, getattr(self.model, "dropout", nn.Identity()),
                     getattr(self.model, "descriptor_heads", nn.Identity())]
            for module in [*self.top, *heads]:
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
# Batches and the one prediction loop


def _batches(n: int, batch_size: int, generator: torch.Generator | None) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def _stack(images: Sequence[np.ndarray], indices: torch.Tensor,
           transform: Callable[[np.ndarray], np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack([transform(images[int(i)]) for i in indices]))


def _autocast(device: torch.device, amp: bool):
    if device.type == "cuda" and amp:
        return torch.autocast("cuda", dtype=torch.float16)
    return torch.autocast("cpu", enabled=False)


def image_views(images: Sequence[np.ndarray], transform: Callable[[np.ndarray], np.ndarray],
                loop: LoopOptions) -> Iterator[list[torch.Tensor]]:
    """Per batch, the views a prediction averages: the image, and its mirror under TTA."""
    for idx in _batches(len(images), loop.inference_batch, None):
        x = _stack(images, idx, transform)
        yield [x, torch.flip(x, dims=[3])] if loop.tta else [x]


def tensor_views(batches: Iterable[np.ndarray | torch.Tensor], loop: LoopOptions
                 ) -> Iterator[list[torch.Tensor]]:
    """The same views for batches already prepared (Nx3xHxW)."""
    for batch in batches:
        x = torch.as_tensor(batch)
        yield [x, torch.flip(x, dims=[3])] if loop.tta else [x]


@torch.no_grad()
def predict_outputs(forward: Callable[[torch.Tensor], dict[str, torch.Tensor]],
                    views: Iterable[Sequence[torch.Tensor]], loop: LoopOptions, *,
                    softmax: bool = True) -> dict[str, np.ndarray]:
    """The one prediction loop: for every batch, each head's softmax (or, with
    softmax=False, the raw output) averaged over the batch's views (the image, its mirror
    under TTA). Returns output name -> N x K."""
    outs: dict[str, list[torch.Tensor]] = {}
    for batch in views:
        summed: dict[str, torch.Tensor] = {}
        for view in batch:
            with _autocast(loop.device, loop.amp):
                logits = forward(view.to(loop.device))
            for name, value in logits.items():
                p = value.float().softmax(1) if softmax else value.float()
                summed[name] = summed[name] + p if name in summed else p
        for name, value in summed.items():
            outs.setdefault(name, []).append((value / len(batch)).cpu())
    return {name: torch.cat(parts).numpy() for name, parts in outs.items()}


def pooled_features(model: nn.Module, spec: PreprocessSpec, images: Sequence[np.ndarray],
                    loop: LoopOptions) -> np.ndarray:
    """N x C globally pooled last feature maps of the unmirrored images (what the bundle's
    "features" output gives the predictor's out-of-distribution check)."""
    to_device(model, loop.device)
    model.eval()
    plain = LoopOptions(loop.batch_size, loop.device, loop.amp, tta=False)
    out = predict_outputs(lambda x: {"f": model.forward_features(x).mean(dim=(2, 3))},
                          image_views(images, eval_transform(spec), plain), plain,
                          softmax=False)
    return out.get("f", np.zeros((0, 0), np.float32))


def predict_proba(model: nn.Module, spec: PreprocessSpec, images: Sequence[np.ndarray],
                  loop: LoopOptions | TrainConfig, *, heads: bool = False
                  ) -> np.ndarray | dict[str, np.ndarray]:
    """Class probabilities for input-size uint8 images (eval preset, optional mirror TTA);
    with `heads`, every head's probabilities by name."""
    if isinstance(loop, TrainConfig):
        loop = LoopOptions.from_config(loop)
    to_device(model, loop.device)
    model.eval()
    out = predict_outputs(lambda x: model_heads(model, model.forward_features(x)),
                          image_views(images, eval_transform(spec), loop), loop)
    if not out:
        out = {CATEGORY: np.zeros((0, len(spec.class_names)), np.float32)}
    return out if heads else out[CATEGORY]


# ---------------------------------------------------------------------------------------
# Feature cache


@torch.no_grad()
def _encode(forward: Callable[[torch.Tensor], torch.Tensor], images: Sequence[np.ndarray],
            transform, loop: LoopOptions, *, desc: str, progress: bool) -> torch.Tensor:
    """`forward` (a frozen bottom) of every image, on the CPU as float32."""
    outs = []
    for idx in tqdm(_batches(len(images), loop.inference_batch, None), desc=desc, unit="batch",
                    disable=not progress, leave=False):
        x = _stack(images, idx, transform).to(loop.device)
        with _autocast(loop.device, loop.amp):
            outs.append(forward(x).float().cpu())
    return torch.cat(outs) if outs else torch.empty(0)


def _bottom_bytes(split: _Split, image_shape: tuple[int, int], device) -> int:
    if split.k == split.n:
        return 3 * image_shape[0] * image_shape[1] * 4
    with torch.no_grad():
        split.set_modes(False)
        out = split.bottom_forward(torch.zeros(1, 3, *image_shape, device=device))
    return out.numel() * 4


@dataclass
class FeatureCache:
    """A frozen bottom's output: `train[p]` for augmentation pass p, `val` and (under TTA)
    `val_flip`, all at feature stage `level` (the input of stages[level:]).

    `build` fills it from images; `advance` carries it up to another split's top input,
    so one cache of the stages no phase trains serves every phase.
    """
    level: int
    train: list[torch.Tensor]
    val: torch.Tensor
    val_flip: torch.Tensor | None = None

    @classmethod
    def build(cls, split: _Split, train_images: Sequence[np.ndarray],
              val_images: Sequence[np.ndarray], *, augment, evaluate, passes: int,
              loop: LoopOptions, name: str, progress: bool,
              with_train: bool = True) -> "FeatureCache":
        split.set_modes(False)
        train = ([_encode(split.bottom_forward, train_images, augment, loop,
                          desc=f"{name}: caching pass {p + 1}/{passes}", progress=progress)
                  for p in range(passes)] if with_train else [])
        val = _encode(split.bottom_forward, val_images, evaluate, loop,
                      desc=f"{name}: caching val", progress=progress)
        flip = (_encode(split.bottom_forward, val_images, lambda im: evaluate(im[:, ::-1]),
                        loop, desc="val mirror", progress=False) if loop.tta else None)
        return cls(split.n - split.k if split.k > 0 else split.n, train, val, flip)

    @staticmethod
    def fits(split: _Split, n_images: int, passes: int, spec: PreprocessSpec,
             loop: LoopOptions, limit_mb: int) -> bool:
        per_image = _bottom_bytes(split, spec.input_size, loop.device)
        return per_image * n_images * passes <= limit_mb * 2**20

    @torch.no_grad()
    def advance(self, split: _Split, loop: LoopOptions) -> "FeatureCache":
        split.set_modes(False)

        def up(cache: torch.Tensor) -> torch.Tensor:
            outs = [split.advance(cache[i:i + loop.batch_size].to(loop.device), self.level)
                    .float().cpu() for i in range(0, len(cache), loop.batch_size)]
            return torch.cat(outs) if outs else cache

        return FeatureCache(split.n - split.k, [up(c) for c in self.train], up(self.val),
                            up(self.val_flip) if self.val_flip is not None else None)

    def val_views(self, loop: LoopOptions) -> Iterator[list[torch.Tensor]]:
        for idx in _batches(len(self.val), loop.batch_size, None):
            yield [self.val[idx]] + ([self.val_flip[idx]] if self.val_flip is not None else [])


# ---------------------------------------------------------------------------------------
# One epoch, one evaluation


@dataclass
class _Optimiser:
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler


def _optimiser(split: _Split, phase: Phase, n_train: int, options: FitOptions) -> _Optimiser:
    head, base = split.trainable_parameters()
    groups = [{"params": head, "lr": phase.head_lr}]
    if base:
        groups.append({"params": base, "lr": phase.base_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=options.weight_decay)
    steps_per_epoch = math.ceil(n_train / options.loop.batch_size)
    total = max(1, phase.epochs * steps_per_epoch)
    warmup = min(total - 1, int(options.warmup_epochs * steps_per_epoch))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        done = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, done)))

    device = options.loop.device
    return _Optimiser(optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule),
                      torch.amp.GradScaler("cuda", enabled=device.type == "cuda"
                                           and options.loop.amp))


def train_one_epoch(split: _Split, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                    opt: _Optimiser, loss_fn: Callable[[dict[str, torch.Tensor], torch.Tensor],
                                                       torch.Tensor],
                    loop: LoopOptions, *, freeze_bn: bool) -> dict[str, float]:
    """One pass over (input, targets) batches; returns train loss, accuracy and count."""
    split.set_modes(True, freeze_bn=freeze_bn)
    total_loss, correct, seen = 0.0, 0, 0
    for x, y in batches:
        x, y = x.to(loop.device), y.to(loop.device)
        with _autocast(loop.device, loop.amp):
            outputs = split.top_forward(x)
        loss = loss_fn(outputs, y)
        opt.optimizer.zero_grad(set_to_none=True)
        opt.scaler.scale(loss).backward()
        opt.scaler.step(opt.optimizer)
        opt.scaler.update()
        opt.scheduler.step()
        total_loss += loss.item() * len(y)
        correct += int((outputs[CATEGORY].argmax(1) == y[:, 0]).sum())
        seen += len(y)
    return {"train_loss": total_loss / max(seen, 1), "train_accuracy": correct / max(seen, 1),
            "seen": seen}


def evaluate(split: _Split, views: Iterable[Sequence[torch.Tensor]], y_val: np.ndarray,
             loop: LoopOptions, *, weight: torch.Tensor | None = None,
             head_names: Sequence[str] = ()) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Every head's probabilities on the val views, and the val metrics: class-weighted NLL
    of the category, accuracy, macro precision/recall/F1, and each descriptor head's
    accuracy on the images where it is known."""
    split.set_modes(False)
    probs = predict_outputs(split.top_forward, views, loop)
    y_val = np.asarray(y_val, np.int64).reshape(len(y_val), -1)
    category = probs[CATEGORY]
    with torch.no_grad():
        logp = torch.log(torch.from_numpy(category).clamp_min(1e-12))
        val_loss = float(torch.nn.functional.nll_loss(
            logp, torch.from_numpy(y_val[:, 0]),
            weight=weight.cpu() if weight is not None else None))
    metrics = {"loss": val_loss,
               **training_metrics(y_val[:, 0], category.argmax(1), category.shape[1])}
    for j, name in enumerate(head_names, start=1):
        known = y_val[:, j] >= 0
        if known.any() and name in probs:
            metrics[f"{name}_accuracy"] = float((probs[name][known].argmax(1)
                                                 == y_val[known, j]).mean())
    return probs, metrics


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


def _improved(monitor: str, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value < best - 1e-6 if monitor == "loss" else value > best + 1e-6


def _targets(labels: Sequence[int] | np.ndarray) -> np.ndarray:
    """Labels as an N x (1 + D) int64 matrix (a plain label vector gets D = 0)."""
    y = np.asarray(labels, np.int64)
    return y.reshape(len(y), -1) if y.ndim < 2 else y


def _plan(model: nn.Module, options: FitOptions) -> list[tuple[Phase, _Split]]:
    plan = []
    for phase in options.phases:
        split = _Split(model, phase.trainable)
        if not split.sequential:
            log.info("%s: stages cannot be run one by one; training all of them", phase.name)
            split = _Split(model, -1)
        plan.append((phase, split))
    return plan


def _shared_cache(model, plan, spec, train_images, val_images, augment, evaluate_tf,
                  options: FitOptions, progress: bool) -> FeatureCache | None:
    """One cache for all phases: the output of the stages no phase trains, computed once
    (per augmentation pass); each phase runs the few frozen stages above it cheaply."""
    middle = [sp for _, sp in plan if 0 < sp.k < sp.n]
    if not middle or options.passes <= 0:
        return None
    level = min(sp.n - sp.k for sp in middle)
    prefix = _Split(model, middle[0].n - level)
    if not FeatureCache.fits(prefix, len(train_images), options.passes, spec, options.loop,
                             options.cache_limit_mb):
        return None
    return FeatureCache.build(prefix, train_images, val_images, augment=augment,
                              evaluate=evaluate_tf, passes=options.passes, loop=options.loop,
                              name="shared", progress=progress)


def _phase_cache(split, shared, spec, train_images, val_images, augment, evaluate_tf,
                 options: FitOptions, name: str, progress: bool) -> FeatureCache | None:
    """The frozen bottom's output for this phase: from the shared cache when there is
    one, else computed here (the train part only when it fits in memory)."""
    if not split.cacheable:
        return None
    if shared is not None:
        return shared.advance(split, options.loop)
    fits = FeatureCache.fits(split, len(train_images), options.passes, spec, options.loop,
                             options.cache_limit_mb)
    return FeatureCache.build(split, train_images, val_images, augment=augment,
                              evaluate=evaluate_tf, passes=options.passes, loop=options.loop,
                              name=name, progress=progress, with_train=fits)


def _train_batches(split, cache, train_images, y_train, augment, epoch, options, generator
                   ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    loop = options.loop
    for idx in _batches(len(train_images), loop.batch_size, generator):
        if len(idx) < 2 * distributed.world_size() and split.k > 0:
            continue  # batch-norm cannot train on a single image (per rank)
        idx = distributed.shard(idx)  # this rank's part of the batch (all of it in one process)
        if cache is not None and cache.train:
            x = cache.train[epoch % options.passes][idx]
        else:
            x = _stack(train_images, idx, augment).to(loop.device)
            if split.cacheable:
                with torch.no_grad(), _autocast(loop.device, loop.amp):
                    x = split.bottom_forward(x).float()
        yield x, y_train[idx]


def fit(model: nn.Module, spec: PreprocessSpec, config: TrainConfig | FitOptions,
        train_images: Sequence[np.ndarray], train_labels: Sequence[int] | np.ndarray,
        val_images: Sequence[np.ndarray], val_labels: Sequence[int] | np.ndarray, *,
        progress: bool = True, head_names: Sequence[str] = (),
        on_epoch: Callable[[dict[str, Any], bool, nn.Module], None] | None = None,
        early_stopping: bool = True) -> FitResult:
    """Train `model` in place through the config's phases; the model ends with the best
    weights (by the monitored val metric) loaded.

    Labels are a vector of category indices, or an N x (1 + D) matrix whose columns after
    the first are the descriptor heads named in `head_names` (-1 = unknown).
    `on_epoch(row, improved, model)` is called after each epoch (the run folder writes
    its history and checkpoints there). Without early stopping (cross-validation), every
    epoch runs and the last weights are kept.
    """
    options = config if isinstance(config, FitOptions) else FitOptions.from_config(config)
    loop = options.loop
    to_device(model, loop.device)
    n_classes = len(spec.class_names)
    y_train = torch.as_tensor(_targets(train_labels))
    y_val = _targets(val_labels)
    counts = np.bincount(y_train[:, 0].numpy(), minlength=n_classes)
    weight = (torch.from_numpy(balanced_class_weights(counts)).to(loop.device)
              if options.loss.class_weights else None)

    def loss_fn(outputs: dict[str, torch.Tensor], y: torch.Tensor) -> torch.Tensor:
        return multitask_loss(outputs, y, head_names, weight=weight,
                              label_smoothing=options.loss.label_smoothing,
                              ordinal_weight=options.loss.ordinal_weight,
                              descriptor_weight=options.loss.descriptor_weight)

    generator = torch.Generator().manual_seed(options.seed)
    evaluate_tf = eval_transform(spec)
    augment = (train_transform(spec, **options.augment) if options.augment is not None
               else evaluate_tf)

    result = FitResult()
    best_value: float | None = None
    epoch_no = 0
    started = time.perf_counter()
    images_seen, train_seconds = 0, 0.0
    plan = _plan(model, options)
    shared = _shared_cache(model, plan, spec, train_images, val_images, augment, evaluate_tf,
                           options, progress)

    for phase, split in plan:
        split.freeze()
        distributed.wrap_top(split)  # DDP under torchrun; nothing in one process
        opt = _optimiser(split, phase, len(train_images), options)
        cache = _phase_cache(split, shared, spec, train_images, val_images, augment,
                             evaluate_tf, options, phase.name, progress)
        stale = 0
        bar = tqdm(range(phase.epochs), desc=f"train {phase.name}", unit="epoch",
                   disable=not progress)
        for local_epoch in bar:
            epoch_no += 1
            t0 = time.perf_counter()
            batches = _train_batches(split, cache, train_images, y_train, augment,
                                     local_epoch, options, generator)
            trained = train_one_epoch(split, batches, opt, loss_fn, loop,
                                      freeze_bn=options.freeze_bn)
            train_seconds += time.perf_counter() - t0
            images_seen += trained["seen"]

            views = (cache.val_views(loop) if cache is not None
                     else image_views(val_images, evaluate_tf, loop))
            _, metrics = evaluate(split, views, y_val, loop, weight=weight, head_names=head_names)
            row = {"epoch": epoch_no, "phase": phase.name,
                   "lr": opt.optimizer.param_groups[-1]["lr"],
                   "train_loss": trained["train_loss"],
                   "train_accuracy": trained["train_accuracy"],
                   **{f"val_{k}": v for k, v in metrics.items()},
                   "seconds": time.perf_counter() - t0}
            result.history.append(row)
            value = metrics[options.monitor]
            improved = _improved(options.monitor, value, best_value)
            if improved:
                best_value = value
                result.best_epoch = epoch_no
                result.best_metrics = dict(metrics)
                result.best_state = copy.deepcopy({k: v.detach().cpu()
                                                   for k, v in model.state_dict().items()})
                stale = 0
            else:
                stale += 1
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_loss=f"{metrics['loss']:.3f}",
                            val_f1=f"{metrics['macro_f1']:.3f}")
            if on_epoch is not None:
                on_epoch(row, improved, model)
            if early_stopping and options.patience and stale >= options.patience:
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
        result.best_metrics = {k[4:]: v for k, v in last.items() if k.startswith("val_")}
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    result.seconds = time.perf_counter() - started
    result.train_images_per_s = images_seen / train_seconds if train_seconds > 0 else 0.0
    return result
