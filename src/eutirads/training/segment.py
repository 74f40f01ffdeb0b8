"""Training the nodule localiser (`task: segment`): manifest rows with masks -> a run folder.

Every row of the train and val splits with a known mask is used, labelled or not; rows
whose mask is unknown (empty `mask`) are skipped and counted, and a mask that cannot be
used (wrong size, all white, undecodable) is skipped with its one-line reason. Each image
is decoded once and cut to its image area (`preprocess.crop_box`, frame: detect), and image
and mask are resized to the input size and kept in memory.

What makes it cheap on a CPU: with the encoder frozen (mode `frozen`, or the first stage
of `two-stage`), its four feature maps are computed once per augmented pass (`aug_passes`,
float16 in memory) and an epoch trains only the decoder (~0.1 M parameters). Augmentation
moves image and mask together (rotation, shift, shear, zoom, horizontal flip; never a
vertical flip: the skin is at the top), brightness touches the image only. Loss: BCE +
soft Dice; early stopping on the val Dice (mean over val images with a nodule).

After training, the minimum region score (`min_score: auto`) is fitted on val with the
best weights (`fit_min_score`): a phantom's normal thyroid, or any nodule-free image,
draws faint false outlines whose mean probability stays below a real nodule's.

RUN/config.yaml, history.csv, curves/{loss,dice}.png, checkpoints/best.pt and last.pt
(self-describing, task "segment"; the fitted minimum score in `localiser`), summary.json.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, MutableMapping, Sequence

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F
from tqdm import tqdm

from .. import __version__
from ..data.manifest import MANIFEST_NAME, image_path, load_mask, read_manifest
from ..errors import ConfigError, EutiradsError, InputError
from ..imageio import load_rgb
from ..preprocess import PreprocessSpec, crop_box, normalize
from ..region import crop
from .config import TrainConfig, save_config
from .engine import inference_batch, phases_for, select_device, to_device
from .run import TrainResult, seed_everything, write_history

__all__ = ["MaskSample", "read_segment_rows", "load_pairs", "segment_loss", "mask_scores",
           "fit_segmenter", "predict_probabilities", "train_segmenter", "make_segment_spec",
           "joint_transform", "encode_pairs", "fit_min_score"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MaskSample:
    root: Path            # the dataset folder
    path: Path            # absolute image path
    relpath: str          # as in the manifest (for messages)
    row: dict[str, str]   # the manifest row (load_mask reads its mask column)
    patient_id: str


def _samples(root: Path, rows: Sequence[dict[str, str]]) -> list[MaskSample]:
    return [MaskSample(root, image_path(root, row), row["path"], row,
                       row.get("patient_id", "") or row["path"]) for row in rows]


def read_segment_rows(dataset: str | os.PathLike[str], *, train_split: str = "train",
                      val_split: str = "val") -> tuple[Path, list[MaskSample], list[MaskSample], int]:
    """(dataset root, train samples, val samples, rows of those splits whose mask is unknown)."""
    root = Path(dataset)
    if root.suffix.lower() == ".csv":
        root = root.parent
    if not root.exists():
        raise InputError(f"{root}: dataset folder not found")
    rows = read_manifest(root)
    in_splits = [r for r in rows if r.get("split", "") in (train_split, val_split)]
    # A mask the localiser made (`eutirads localise`) is not a reference: never learn from it.
    known = [r for r in in_splits if r.get("mask", "") and r.get("mask_source", "") != "model"]
    train = [r for r in known if r["split"] == train_split]
    val = [r for r in known if r["split"] == val_split]
    manifest = root / MANIFEST_NAME
    if not train:
        raise InputError(f"{manifest}: no image with a mask in split {train_split!r} (masks come "
                         "from 'eutirads phantom', a DDTI import or a mask column; splits from "
                         "'eutirads dataset split')")
    if not val:
        raise InputError(f"{manifest}: no image with a mask in split {val_split!r}")
    return root, _samples(root, train), _samples(root, val), len(in_splits) - len(known)


def make_segment_spec(config: TrainConfig) -> PreprocessSpec:
    """The localiser's input rule: the image area, stretched to the input size (default
    192x256, landscape like a scanner's image), normalised like the encoder's ImageNet
    training."""
    from ..models import default_preprocess

    defaults = default_preprocess(config.model)
    size = tuple(config.input_size) if config.input_size else (192, 256)
    return PreprocessSpec(input_size=size, mean=defaults["mean"], std=defaults["std"],
                          crop="full", frame=config.frame, resize="stretch")


def _resize_pair(pixels: np.ndarray, mask: np.ndarray, spec: PreprocessSpec
                 ) -> tuple[np.ndarray, np.ndarray]:
    height, width = spec.input_size
    image = np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR))
    # Bilinear then threshold: a smoother edge than nearest neighbour at a lower resolution.
    small = Image.fromarray(mask.astype(np.uint8) * 255).resize((width, height),
                                                                Image.Resampling.BILINEAR)
    return image, (np.asarray(small) >= 128).astype(np.uint8)


def load_pairs(samples: Sequence[MaskSample], spec: PreprocessSpec, *,
               cache: MutableMapping[tuple, tuple[np.ndarray, np.ndarray]] | None = None,
               progress: bool = True, desc: str = "images"
               ) -> tuple[list[np.ndarray], list[np.ndarray], list[int], list[str]]:
    """(images HxWx3 uint8, masks HxW uint8 0/1, both at the input size; indices kept;
    one-line messages for the samples skipped)."""
    images, masks, kept, skipped = [], [], [], []
    for index, sample in enumerate(tqdm(samples, desc=desc, unit="img", disable=not progress,
                                        leave=False)):
        key = (str(sample.path), sample.row.get("mask", ""), spec.frame, spec.input_size)
        if cache is not None and key in cache:
            image, mask = cache[key]
        else:
            try:
                pixels = load_rgb(sample.path, name=sample.relpath)
                full = load_mask(sample.root, sample.row,
                                 image_size=(pixels.shape[1], pixels.shape[0]))
                box = crop_box(pixels, spec)
                image, mask = _resize_pair(crop(pixels, box), crop(full, box), spec)
            except EutiradsError as exc:
                skipped.append(str(exc))
                log.warning("skipped %s", exc)
                continue
            if cache is not None:
                cache[key] = (image, mask)
        images.append(image)
        masks.append(mask)
        kept.append(index)
    return images, masks, kept, skipped


# ---------------------------------------------------------------------------------------
# Augmentation


def joint_transform(spec: PreprocessSpec, config: TrainConfig
                    ) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(image, mask) -> (normalised 3xHxW float32, mask HxW float32), the same geometric
    transform on both (black fill, the ultrasound background), brightness on the image."""
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    geometric = v2.Compose([
        v2.RandomAffine(degrees=config.rotation, translate=(config.shift, config.shift),
                        scale=(1 - config.zoom, 1 + config.zoom), shear=config.shear,
                        interpolation=v2.InterpolationMode.BILINEAR),
        *([v2.RandomHorizontalFlip()] if config.hflip else []),
    ])
    brightness = v2.ColorJitter(brightness=config.brightness) if config.brightness > 0 else None

    def apply(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        picture, target = geometric(Image.fromarray(image),
                                    tv_tensors.Mask(torch.from_numpy(mask[None].copy())))
        if brightness is not None:
            picture = brightness(picture)
        return normalize(np.asarray(picture), spec), target[0].numpy().astype(np.float32)

    return apply


def _plain(spec: PreprocessSpec):
    return lambda image, mask: (normalize(image, spec), mask.astype(np.float32))


# ---------------------------------------------------------------------------------------
# Loss and scores


def segment_loss(logits: torch.Tensor, target: torch.Tensor, *, dice_weight: float = 1.0,
                 per_image: bool = False) -> torch.Tensor:
    """BCE + soft Dice. The Dice is over the batch (`dice_loss: batch`: nodule-free images
    count through BCE and through the Dice's false positives; a large nodule weighs more
    than a small one) or the mean of each image's own Dice over the images with a nodule
    (`dice_loss: image`: every nodule counts the same, as in the mean Dice scored)."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    prob = torch.sigmoid(logits)
    if not per_image:
        inter = (prob * target).sum()
        return bce + dice_weight * (1 - (2 * inter + 1) / (prob.sum() + target.sum() + 1))
    dims = tuple(range(1, prob.dim()))
    inter, total = (prob * target).sum(dims), (prob + target).sum(dims)
    has = target.sum(dims) > 0
    if not bool(has.any()):
        return bce
    dice = 1 - (2 * inter[has] + 1) / (total[has] + 1)
    return bce + dice_weight * dice.mean()


def mask_scores(pred: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """(Dice, IoU) of two boolean masks; both empty gives (1, 1)."""
    inter = float(np.logical_and(pred, true).sum())
    total = float(pred.sum() + true.sum())
    union = total - inter
    if total == 0:
        return 1.0, 1.0
    return 2 * inter / total, inter / union


def _val_metrics(prob: np.ndarray, masks: Sequence[np.ndarray], threshold: float
                 ) -> dict[str, float]:
    dices, ious, false_pos, empty = [], [], 0, 0
    for p, m in zip(prob, masks):
        pred, true = p >= threshold, m > 0
        if true.any():
            d, i = mask_scores(pred, true)
            dices.append(d)
            ious.append(i)
        else:
            empty += 1
            false_pos += int(pred.any())
    return {"dice": float(np.mean(dices)) if dices else float("nan"),
            "iou": float(np.mean(ious)) if ious else float("nan"),
            "fp_rate": false_pos / empty if empty else float("nan")}


# ---------------------------------------------------------------------------------------
# Fit


@dataclass
class SegmentFit:
    history: list[dict[str, Any]]
    best_epoch: int
    best_metrics: dict[str, float]
    best_state: dict[str, torch.Tensor]
    last_state: dict[str, torch.Tensor]
    seconds: float
    train_images_per_s: float


def _encoder_stages(model) -> list[torch.nn.Module]:
    return list(model.encoder.blocks)


def _set_trainable(model, stages: int) -> list[torch.nn.Parameter]:
    """Freeze the encoder except its top `stages` blocks (-1: all); the decoder trains."""
    for p in model.parameters():
        p.requires_grad_(False)
    blocks = _encoder_stages(model)
    top = blocks if stages < 0 else blocks[len(blocks) - min(stages, len(blocks)):]
    if stages < 0:
        top = [model.encoder]
    params = [p for module in [model.decoder, *top] for p in module.parameters()]
    for p in params:
        p.requires_grad_(True)
    return params


@torch.no_grad()
def encode_pairs(model, pairs: Sequence[tuple[np.ndarray, np.ndarray]], transform, device,
                batch_size: int, desc: str, progress: bool):
    """Encoder features (float16, CPU) and the masks, for every pair through `transform`."""
    model.eval()
    feats: list[list[torch.Tensor]] = []
    targets = []
    for start in tqdm(range(0, len(pairs), batch_size), desc=desc, unit="batch",
                      disable=not progress, leave=False):
        xs, ys = zip(*(transform(*pair) for pair in pairs[start:start + batch_size]))
        x = torch.from_numpy(np.stack(xs)).to(device)
        feats.append([f.half().cpu() for f in model.encode(x)])
        targets.append(torch.from_numpy(np.stack(ys)))
    levels = [torch.cat([batch[i] for batch in feats]) for i in range(len(feats[0]))]
    return levels, torch.cat(targets)


def fit_segmenter(model, spec: PreprocessSpec, config: TrainConfig,
                  train_pairs: Sequence[tuple[np.ndarray, np.ndarray]],
                  val_pairs: Sequence[tuple[np.ndarray, np.ndarray]], *, progress: bool = True,
                  on_epoch: Callable[[dict[str, Any]], None] | None = None,
                  early_stopping: bool = True, encoded: tuple[list, list] | None = None
                  ) -> SegmentFit:
    """Train `model` in place through the config's phases (decoder alone on cached encoder
    features while the encoder is frozen; then, in two-stage or finetune, the top `unfreeze`
    encoder stages too, on augmented images). The model ends with the best weights (val
    Dice, or val loss with monitor: loss) loaded; without early stopping, the last.

    `encoded` = (train passes [(levels, masks)], val levels) from `encode_pairs` with this
    model's (frozen) encoder: cross-validation encodes every image once for all folds. Only
    for `mode: frozen`: features cached from an encoder that then trains would not be the
    final model's (configs/localiser_frozen.yaml is the frozen recipe)."""
    if encoded is not None and config.mode != "frozen":
        raise ConfigError(f"config: cached encoder features need mode frozen, not "
                          f"{config.mode!r} (the encoder trains; see "
                          "configs/localiser_frozen.yaml)")
    device = select_device(config)
    to_device(model, device)
    chunk = inference_batch(config.batch_size, device)  # no-gradient passes' batch
    generator = torch.Generator().manual_seed(config.seed)
    augment = joint_transform(spec, config) if config.augment else _plain(spec)
    plain = _plain(spec)
    size = tuple(spec.input_size)
    history: list[dict[str, Any]] = []
    best_value, best_epoch, best_metrics = None, 0, {}
    best_state = last_state = None
    started, seen, train_seconds, epoch_no = time.perf_counter(), 0, 0.0, 0
    val_x = torch.from_numpy(np.stack([plain(*p)[0] for p in val_pairs]))
    val_masks = [p[1] for p in val_pairs]
    val_cache = mirror_cache = None

    for phase in phases_for(config):
        params = _set_trainable(model, phase.trainable)
        frozen = phase.trainable == 0
        # The decoder starts from scratch and takes the head's rate; the pretrained encoder
        # stages, when they train, the (lower) base rate.
        decoder = {id(p) for p in model.decoder.parameters()}
        groups = [{"params": [p for p in params if id(p) in decoder], "lr": phase.head_lr},
                  {"params": [p for p in params if id(p) not in decoder], "lr": phase.base_lr}]
        optimizer = torch.optim.AdamW([g for g in groups if g["params"]],
                                      weight_decay=config.weight_decay)
        steps = math.ceil(len(train_pairs) / config.batch_size)
        total = max(1, phase.epochs * steps)
        warmup = min(total - 1, int(config.warmup_epochs * steps))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s, w=warmup, t=total: (
            (s + 1) / (w + 1) if s < w else 0.5 * (1 + math.cos(math.pi * min(1.0, (s - w) / max(1, t - w))))))
        passes = max(1, config.aug_passes if config.augment else 1)
        caches = []
        if frozen and encoded is not None:
            caches, val_cache = encoded
            passes = len(caches)
        elif frozen:
            caches = [encode_pairs(model, train_pairs, augment, device, chunk,
                                  f"{phase.name}: caching pass {p + 1}/{passes}", progress)
                      for p in range(passes)]
            if val_cache is None:
                val_cache = encode_pairs(model, val_pairs, plain, device, chunk,
                                        "caching val", progress)[0]
        if frozen and model.mirror and mirror_cache is None:
            # A mirroring model is scored on val as it will answer: both views decoded.
            mirror_cache = encode_pairs(model, _mirrored(val_pairs), plain, device, chunk,
                                        "caching mirrored val", progress)[0]
        stale = 0
        bar = tqdm(range(phase.epochs), desc=f"train {phase.name}", unit="epoch",
                   disable=not progress)
        for local in bar:
            epoch_no += 1
            t0 = time.perf_counter()
            model.train()
            if frozen or config.freeze_bn != "false":
                # Batch-norm statistics of a pretrained encoder stay put on small batches.
                model.encoder.eval()
            total_loss, count = 0.0, 0
            order = torch.randperm(len(train_pairs), generator=generator)
            for start in range(0, len(order), config.batch_size):
                idx = order[start:start + config.batch_size]
                if len(idx) < 2:
                    continue  # batch-norm cannot train on a single image
                if frozen:
                    levels, targets = caches[local % passes]
                    feats = [level[idx].to(device).float() for level in levels]
                    y = targets[idx].to(device)
                    logits = model.decode(feats, size)
                else:
                    xs, ys = zip(*(augment(*train_pairs[int(i)]) for i in idx))
                    x, y = torch.from_numpy(np.stack(xs)).to(device), torch.from_numpy(np.stack(ys)).to(device)
                    logits = model(x)
                loss = segment_loss(logits[:, 0], y, per_image=config.dice_loss == "image")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                total_loss += loss.item() * len(idx)
                count += len(idx)
            train_seconds += time.perf_counter() - t0
            seen += count
            prob, val_loss = _val_predict(model, val_x, val_masks, device, chunk,
                                          size, val_cache if frozen else None,
                                          per_image=config.dice_loss == "image",
                                          mirror_cache=mirror_cache if frozen else None)
            metrics = {"loss": val_loss, **_val_metrics(prob, val_masks, config.threshold)}
            row = {"epoch": epoch_no, "phase": phase.name, "lr": optimizer.param_groups[0]["lr"],
                   "train_loss": total_loss / max(count, 1),
                   **{f"val_{k}": v for k, v in metrics.items()},
                   "seconds": time.perf_counter() - t0}
            history.append(row)
            value = -val_loss if config.monitor == "loss" else np.nan_to_num(metrics["dice"])
            if best_value is None or value > best_value + 1e-6:
                best_value, best_epoch, best_metrics, stale = value, epoch_no, metrics, 0
                best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
            else:
                stale += 1
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_dice=f"{metrics['dice']:.3f}")
            if on_epoch is not None:
                on_epoch(row)
            if early_stopping and config.patience and stale >= config.patience:
                break
        bar.close()
        last_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if early_stopping and best_state is not None:
            model.load_state_dict(best_state)
    if not early_stopping:
        best_state, best_epoch = last_state, history[-1]["epoch"]
        best_metrics = {k[4:]: v for k, v in history[-1].items() if k.startswith("val_")}
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    return SegmentFit(history, best_epoch, best_metrics, best_state, last_state,
                      time.perf_counter() - started,
                      seen / train_seconds if train_seconds > 0 else 0.0)


