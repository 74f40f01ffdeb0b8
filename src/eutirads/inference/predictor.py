"""`Predictor`: a model bundle run by onnxruntime: the classifier (with heatmaps), the
nodule localiser, or both, the localiser's box then feeding the classifier's crop. Never
imports torch."""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..categories import CATEGORIES, DESCRIPTORS, EU_TIRADS_LABELS
from ..errors import InputError, ModelError, NoImageAreaError
from ..imageio import load_rgb
# crop_box is preprocess's own crop rule: reused, not rewritten, so the heatmap maps back
# through exactly the crop the model saw (a test checks they agree).
from ..preprocess import PreprocessSpec, crop_box, normalize, resize_to_input
from ..region import Box, crop, find_image_area
from .abstention import AbstainRule, apply_temperature
from .bundle import (CARD_FILE, CLASSIFIER, INPUT_NAME, LOCALISER, MEASURED, METADATA_FILE,
                     OUTLINE, OUTPUT_NAMES,
                     blas_threads, component_file, flat_metadata, open_session, read_head,
                     read_metadata)
from .descriptors import CATEGORY_SOURCES, combine, rule_applies, rule_category
from .heatmap import class_activation_map, heatmap_to_image
from .localiser import Localiser, Spacing, mm_or_none
from .measured import Measured
from .outline import Outline

__all__ = ["Prediction", "Predictor", "model_crop_box", "category_name"]

log = logging.getLogger(__name__)

ImageInput = np.ndarray | str | os.PathLike[str] | bytes


# The inference name for preprocess's crop rule (written once, in preprocess).
model_crop_box = crop_box


def category_name(label: str, class_names: Sequence[str]) -> str:
    """The EU-TIRADS name when the model speaks EU-TIRADS (all its classes are 1-5);
    otherwise the label in its own scheme (e.g. DDTI's Kwak TI-RADS "4a")."""
    if set(class_names) <= set(EU_TIRADS_LABELS):
        return f"EU-TIRADS {label}: {CATEGORIES[int(label)].name}"
    return f"TI-RADS {label}"


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


BOX_SOURCES = ("given", "localiser", "none")


