"""The model factory, the offline EfficientNet-Lite weights and checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from eutirads.errors import ModelError
from eutirads.models import create_model, default_preprocess
from eutirads.models.lite_weights import lite_weights_file, remap_state_dict
from eutirads.training.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint

torch.set_num_threads(2)

# EfficientNet-Lite0 in the weight package's own layout: per block (stride, has expansion).
LITE0_STRIDES = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]


def _same_pad(x: torch.Tensor, k: int, s: int) -> torch.Tensor:
    """TensorFlow 'SAME' padding, the layout the weights were trained with."""
    h, w = x.shape[-2:]
    ph = max((math.ceil(h / s) - 1) * s + k - h, 0)
    pw = max((math.ceil(w / s) - 1) * s + k - w, 0)
    return F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])


def _reference_lite0(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """The original EfficientNet-Lite0 forward pass, written directly on the package's
    state-dict keys (independent of timm), to check the remapped timm model against."""
    def bn(t, p):
        return F.batch_norm(t, sd[p + ".running_mean"], sd[p + ".running_var"],
                            sd[p + ".weight"], sd[p + ".bias"], False, 0.0, 1e-3)

    def conv(t, w, s=1, groups=1):
        k = w.shape[-1]
        return F.conv2d(_same_pad(t, k, s), w, stride=s, groups=groups)

    x = F.relu6(bn(conv(x, sd["_conv_stem.weight"], 2), "_bn0"))
    for i, stride in enumerate(LITE0_STRIDES):
        p = f"_blocks.{i}."
        inp = x
        if p + "_expand_conv.weight" in sd:
            x = F.relu6(bn(conv(x, sd[p + "_expand_conv.weight"]), p + "_bn0"))
        dw = sd[p + "_depthwise_conv.weight"]
        x = F.relu6(bn(conv(x, dw, stride, groups=dw.shape[0]), p + "_bn1"))
        x = bn(conv(x, sd[p + "_project_conv.weight"]), p + "_bn2")
        if stride == 1 and x.shape == inp.shape:
            x = x + inp
    x = F.relu6(bn(conv(x, sd["_conv_head.weight"]), "_bn1"))
    return F.linear(x.mean(dim=(2, 3)), sd["_fc.weight"], sd["_fc.bias"])


def _imagenet_picture() -> torch.Tensor:
    """matplotlib's bundled sample photo (Grace Hopper in uniform), scaled to [-1, 1]."""
    cbook = pytest.importorskip("matplotlib.cbook")
    from PIL import Image

    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    image = Image.open(path).convert("RGB").resize((224, 224), Image.Resampling.BILINEAR)
    x = np.asarray(image, np.float32) / 127.5 - 1.0
    return torch.from_numpy(x.transpose(2, 0, 1)[None].copy())


def test_remapped_lite0_classifies_a_photo_like_the_original_package_weights():
    import timm

    source = torch.load(lite_weights_file("tf_efficientnet_lite0"), map_location="cpu",
                        weights_only=True)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)
    model.load_state_dict(remap_state_dict(source, model.state_dict()))
    model.eval()
    x = _imagenet_picture()
    with torch.no_grad():
        ours, original = model(x), _reference_lite0(source, x)
    assert ours.argmax().item() == original.argmax().item() == 652  # military uniform
    torch.testing.assert_close(ours, original, atol=1e-3, rtol=1e-3)


def test_remap_fails_loudly_on_a_shape_mismatch():
    source = {"a": torch.zeros(3, 2), "b": torch.zeros(4)}
    target = {"x": torch.zeros(3, 2), "y": torch.zeros(5)}
    with pytest.raises(ModelError, match="b \\(4,\\) does not fit y \\(5,\\)"):
        remap_state_dict(source, target)


def test_remap_fails_loudly_on_a_different_tensor_count():
    with pytest.raises(ModelError, match="3 source tensors"):
        remap_state_dict({k: torch.zeros(1) for k in "abc"}, {"x": torch.zeros(1)})