def _mirrored(pairs: Sequence[tuple[np.ndarray, np.ndarray]]
              ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each (image, mask) pair flipped left to right."""
    return [(np.ascontiguousarray(image[:, ::-1]), np.ascontiguousarray(mask[:, ::-1]))
            for image, mask in pairs]


@torch.no_grad()
def _val_predict(model, val_x, val_masks, device, batch_size, size, cache, *,
                 per_image: bool = False, mirror_cache=None) -> tuple[np.ndarray, float]:
    """Val probabilities and loss: from cached encoder features when `cache` is given
    (with `mirror_cache`, those of the mirrored images, averaged as a mirroring model
    does), else from the images through the model."""
    from ..models.segmentation import mirrored_mean

    def decode(levels, start: int) -> torch.Tensor:
        return model.decode([level[start:start + batch_size].to(device).float()
                             for level in levels], size)

    model.eval()
    probs, loss, n = [], 0.0, 0
    for start in range(0, len(val_x), batch_size):
        if cache is not None:
            logits = decode(cache, start)
            if mirror_cache is not None:
                logits = mirrored_mean(logits, decode(mirror_cache, start))
        else:
            logits = model(val_x[start:start + batch_size].to(device))
        y = torch.from_numpy(np.stack(val_masks[start:start + batch_size]).astype(np.float32))
        loss += float(segment_loss(logits[:, 0].cpu(), y, per_image=per_image)) * len(y)
        n += len(y)
        probs.append(torch.sigmoid(logits[:, 0]).cpu().numpy())
    return np.concatenate(probs), loss / max(n, 1)


def fit_min_score(probs: Sequence[np.ndarray], masks: Sequence[np.ndarray], *,
                  threshold: float, min_region_px: int) -> dict[str, Any]:
    """The minimum region score that best separates val images with a nodule from those
    without: each image's best region score (mean probability, as `nodule_from_mask` keeps
    regions), then the cut with the largest found-rate on nodule images minus found-rate
    on nodule-free ones, taken midway between neighbouring scores; the lowest such cut on a
    tie, and 0 (keep every region) when val lacks either kind of image."""
    from ..inference.localiser import nodule_from_mask

    best, has = [], []
    for prob, mask in zip(probs, masks):
        _, nodule = nodule_from_mask(prob >= threshold, prob, min_region_px=min_region_px)
        best.append(max((r["score"] for r in nodule["regions"]), default=0.0) if nodule else 0.0)
        has.append(bool(np.asarray(mask).any()))
    best_scores, with_nodule = np.array(best, np.float64), np.array(has, bool)
    if with_nodule.all() or not with_nodule.any():
        return {"min_score": 0.0, "fitted": False,
                "why": "val has no nodule-free image" if with_nodule.all()
                else "val has no image with a nodule"}
    levels = np.unique(best_scores[best_scores > 0])
    cuts = np.concatenate([[0.0], (levels[:-1] + levels[1:]) / 2])

    def rates(cut: float) -> tuple[float, float]:
        found = (best_scores >= cut) & (best_scores > 0)  # an image without a region: none
        return float(found[with_nodule].mean()), float(found[~with_nodule].mean())

    def youden(cut: float) -> float:
        hit, false_alarm = rates(cut)
        return hit - false_alarm

    cut = float(max(cuts, key=lambda c: (round(youden(c), 9), -c)))
    hit, false_alarm = rates(cut)
    hit0, false_alarm0 = rates(0.0)
    return {"min_score": cut, "fitted": True,
            "val_found_rate_with_nodule": round(hit, 4),
            "val_false_positive_rate": round(false_alarm, 4),
            "without_min_score": {"val_found_rate_with_nodule": round(hit0, 4),
                                  "val_false_positive_rate": round(false_alarm0, 4)},
            "val_images": {"with_nodule": int(with_nodule.sum()),
                           "without_nodule": int((~with_nodule).sum())}}


@torch.no_grad()
def predict_probabilities(model, spec: PreprocessSpec, images: Sequence[np.ndarray], *,
                          batch_size: int = 16) -> np.ndarray:
    """Nodule probability (N x H x W at the input size) of input-size uint8 images."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.stack([normalize(im, spec) for im in images[start:start + batch_size]]))
        out.append(torch.sigmoid(model(x.to(device))[:, 0]).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, *spec.input_size), np.float32)