@dataclass(frozen=True)
class Prediction:
    """One image's result. `probabilities` follows the model's class order; `heatmap` is
    HxW float32 in [0, 1] at the input image's size (zero outside the crop the model saw);
    `crop_box` is that crop (x0, y0, x1, y1). A localiser-only bundle gives label and name
    None, no probabilities, and the image area as crop_box.

    With a localiser: `nodule` is {"box", "score", "regions": [{"box", "area_px", "score",
    "long_axis_px", "short_axis_px", "long_axis_mm", "short_axis_mm", "contour"}]} in the
    input image's pixels, or None with `nodule_reason`; `mask` HxW uint8 0/255 (every
    region). `box_source` says which box the classifier's crop used: "given" (the caller's),
    "localiser" or "none"."""

    label: str | None
    name: str | None
    probabilities: dict[str, float]
    crop_box: tuple[int, int, int, int]
    heatmap: np.ndarray | None = field(default=None, repr=False, compare=False)
    nodule: dict[str, Any] | None = None
    nodule_reason: str | None = None
    box_source: str = "none"
    localised: bool = False
    mask: np.ndarray | None = field(default=None, repr=False, compare=False)
    # With descriptor heads: {name: {"value", "probabilities"}}; the category from each
    # source ({"head": {"label", "probabilities"}, "rule": ..., "combined": ..., and
    # "outline" when the bundle reads the category inside the localiser's outline and a
    # nodule was found}) and which one `label` is; the rule's reasoning (EU-TIRADS only).
    descriptors: dict[str, Any] | None = None
    category_sources: dict[str, Any] | None = None
    category_source: str = "head"
    rule_path: str | None = None
    # An abstention is a result: label and probabilities stay for whoever looks, but no
    # consumer shows advice for it. Reasons: abstention.ABSTAIN_REASONS.
    abstain: bool = False
    abstain_reason: str | None = None

    @property
    def confidence(self) -> float | None:
        return self.probabilities[self.label] if self.label is not None else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, without the heatmap and the mask. `nodule`/`nodule_reason` only when
        the bundle has a localiser; `descriptors` only with descriptor heads;
        `category_sources` and `category_source` with descriptor heads or the outline's
        category; `rule_path` only for EU-TIRADS bundles with all five."""
        out = {"label": self.label, "name": self.name, "confidence": self.confidence,
               "probabilities": dict(self.probabilities), "crop_box": list(self.crop_box),
               "box_source": self.box_source, "abstain": self.abstain,
               "abstain_reason": self.abstain_reason}
        if self.localised:
            out["nodule"] = self.nodule
            if self.nodule is None:
                out["nodule_reason"] = self.nodule_reason
        if self.descriptors is not None:
            out["descriptors"] = self.descriptors
        if self.category_sources is not None:
            out["category_sources"] = self.category_sources
            out["category_source"] = self.category_source
        if self.rule_path is not None:
            out["rule_path"] = self.rule_path
        return out


def _as_rgb(image: ImageInput, name: str | None) -> np.ndarray:
    if isinstance(image, np.ndarray):
        pixels = image
        if pixels.ndim == 2:
            pixels = np.repeat(pixels[..., None], 3, axis=2)
        if pixels.ndim != 3 or pixels.shape[2] not in (3, 4) or pixels.dtype != np.uint8:
            raise InputError(f"{name or 'image'}: expected an HxW or HxWx3 uint8 array, "
                             f"got {pixels.dtype} {pixels.shape}")
        return np.ascontiguousarray(pixels[..., :3])
    return load_rgb(image, name=name)


class Predictor:
    """A bundle loaded once (one onnxruntime session per model), ready to predict many images.

    >>> predictor = Predictor("bundle")                       # doctest: +SKIP
    >>> result = predictor.predict("nodule.png", box=(120, 80, 260, 190))  # doctest: +SKIP
    """

    def __init__(self, bundle_dir: str | os.PathLike[str], *, threads: int | None = None) -> None:
        self.bundle_dir = Path(bundle_dir)
        self._threads = threads
        self._bundle = read_metadata(self.bundle_dir)
        self._metadata = flat_metadata(self._bundle)
        components = self._bundle["components"]
        self.spec: PreprocessSpec | None = None
        self._session = None
        self.localiser: Localiser | None = (
            Localiser(self.bundle_dir, self._bundle, threads=threads)
            if LOCALISER in components else None)
        # Descriptors measured on the localiser's outline replace the classifier's heads
        # of the same name (inference.measured).
        self.measured: Measured | None = (
            Measured(self.bundle_dir, self._bundle, threads=threads)
            if MEASURED in components and self.localiser is not None else None)
        self.outline: Outline | None = None
        if CLASSIFIER in components:
            self._load_classifier(threads)
            chosen = (components.get(MEASURED) or {}).get("category_source")
            if self.measured is not None and chosen in CATEGORY_SOURCES and self.rule_applies:
                self.category_source = str(chosen)
            # The category read inside the localiser's outline (inference.outline): the
            # answer whenever a nodule is found, when the bundle says it is the default.
            if OUTLINE in components and self.localiser is not None:
                self.outline = Outline(self.bundle_dir, self._bundle, threads=threads)
                if self.outline.class_names != self.class_names:
                    raise ModelError(f"{self.bundle_dir}: the outline component's classes "
                                     f"{self.outline.class_names} differ from the "
                                     f"classifier's {self.class_names}")

    def _load_classifier(self, threads: int | None) -> None:
        meta = self._bundle
        self.spec = PreprocessSpec.load(component_file(self.bundle_dir, meta, CLASSIFIER,
                                                       "preprocess"))
        head = component_file(self.bundle_dir, meta, CLASSIFIER, "cam_head")
        self._weight, self._bias = read_head(self.bundle_dir, head.name)
        if not self.spec.class_names:
            raise ModelError(f"{self.bundle_dir}: the classifier's preprocess file names no "
                             "classes")
        if self._weight.shape[0] != len(self.spec.class_names):
            raise ModelError(f"{self.bundle_dir}: {len(self.spec.class_names)} classes but a "
                             f"head for {self._weight.shape[0]}")
        model = component_file(self.bundle_dir, meta, CLASSIFIER, "model")
        self._session = open_session(model, threads)
        outputs = [o.name for o in self._session.get_outputs()]
        if tuple(outputs[:2]) != OUTPUT_NAMES or self._session.get_inputs()[0].name != INPUT_NAME:
            raise ModelError(f"{model}: expected input {INPUT_NAME!r} and "
                             f"outputs {OUTPUT_NAMES}, found {outputs}")
        settings = meta["components"][CLASSIFIER]
        self._descriptors: dict[str, dict[str, Any]] = dict(settings.get("descriptors") or {})
        for name, head in self._descriptors.items():
            if head.get("output") not in outputs:
                raise ModelError(f"{model}: descriptor head {name!r} has no output "
                                 f"{head.get('output')!r} (outputs: {', '.join(outputs)})")
        self._outputs = list(OUTPUT_NAMES) + [h["output"] for h in self._descriptors.values()]
        self.abstain_rule = AbstainRule.from_settings(settings, self._ood_reference(settings))
        source = str(settings.get("category_source", "head"))
        self.category_source = source if source in CATEGORY_SOURCES else "head"
        if self.category_source != "head" and not self.rule_applies:
            self.category_source = "head"

    def _ood_reference(self, settings: dict[str, Any]) -> np.ndarray | None:
        """The training images' pooled features for the out-of-distribution check."""
        name = (settings.get("ood") or {}).get("reference")
        if not name:
            return None
        if not isinstance(name, str) or Path(name).name != name or name in (".", ".."):
            raise ModelError(f"{self.bundle_dir / METADATA_FILE}: ood reference {name!r} is "
                             "not a plain file name")
        try:
            return np.asarray(np.load(self.bundle_dir / name, allow_pickle=False), np.float32)
        except (OSError, ValueError) as exc:
            raise ModelError(f"{self.bundle_dir / name}: not readable ({type(exc).__name__})") from None

    @property
    def descriptor_names(self) -> list[str]:
        if self.spec is None:
            return []
        measured = list(self.measured.descriptors) if self.measured is not None else []
        return list(self._descriptors) + [n for n in measured if n not in self._descriptors]

    @property
    def rule_applies(self) -> bool:
        """Whether the guideline's rule gives a category here (EU-TIRADS, all descriptors)."""
        return rule_applies(self.class_names, self.descriptor_names)

    @property
    def has_classifier(self) -> bool:
        return self._session is not None

    @property
    def has_localiser(self) -> bool:
        return self.localiser is not None

    @property
    def tta(self) -> bool:
        """Whether predictions average the image and its mirror (the run's `tta` setting)."""
        return bool(self._metadata.get("tta", False))

    @property
    def class_names(self) -> list[str]:
        return list(self.spec.class_names) if self.spec is not None else []

    @property
    def model_card(self) -> str:
        path = self.bundle_dir / CARD_FILE
        return path.read_text(encoding="utf-8") if path.is_file() else ""

    @property
    def metadata(self) -> dict[str, Any]:
        """name, version, created, components, and the classifier's settings beside them
        (model_name, class_names, data_summary, test_metrics, tta...; `bundle.flat_metadata`)."""
        return dict(self._metadata)

    def _need_classifier(self) -> PreprocessSpec:
        if self.spec is None:
            raise ModelError(f"{self.bundle_dir}: this bundle holds no classifier")
        return self.spec

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(logits NxK, features NxCxhxw) for a prepared Nx3xHxW float32 batch."""
        outputs = self.run_all(batch)
        return outputs["logits"], outputs["features"]

    def run_all(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every output of the classifier by name (logits, features, descriptor_<name>)."""
        self._need_classifier()
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return dict(zip(self._outputs,
                        self._session.run(self._outputs, {INPUT_NAME: batch})))

    def prepare(self, image: ImageInput, *, box: Sequence[int] | None = None,
                name: str | None = None, area: Box | None = None
                ) -> tuple[np.ndarray, np.ndarray, Box]:
        """(RGB pixels, model input 3xHxW, crop box): `preprocess.prepare`, with the crop box
        kept so the heatmap can be mapped back. `area`: the image area, when the caller
        found it already (see `preprocess.crop_box`)."""
        spec = self._need_classifier()
        pixels = _as_rgb(image, name)
        crop_box = model_crop_box(pixels, spec, box, area=area)
        tensor = normalize(resize_to_input(crop(pixels, crop_box), spec), spec)
        return pixels, tensor, crop_box

    def predict(self, image: ImageInput, *, box: Sequence[int] | None = None,
                heatmap: bool = True, name: str | None = None,
                pixel_mm: Spacing | Sequence[float] | float | None = None,
                area: Box | None = None) -> Prediction:
        """Category, name, probabilities and (unless heatmap=False) the class-activation
        heatmap of the predicted class at the input image's size (from the unmirrored image
        when the bundle uses mirror test-time augmentation), and with a localiser the nodule
        found. `image` is an HxWx3 (or HxW) uint8 array, a path or encoded bytes; `box` the
        nodule (x0, y0, x1, y1) in the image's pixels (given, it is the classifier's crop;
        else the localiser's box is); `pixel_mm` the (x, y) pixel size in mm (or one number)
        for the nodule's axes in mm; `name` what errors call the image; `area` the image
        area when the caller found it already (the diagnosis server, on a reduced copy)."""
        with blas_threads(self._threads):
            return self._predict(image, box=box, heatmap=heatmap, name=name, pixel_mm=pixel_mm,
                                 area=area)

    def _predict(self, image: ImageInput, *, box: Sequence[int] | None, heatmap: bool,
                 name: str | None, pixel_mm: Spacing | Sequence[float] | float | None,
                 area: Box | None) -> Prediction:
        pixels = _as_rgb(image, name)
        spacing = mm_or_none(pixel_mm)
        if area is None and self.localiser is not None and self.localiser.spec.frame == "detect":
            # Found once for both models (the search is a third of the localiser's cost);
            # crop_box ignores it for a model with frame "none".
            area = crop_box(pixels, self.localiser.spec)
        found = self.localiser.find(pixels, spacing=spacing, area=area) if self.localiser else None
        source = "given" if box is not None else "none"
        if box is None and found is not None and found.nodule is not None:
            box, source = found.nodule["box"], "localiser"
        if self.spec is None or self.spec.crop != "roi":
            source = "none"  # no classifier, or one that reads the whole image area
        extra: dict[str, Any] = {"box_source": source}
        if found is not None:
            extra.update(localised=True, nodule=found.nodule, nodule_reason=found.reason,
                         mask=found.mask)
        if self.spec is None:
            height, width = pixels.shape[:2]
            area = crop_box(pixels, self.localiser.spec, area=area) if self.localiser \
                else Box(0, 0, width, height)
            return Prediction(label=None, name=None, probabilities={}, crop_box=tuple(area),
                              **extra)
        found_area, no_area = (_image_area(pixels, area) if self.spec.frame == "detect"
                               else (area, False))
        _, tensor, crop_box_ = self.prepare(pixels, box=box, area=found_area)
        # Mirror test-time augmentation, as the run was evaluated: one batch of two, each
        # head's softmax averaged over both.
        batch = np.stack([tensor, tensor[:, :, ::-1]]) if self.tta else tensor[None]
        outputs = self.run_all(batch)
        rule = self.abstain_rule
        head = apply_temperature(softmax(outputs["logits"].astype(np.float64)).mean(axis=0),
                                 rule.temperature)
        sources = {"head": head}
        descriptors = None
        rule_text = None
        if self._descriptors or self.measured is not None:
            heads = {name: (list(spec_["values"]),
                            softmax(outputs[spec_["output"]].astype(np.float64)).mean(axis=0))
                     for name, spec_ in self._descriptors.items()}
            # Measured only on a nodule the localiser found: an empty outline measures
            # nothing, and the heads never learned from one.
            if self.measured is not None and found is not None and found.nodule is not None:
                measured_box = crop_box(pixels, self.localiser.spec, area=area)
                for name, logits in self.measured.logits(pixels, found.probability,
                                                         measured_box).items():
                    heads[name] = (list(self.measured.descriptors[name]["values"]),
                                   softmax(logits.astype(np.float64)))
            descriptors, value_probs = {}, {}
            for name, (values, p) in heads.items():
                value_probs[name] = p
                descriptors[name] = {"value": values[int(p.argmax())],
                                     "probabilities": {v: float(x) for v, x in zip(values, p)}}
            # The rule needs every descriptor: with measured ones only (no heads of the
            # classifier's own) and no nodule found, the head answers alone.
            if self.rule_applies and all(name in value_probs for name in DESCRIPTORS):
                rule_label, rule_probs, rule_text = rule_category(value_probs, self.class_names,
                                                                   head)
                sources["rule"] = rule_probs
                sources["combined"] = combine(head, rule_probs)
        if self.outline is not None and found is not None and found.nodule is not None:
            sources["outline"] = self.outline.probabilities(
                pixels, found.probability, crop_box(pixels, self.localiser.spec, area=area),
                self.localiser.spec)
        chosen = self.category_source if self.category_source in sources else "head"
        if "outline" in sources and self.outline.default:
            chosen = "outline"
            rule = dataclasses.replace(rule, low_confidence=self.outline.low_confidence)
        proba = sources[chosen]
        index = int(proba.argmax())
        if chosen == "rule":
            index = self.class_names.index(rule_label)
        label = self.class_names[index]
        category_sources = None
        if descriptors is not None or "outline" in sources:
            category_sources = {}
            for key, p in sources.items():
                top = rule_label if key == "rule" else self.class_names[int(p.argmax())]
                category_sources[key] = {"label": top, "probabilities":
                                         {c: float(x) for c, x in zip(self.class_names, p)}}
        reason = ("no-ultrasound-area" if no_area else
                  rule.reason(pixels=pixels, features=outputs["features"][:1],
                              confidence=float(proba[index])))
        heat = None
        if heatmap:
            cam = class_activation_map(outputs["features"][0], self._weight, index)
            heat = heatmap_to_image(cam, self.spec, crop_box_, pixels.shape)
        return Prediction(label=label, name=category_name(label, self.class_names),
                          probabilities={c: float(p) for c, p in zip(self.class_names, proba)},
                          crop_box=tuple(crop_box_), heatmap=heat, descriptors=descriptors,
                          category_sources=category_sources,
                          category_source=chosen, rule_path=rule_text,
                          abstain=reason is not None, abstain_reason=reason, **extra)


def _image_area(pixels: np.ndarray, area: Box | None) -> tuple[Box | None, bool]:
    """(the image area, whether there is none): the region finder's `NoImageAreaError` (a
    blank frame, a screen of text) is the clean-frame rule's "no ultrasound area". Found
    once here and handed to the crop, so a request pays for one search; a caller that
    found the area already (the diagnosis server) skips it."""
    if area is not None:
        return area, False
    try:
        return find_image_area(pixels), False
    except NoImageAreaError:
        return None, True
    except InputError:
        return None, False