def test_default_lite0_loads_offline_imagenet_weights_into_the_backbone():
    model = create_model("tf_efficientnet_lite0", num_classes=5)
    source = torch.load(lite_weights_file("tf_efficientnet_lite0"), weights_only=True)
    torch.testing.assert_close(model.backbone.conv_stem.weight, source["_conv_stem.weight"])


def test_lite2_offline_weights_fit_timms_lite2():
    model = create_model("tf_efficientnet_lite2", num_classes=3)
    source = torch.load(lite_weights_file("tf_efficientnet_lite2"), weights_only=True)
    torch.testing.assert_close(model.backbone.conv_head.weight, source["_conv_head.weight"])


@pytest.mark.parametrize("name", ["seed-cnn", "tf_efficientnet_lite0", "resnet18"])
def test_every_model_exposes_a_feature_map_and_a_linear_head(name):
    model = create_model(name, num_classes=4, weights="none").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.forward_features(x)
        logits = model.forward_head(features)
        # The class-activation map: the head's weights on the feature map, averaged, is the logit.
        cam = torch.einsum("kc,nchw->nkhw", model.head.weight, features)
        torch.testing.assert_close(cam.mean(dim=(2, 3)) + model.head.bias, logits,
                                   atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(model(x), logits)
    assert features.ndim == 4 and logits.shape == (2, 4)
    assert len(model.feature_stages()) >= 3


def test_an_unknown_backbone_is_a_one_line_model_error():
    with pytest.raises(ModelError, match="unknown model 'efficientnet_b99'") as info:
        create_model("efficientnet_b99", num_classes=5)
    assert "\n" not in str(info.value)


def test_seed_cnn_refuses_imagenet_weights():
    with pytest.raises(ModelError, match="from scratch"):
        create_model("seed-cnn", num_classes=5, weights="imagenet")


def test_weights_from_a_local_file_are_loaded(tmp_path):
    first = create_model("seed-cnn", num_classes=3, weights="none")
    torch.save(first.state_dict(), tmp_path / "w.pt")
    second = create_model("seed-cnn", num_classes=3, weights=tmp_path / "w.pt")
    torch.testing.assert_close(second.state_dict()["head.weight"], first.state_dict()["head.weight"])


def test_a_missing_weights_file_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="weights file not found"):
        create_model("resnet18", num_classes=3, weights=tmp_path / "none.pt")


def test_default_preprocess_follows_each_model():
    assert default_preprocess("tf_efficientnet_lite0")["mean"] == (0.5, 0.5, 0.5)
    assert default_preprocess("tf_efficientnet_lite2")["input_size"] == (260, 260)
    assert default_preprocess("seed-cnn")["std"] == (1.0, 1.0, 1.0)
    with pytest.raises(ModelError):
        default_preprocess("no_such_net")


def _save(tmp_path, model, **changes):
    args = dict(model_name="seed-cnn", model_kwargs={"filters": [8, 16], "dense": 16},
                class_names=["2", "3", "4a"], preprocess={"input_size": [32, 32]},
                config={"epochs": 1}, data_summary={"train": 3}, epoch=1,
                val_metrics={"macro_f1": 0.5})
    args.update(changes)
    return save_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt", model, **args)


def test_a_checkpoint_round_trips_from_its_run_folder(tmp_path):
    model = create_model("seed-cnn", num_classes=3, weights="none", filters=[8, 16], dense=16)
    _save(tmp_path, model)
    loaded, payload = load_checkpoint(tmp_path / "run")
    assert not loaded.training
    assert payload["class_names"] == ["2", "3", "4a"] and payload["format_version"] == 1
    x = torch.randn(1, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_a_checkpoint_from_a_newer_format_is_refused(tmp_path):
    model = create_model("seed-cnn", num_classes=3, weights="none", filters=[8, 16], dense=16)
    path = _save(tmp_path, model)
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = 7
    torch.save(payload, path)
    with pytest.raises(ModelError, match="format 7 is not supported"):
        read_checkpoint(path)


def test_a_folder_without_checkpoints_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="no checkpoints"):
        load_checkpoint(tmp_path)