# ---------------------------------------------------------------------------------------
# The run folder


def _plot(history: Sequence[dict[str, Any]], folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    epochs = [row["epoch"] for row in history]
    for name, series in {"loss": [("train_loss", "train"), ("val_loss", "val")],
                         "dice": [("val_dice", "val Dice"), ("val_iou", "val IoU")]}.items():
        fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
        for key, label in series:
            ax.plot(epochs, [row[key] for row in history], marker=".", label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(folder / f"{name}.png")
        plt.close(fig)


def train_segmenter(dataset: str | os.PathLike[str], config: TrainConfig,
                    out: str | os.PathLike[str], *, progress: bool = True,
                    image_cache: MutableMapping[tuple, Any] | None = None) -> TrainResult:
    """Train the localiser `config` (task: segment) on the dataset's masks."""
    from ..models.segmentation import create_segmenter
    from .checkpoint import save_checkpoint

    config.validate()
    out = Path(out)
    root, train_s, val_s, unknown = read_segment_rows(dataset, train_split=config.train_split,
                                                      val_split=config.val_split)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    seed_everything(config.seed)
    spec = make_segment_spec(config)
    model = create_segmenter(config.model, weights=config.weights, **config.model_kwargs)
    t_img, t_mask, kept_t, skip_t = load_pairs(train_s, spec, cache=image_cache,
                                               progress=progress, desc="train images")
    v_img, v_mask, kept_v, skip_v = load_pairs(val_s, spec, cache=image_cache,
                                               progress=progress, desc="val images")
    skipped = skip_t + skip_v
    if len(t_img) < 2 or not v_img:
        raise InputError(f"{root}: too few usable masks (train {len(t_img)}, val {len(v_img)})")
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "config.yaml")
    train_kept, val_kept = [train_s[i] for i in kept_t], [val_s[i] for i in kept_v]
    summary = {"dataset": str(root), "task": "segment",
               "train": {"images": len(t_img), "with_nodule": int(sum(m.any() for m in t_mask))},
               "val": {"images": len(v_img), "with_nodule": int(sum(m.any() for m in v_mask))},
               "patients": {"train": len({s.patient_id for s in train_kept}),
                            "val": len({s.patient_id for s in val_kept})},
               "unknown_masks": unknown, "skipped_images": len(skipped)}
    history: list[dict[str, Any]] = []

    def on_epoch(row: dict[str, Any]) -> None:
        history.append(row)
        write_history(history, out / "history.csv")

    fit = fit_segmenter(model, spec, config, list(zip(t_img, t_mask)), list(zip(v_img, v_mask)),
                        progress=progress, on_epoch=on_epoch)
    if config.min_score == "auto":
        scored = fit_min_score(predict_probabilities(model, spec, v_img), v_mask,
                               threshold=config.threshold, min_region_px=config.min_region_px)
    else:
        scored = {"min_score": float(config.min_score), "fitted": False, "why": "config"}
    ckpt = dict(model_name=config.model, model_kwargs=config.model_kwargs, class_names=[],
                preprocess=spec.to_dict(), config=config.to_dict(), data_summary=summary,
                task="segment", localiser={"min_score": scored["min_score"],
                                           "min_score_fit": scored})
    save_checkpoint(out / "checkpoints" / "best.pt", fit.best_state, epoch=fit.best_epoch,
                    val_metrics=_finite(fit.best_metrics), **ckpt)
    last = history[-1]
    save_checkpoint(out / "checkpoints" / "last.pt", fit.last_state, epoch=last["epoch"],
                    val_metrics=_finite({k[4:]: v for k, v in last.items() if k.startswith("val_")}),
                    **ckpt)
    _plot(history, out / "curves")
    (out / "summary.json").write_text(json.dumps({
        "eutirads_version": __version__, "task": "segment", "model": config.model,
        "mode": config.mode, "best_epoch": fit.best_epoch,
        "best_val_metrics": _finite(fit.best_metrics), "epochs_run": len(history),
        "seconds": round(fit.seconds, 1), "train_images_per_s": round(fit.train_images_per_s, 1),
        "min_score": scored, "data": summary, "skipped": skipped}, indent=2) + "\n",
        encoding="utf-8")
    return TrainResult(out, [], fit.best_epoch, _finite(fit.best_metrics), len(history), skipped,
                       fit.seconds, fit.train_images_per_s)


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    """Metrics without NaN (a val split without nodule-free images has no fp_rate)."""
    return {k: float(v) for k, v in metrics.items() if v == v}
