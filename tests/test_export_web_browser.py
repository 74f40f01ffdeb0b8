"""The static page in a real browser (Debian's chromium through Playwright), served from a
loopback port: the JavaScript preprocessing equals Python's to the bit, the page's
probabilities equal `eutirads predict`'s, nothing is requested after load, and bad input
gets a clear message without an uncaught error."""

from __future__ import annotations

import base64
import functools
import http.server
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eutirads.cli import main
from eutirads.imageio import load_rgb
from eutirads.preprocess import PreprocessSpec, crop_box, prepare

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
TOLERANCE = 1e-3
FINISHED = "body[data-state=done], body[data-state=rejected]"


def _tiny_bundle(out: Path, *, tta: bool) -> Path:
    torch = pytest.importorskip("torch", reason="making a bundle needs the training extra")
    from eutirads.export import export_model
    from eutirads.models import create_model

    torch.manual_seed(0)
    model = create_model("seed-cnn", num_classes=5, weights="none", filters=(8, 16), dense=16)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):  # more than identity layers
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    with torch.no_grad():
        # Larger logits: probabilities far from uniform, so small errors would show.
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.mul_(8.0)
    spec = PreprocessSpec(input_size=(64, 80), class_names=tuple("12345"))
    return export_model(model.eval(), spec, out, name="tiny", model_name="seed-cnn",
                        extra={"tta": tta})


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return _tiny_bundle(tmp_path_factory.mktemp("web") / "bundle", tta=True)


def _dark_spot_localiser():
    """A fixed localiser: the nodule logit rises where the 9x9 neighbourhood is dark
    (hypoechoic), as a crude segmenter would. Enough regions to test every step."""
    import torch

    pool = torch.nn.AvgPool2d(9, stride=1, padding=4, count_include_pad=False)
    conv = torch.nn.Conv2d(3, 1, 1)
    with torch.no_grad():
        conv.weight.fill_(-4.0 / 3)
        conv.bias.fill_(-3.0)
    return torch.nn.Sequential(pool, conv).eval()


@pytest.fixture(scope="module")
def full_bundle(tmp_path_factory, phantom_images):
    """Every part a bundle may hold: a localiser whose box crops the classifier's input,
    descriptor heads with the rule as the category source, a temperature, a
    low-confidence threshold and an out-of-distribution reference."""
    torch = pytest.importorskip("torch", reason="making a bundle needs the training extra")
    from eutirads.categories import DESCRIPTORS
    from eutirads.export.exporter import Component, export_models
    from eutirads.models import create_model
    from eutirads.preprocess import prepare as prepare_input

    torch.manual_seed(1)
    model = create_model("seed-cnn", num_classes=5, weights="none", filters=(8, 16), dense=16,
                         descriptors={n: len(v) for n, v in DESCRIPTORS.items()}).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.mul_(6.0)
    spec = PreprocessSpec(input_size=(64, 80), crop="roi", roi_margin=0.3,
                          class_names=tuple("12345"))
    # The OOD reference: pooled features of half the phantom images; the threshold at the
    # median distance of the other half, so some images are flagged and some not.
    def pooled(images):
        x = torch.from_numpy(np.stack([prepare_input(load_rgb(i), spec) for i in images]))
        with torch.no_grad():
            f = model.forward_features(x).mean(dim=(2, 3))
        return torch.nn.functional.normalize(f, dim=1).numpy()

    reference, others = pooled(phantom_images[:5]), pooled(phantom_images[5:])
    distances = 1 - np.sort(others @ reference.T, axis=1)[:, -2]
    settings = {
        "descriptors": {n: list(v) for n, v in DESCRIPTORS.items()},
        "abstention": {"calibration": {"temperature": 1.7}, "abstain": {"low_confidence": 0.3},
                       "ood": {"k": 2, "threshold": float(np.median(distances)),
                               "reference": reference},
                       "category_source": {"default": "rule"}}}
    localiser = Component(_dark_spot_localiser(),
                          PreprocessSpec(input_size=(96, 128), mean=(0.5,) * 3, std=(0.25,) * 3),
                          "dark-spots", settings={"threshold": 0.5, "min_region_px": 12})
    bundle = export_models(tmp_path_factory.mktemp("web") / "full", name="full",
                           classifier=Component(model, spec, "seed-cnn", settings=settings),
                           localiser=localiser)
    _split_abstentions(bundle, phantom_images)
    return bundle


def _split_abstentions(bundle: Path, images: list[Path]) -> None:
    """Set the OOD threshold at the median distance of `images` as the predictor sees them,
    and the low-confidence one at the median confidence of those left: each check then
    fires on some images and not on others."""
    from eutirads.inference import Predictor, load_image

    predictor = Predictor(bundle)
    distances, confidences = [], []
    for image in images:
        pixels = load_image(image)
        found = predictor.localiser.find(pixels).nodule
        _, tensor, _ = predictor.prepare(pixels, box=found["box"] if found else None)
        distances.append(predictor.abstain_rule.distance(predictor.run_all(tensor[None])["features"]))
        confidences.append(predictor.predict(pixels, heatmap=False).confidence)
    threshold = float(np.median(distances))
    kept = [c for c, d in zip(confidences, distances) if d <= threshold]
    meta = json.loads((bundle / "bundle.json").read_text())
    classifier = meta["components"]["classifier"]
    classifier["ood"]["threshold"] = threshold
    classifier["abstain"]["low_confidence"] = float(np.median(kept))
    (bundle / "bundle.json").write_text(json.dumps(meta))


MEASURED_NAMES = ("echogenicity", "composition", "margins", "echogenic_foci")


@pytest.fixture(scope="module")
def measured_bundle(tmp_path_factory, phantom_images):
    """A classifier with all five descriptor heads (category from its head), the dark-spot
    localiser and a measured component for four of the descriptors with its own category
    source ("combined"): the page must replace those four heads and switch the source,
    as the Predictor does. The measured heads are random linear maps of the phantom
    images' standardised measures, so their answers vary from image to image."""
    torch = pytest.importorskip("torch", reason="making a bundle needs the training extra")
    from eutirads.categories import DESCRIPTORS
    from eutirads.export.exporter import Component, export_models
    from eutirads.inference import Predictor, load_image
    from eutirads.inference.measured import measure_inputs
    from eutirads.models import create_model
    from eutirads.models.nodule_features import FEATURE_NAMES, MeasuredDescriptors, measure

    base = tmp_path_factory.mktemp("measured")
    grid = (96, 128)
    localiser = Component(_dark_spot_localiser(),
                          PreprocessSpec(input_size=grid, mean=(0.5,) * 3, std=(0.25,) * 3),
                          "dark-spots", settings={"threshold": 0.5, "min_region_px": 12})
    outline = Predictor(export_models(base / "outline", name="outline",
                                      localiser=localiser)).localiser
    measures = []
    for image in phantom_images:
        pixels = load_image(image)
        found = outline.find(pixels)
        inputs = measure_inputs(pixels, found.probability, crop_box(pixels, outline.spec), grid)
        gray, prob, scale = (np.array(v) for v in inputs)  # writable, as torch wants
        measures.append(measure(gray[:, 0], prob[:, 0], scale)[0])
    measures = np.asarray(measures)
    rng = np.random.default_rng(3)
    heads = {n: (rng.normal(0, 0.4, (len(DESCRIPTORS[n]), len(FEATURE_NAMES))),
                 rng.normal(0, 0.5, len(DESCRIPTORS[n]))) for n in MEASURED_NAMES}
    module = MeasuredDescriptors(measures.mean(0), np.maximum(measures.std(0), 0.1), heads).eval()
    torch.manual_seed(2)
    model = create_model("seed-cnn", num_classes=5, weights="none", filters=(8, 16), dense=16,
                         descriptors={n: len(v) for n, v in DESCRIPTORS.items()}).eval()
    spec = PreprocessSpec(input_size=(64, 80), crop="roi", roi_margin=0.3,
                          class_names=tuple("12345"))
    return export_models(
        base / "bundle", name="measured", localiser=localiser,
        classifier=Component(model, spec, "seed-cnn",
                             settings={"descriptors": {n: list(v) for n, v in DESCRIPTORS.items()}}),
        measured=(module, {"grid": list(grid), "category_source": "combined"}))


@pytest.fixture(scope="module")
def site(bundle, tmp_path_factory):
    from eutirads.export.web import export_web

    return export_web(bundle, tmp_path_factory.mktemp("web") / "site")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".mjs": "text/javascript", ".wasm": "application/wasm"}

    def log_message(self, *args):  # keep pytest's output clean
        pass


def _serve(folder: Path):
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


@pytest.fixture(scope="module")
def url(site):
    server, address = _serve(site)
    yield address
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not shutil.which(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not found (install Debian's chromium package)")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


class Page:
    """A page with every console error, uncaught exception and request recorded."""

    def __init__(self, browser, url: str, **context):
        self.context = browser.new_context(**context)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(url)
        # A site with a service worker reloads itself once first: wait across that.
        self.page.wait_for_selector("body[data-state=ready], body[data-state=failed]", state="attached")
        self.ready = self.page.evaluate("window.eutiradsPage.ready")

    def classify(self, image: Path) -> dict | None:
        self.page.evaluate("document.body.dataset.state = 'ready'")
        self.page.set_input_files("#file", str(image))
        self.page.locator(FINISHED).wait_for()
        return self.page.evaluate("window.eutiradsPage.last")

    def text(self, selector: str) -> str:
        return self.page.locator(selector).inner_text()

    def close(self):
        self.context.close()


@pytest.fixture
def open_page(browser, url):
    pages = []

    def _open(address: str = url, **context) -> Page:
        page = Page(browser, address, **context)
        pages.append(page)
        return page

    yield _open
    for page in pages:
        page.close()


@pytest.fixture(scope="module")
def phantom_images(tmp_path_factory):
    from eutirads.phantom import generate_dataset

    out = tmp_path_factory.mktemp("phantom")
    generate_dataset(out, n=10, seed=7)
    images = sorted(out.glob("*/*.png"))
    assert len(images) == 10
    return images


def _cli_predictions(capsys, bundle: Path, images: list[Path]) -> list[dict]:
    code = main(["predict", str(bundle), *map(str, images), "--json"])
    out = capsys.readouterr().out
    assert code == 0
    return json.loads(out)["predictions"]


def _assert_same_answers(page: Page, capsys, bundle: Path, images: list[Path]) -> None:
    expected = _cli_predictions(capsys, bundle, images)
    for image, want in zip(images, expected):
        got = page.classify(image)
        assert got is not None, page.text("#message")
        assert got["label"] == want["label"] and got["name"] == want.get("name")
        assert got["crop_box"] == want.get("crop_box")
        for name, p in want.get("probabilities", {}).items():
            assert abs(got["probabilities"][name] - p) < TOLERANCE, (image.name, name)
        for key in ("box_source", "abstain", "abstain_reason", "rule_path", "category_source"):
            assert got.get(key) == want.get(key), (image.name, key)
        for name, head in (want.get("descriptors") or {}).items():
            assert got["descriptors"][name]["value"] == head["value"], (image.name, name)
            for value, p in head["probabilities"].items():
                assert abs(got["descriptors"][name]["probabilities"][value] - p) < TOLERANCE
        for key, source in (want.get("category_sources") or {}).items():
            assert got["category_sources"][key]["label"] == source["label"], (image.name, key)
            for name, p in source["probabilities"].items():
                assert abs(got["category_sources"][key]["probabilities"][name] - p) < TOLERANCE
        assert set(got.get("descriptors") or {}) == set(want.get("descriptors") or {})
        if "nodule" in want:
            _assert_same_nodule(got["nodule"], want["nodule"])
    assert page.errors == []


def _assert_same_nodule(got: dict | None, want: dict | None) -> None:
    """The localiser's nodule: the same box and regions, axes and scores to rounding."""
    assert (got is None) == (want is None)
    if want is None:
        return
    assert got["box"] == want["box"] and len(got["regions"]) == len(want["regions"])
    assert abs(got["score"] - want["score"]) <= 2e-4
    for a, b in zip(got["regions"], want["regions"]):
        assert a["box"] == b["box"] and a["area_px"] == b["area_px"]
        assert abs(a["score"] - b["score"]) <= 2e-4
        assert abs(a["long_axis_px"] - b["long_axis_px"]) <= 0.1
        # Equally long diameters (common on a pixel grid) are a tie that qhull's vertex
        # order breaks in Python and the hull's sort order in the page: the short axis,
        # measured across the chosen one, may differ by a pixel.
        assert abs(a["short_axis_px"] - b["short_axis_px"]) <= 1.0
        assert a["contour"] == b["contour"]


def test_the_page_gives_the_cli_answer_on_phantom_images(open_page, bundle, phantom_images,
                                                         capsys):
    page = open_page()
    assert page.ready is True, page.text("#message")
    _assert_same_answers(page, capsys, bundle, phantom_images)
    # the answer on the page is the model's, in words
    label = page.page.evaluate("window.eutiradsPage.last.label")
    assert page.text("#category").startswith(f"EU-TIRADS {label} · ")
    assert page.text("#advice") != ""


def test_the_page_gives_the_cli_answer_on_ddti_images(open_page, bundle, ddti_dir, capsys):
    images = sorted((ddti_dir / "raw_jpg").glob("*.jpg"))[:10]
    assert len(images) == 10
    page = open_page()
    _assert_same_answers(page, capsys, bundle, images)


def test_an_exif_orientation_is_ignored_as_python_ignores_it(open_page, bundle, phantom_images,
                                                              tmp_path, capsys):
    """Browsers turn a photo by its EXIF orientation; Pillow does not. The page decodes the
    pixels as stored, so its answer stays the CLI's (a phone photo of a screen, say)."""
    pixels = Image.open(phantom_images[4]).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    turned_jpeg, turned_png = tmp_path / "turned.jpg", tmp_path / "turned.png"
    pixels.save(turned_jpeg, quality=95, exif=exif)
    pixels.save(turned_png, exif=exif)
    page = open_page()
    _assert_same_answers(page, capsys, bundle, [turned_jpeg, turned_png])
    assert page.page.eval_on_selector("#image", "e => [e.width, e.height]") == list(pixels.size)


def test_an_image_dropped_on_the_page_is_classified(open_page, phantom_images):
    page = open_page()
    page.page.evaluate(
        """async (b64) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const data = new DataTransfer();
            data.items.add(new File([bytes], "scan.png", { type: "image/png" }));
            document.getElementById("drop").dispatchEvent(
                new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
        }""", base64.b64encode(phantom_images[1].read_bytes()).decode())
    page.page.locator(FINISHED).wait_for()
    assert page.page.evaluate("window.eutiradsPage.last.label") in "12345"
    assert page.page.locator("#result").is_visible() and page.errors == []


def _abstention_images(folder: Path) -> list[Path]:
    """A blank frame, a checkerboard and a photo-like picture, as PNGs."""
    ys, xs = np.indices((400, 400))
    board = (((ys // 40) + (xs // 40)) % 2 * 255).astype(np.uint8)
    photo = np.zeros((360, 480, 3), np.uint8)
    photo[:180] = (90, 150, 235)
    photo[180:] = (60, 160, 50)
    photo += np.random.default_rng(0).integers(0, 60, photo.shape, dtype=np.uint8)
    images = {"blank.png": np.full((300, 400), 128, np.uint8), "board.png": board,
              "photo.png": photo}
    for name, pixels in images.items():
        Image.fromarray(pixels).save(folder / name)
    return [folder / name for name in images]


def test_every_part_of_a_bundle_gives_the_cli_answer(open_page, full_bundle, phantom_images,
                                                     tmp_path, capsys):
    """Localiser, descriptor heads, the rule, calibration and each abstention reason."""
    from eutirads.export.web import export_web

    site = export_web(full_bundle, tmp_path / "site")
    server, address = _serve(site)
    try:
        page = open_page(address)
        assert page.ready is True, page.text("#message")
        images = phantom_images + _abstention_images(tmp_path)
        expected = _cli_predictions(capsys, full_bundle, images)
        reasons = [e.get("abstain_reason") for e in expected]
        assert {"no-ultrasound-area", "not-ultrasound", "out-of-distribution", "low-confidence",
                None} <= set(reasons)
        assert any(e.get("nodule") for e in expected) and any(e.get("rule_path") for e in expected)
        _assert_same_answers(page, capsys, full_bundle, images)
        # an abstention shows the model's guess as such, and no advice
        abstained = next(i for i, e in zip(images, expected) if e.get("abstain") and e.get("label"))
        got = page.classify(abstained)
        assert page.text("#category").startswith("No answer for this image (the model's guess: ")
        assert page.page.locator("#guideline").is_hidden() and page.page.locator("#abstain").is_visible()
        # what the page shows for the last phantom image with a rule
        last = next(i for i, e in zip(images, expected) if e.get("rule_path"))
        got = page.classify(last)
        assert page.text("#rule-path") == got["rule_path"]
        assert page.page.locator("#descriptors tr").count() == 5
        assert "rule on the descriptors: " in page.text("#sources") and "(shown)" in page.text("#sources")
        if got["nodule"]:
            assert page.page.locator("#nodule li").count() == len(got["nodule"]["regions"])
    finally:
        server.shutdown()


def test_measured_descriptors_give_the_cli_answer(open_page, measured_bundle, phantom_images,
                                                  tmp_path, capsys):
    """A bundle with a measured component: the page runs measured.onnx on the localiser's
    outline, its descriptors replace the classifier's heads and its category source is
    used, so descriptors, category and probabilities are `eutirads predict`'s; and nothing
    is requested after load."""
    from eutirads.export.web import export_web

    site = export_web(measured_bundle, tmp_path / "site")
    assert (site / "model/measured.onnx").is_file()
    # the same bundle without its measured component: the classifier's own heads
    plain = tmp_path / "plain"
    shutil.copytree(measured_bundle, plain)
    meta = json.loads((plain / "bundle.json").read_text())
    del meta["components"]["measured"]
    (plain / "bundle.json").write_text(json.dumps(meta))
    server, address = _serve(site)
    try:
        page = open_page(address)
        assert page.ready is True, page.text("#message")
        loaded = len(page.requests)
        assert any(r.endswith("model/measured.onnx") for r in page.requests[:loaded])
        expected = _cli_predictions(capsys, measured_bundle, phantom_images)
        own = _cli_predictions(capsys, plain, phantom_images)
        assert all(e["category_source"] == "combined" for e in expected)
        assert all(o["category_source"] == "head" for o in own)
        # the test can fail: the measured answers are not the classifier's heads'
        differ = [abs(e["descriptors"][n]["probabilities"][v] - o["descriptors"][n]["probabilities"][v])
                  for e, o in zip(expected, own) for n in MEASURED_NAMES
                  for v in e["descriptors"][n]["probabilities"]]
        assert max(differ) > 0.1
        assert len({e["descriptors"]["echogenicity"]["value"] for e in expected}) > 1 or \
            len({e["descriptors"]["margins"]["value"] for e in expected}) > 1
        assert any(e.get("nodule") for e in expected)
        _assert_same_answers(page, capsys, measured_bundle, phantom_images)
        assert page.requests[loaded:] == []
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def outline_bundle(tmp_path_factory, phantom_images):
    """A classifier (whole image area), the dark-spot localiser and an outline component
    (ImageNet Lite0 features pooled in the localiser's map, a random linear head on their
    standardised values, so its answers vary), its low-confidence threshold at the median
    of its confidences: the page must answer with it wherever a nodule is found, as the
    Predictor does."""
    torch = pytest.importorskip("torch", reason="making a bundle needs the training extra")
    from eutirads.export.exporter import Component, export_models
    from eutirads.inference import Predictor, load_image
    from eutirads.models import create_model
    from eutirads.models.outline_pooling import OutlineCategory
    from eutirads.models.segmentation import create_encoder
    from eutirads.training.outline import outline_features

    base = tmp_path_factory.mktemp("outline")
    localiser = Component(_dark_spot_localiser(),
                          PreprocessSpec(input_size=(96, 128), mean=(0.5,) * 3, std=(0.25,) * 3),
                          "dark-spots", settings={"threshold": 0.5, "min_region_px": 12})
    finder = Predictor(export_models(base / "loc", name="loc", localiser=localiser)).localiser
    images = [load_image(i) for i in phantom_images]
    maps = [(finder.find(p).probability, crop_box(p, finder.spec)) for p in images]
    features = outline_features(images, maps, "tf_efficientnet_lite0", finder.spec)
    rng = np.random.default_rng(4)
    weight = rng.normal(0, 0.3, (5, features.shape[1])).astype(np.float32)
    module = OutlineCategory(create_encoder("tf_efficientnet_lite0", "imagenet"),
                             features.mean(0), np.maximum(features.std(0), 1e-3), weight,
                             rng.normal(0, 0.5, 5).astype(np.float32)).eval()
    torch.manual_seed(5)
    model = create_model("seed-cnn", num_classes=5, weights="none", filters=(8, 16), dense=16).eval()
    spec = PreprocessSpec(input_size=(64, 80), crop="full", class_names=tuple("12345"))
    summary = {"class_names": list("12345"), "encoder": "tf_efficientnet_lite0",
               "grid": [96, 128], "temperature": 1.6, "low_confidence": 0.0, "default": True}
    bundle = export_models(base / "bundle", name="outline", localiser=localiser,
                           classifier=Component(model, spec, "seed-cnn"),
                           outline=(module, summary))
    predictor = Predictor(bundle)
    confidences = [predictor.predict(p, heatmap=False) for p in images]
    confidences = [r.confidence for r in confidences if r.category_source == "outline"]
    meta = json.loads((bundle / "bundle.json").read_text())
    meta["components"]["outline"]["low_confidence"] = float(np.median(confidences))
    (bundle / "bundle.json").write_text(json.dumps(meta))
    return bundle


def test_the_outline_category_gives_the_cli_answer(open_page, outline_bundle, phantom_images,
                                                   tmp_path, capsys):
    """A bundle with an outline component: the page runs outline.onnx on the localiser's
    input and map and answers with it where a nodule is found, with its own temperature
    and low-confidence threshold, as `eutirads predict` does."""
    from eutirads.export.web import export_web

    site = export_web(outline_bundle, tmp_path / "site")
    server, address = _serve(site)
    try:
        page = open_page(address)
        assert page.ready is True, page.text("#message")
        assert any(r.endswith("model/outline.onnx") for r in page.requests)
        expected = _cli_predictions(capsys, outline_bundle, phantom_images)
        # the test can fail: the outline answers on some images, and abstains on some
        used = [e for e in expected if e.get("category_source") == "outline"]
        assert used and len({e["label"] for e in used}) > 1
        assert any(e["abstain_reason"] == "low-confidence" for e in used)
        assert any(not e["abstain"] for e in used)
        assert all(e["category_sources"]["outline"]["label"] == e["label"] for e in used)
        _assert_same_answers(page, capsys, outline_bundle, phantom_images)
    finally:
        server.shutdown()


def test_the_measured_inputs_equal_python_s_to_the_bit(open_page):
    """measured.js's measureInputs against inference.measured.measure_inputs: the same
    gray, probability and scale arrays, shrinking and enlarging the crop."""
    from eutirads.inference.measured import measure_inputs
    from eutirads.region import Box

    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, (150, 210, 3), dtype=np.uint8)
    prob = rng.random((150, 210), dtype=np.float32)
    page = open_page()
    for box, grid in [(Box(10, 7, 201, 140), (96, 128)), (Box(40, 30, 90, 70), (64, 72)),
                      (Box(0, 0, 210, 150), (150, 210))]:
        got = page.page.evaluate(
            """async ([rgb64, prob64, w, h, box, grid]) => {
                const M = await import("./measured.js");
                const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                const prob = new Float32Array(bytes(prob64).buffer);
                const [x0, y0, x1, y1] = box;
                const out = M.measureInputs(bytes(rgb64), w, h, prob, {x0, y0, x1, y1}, grid);
                const b64 = (a) => { const raw = new Uint8Array(a.buffer); let s = "";
                                     for (const v of raw) s += String.fromCharCode(v); return btoa(s); };
                return [b64(out.gray), b64(out.prob), b64(out.scale)];
            }""", [base64.b64encode(pixels.tobytes()).decode(),
                   base64.b64encode(prob.astype("<f4").tobytes()).decode(), 210, 150,
                   list(box), list(grid)])
        want = measure_inputs(pixels, prob, box, grid)
        for data, array in zip(got, want):
            assert np.array_equal(np.frombuffer(base64.b64decode(data), "<f4"), array.ravel()), box
    assert page.errors == []


def test_a_localiser_only_bundle_outlines_the_nodule_as_the_cli_does(open_page, phantom_images,
                                                                     tmp_path, capsys):
    pytest.importorskip("torch", reason="making a bundle needs the training extra")
    from eutirads.export.exporter import Component, export_models
    from eutirads.export.web import export_web

    bundle = export_models(tmp_path / "bundle", name="outline", localiser=Component(
        _dark_spot_localiser(), PreprocessSpec(input_size=(72, 112), resize="letterbox"),
        "dark-spots", settings={"threshold": 0.6, "min_region_px": 20}))
    server, address = _serve(export_web(bundle, tmp_path / "site"))
    try:
        page = open_page(address)
        assert page.ready is True, page.text("#message")
        _assert_same_answers(page, capsys, bundle, phantom_images[:5])
        got = page.page.evaluate("window.eutiradsPage.last")
        assert got["label"] is None and "nodule" in got
        assert page.page.locator("#probabilities-box").is_hidden()
        assert page.page.locator("#guideline").is_hidden()
    finally:
        server.shutdown()


def test_the_page_drops_regions_below_the_minimum_score_as_the_cli_does(open_page,
                                                                       phantom_images,
                                                                       tmp_path, capsys):
    pytest.importorskip("torch", reason="making a bundle needs the training extra")
    from eutirads.export.exporter import Component, export_models
    from eutirads.export.web import export_web
    from eutirads.inference import Predictor, load_image

    bundle = export_models(tmp_path / "bundle", name="outline", localiser=Component(
        _dark_spot_localiser(), PreprocessSpec(input_size=(72, 112), resize="letterbox"),
        "dark-spots", settings={"threshold": 0.6, "min_region_px": 20}))
    localiser = Predictor(bundle).localiser
    scores = sorted(r["score"] for image in phantom_images[:5]
                    for r in (localiser.find(load_image(image)).nodule or {}).get("regions", []))
    assert len(scores) >= 2 and scores[0] < scores[-1]
    meta = json.loads((bundle / "bundle.json").read_text())
    # Between two regions' scores: some regions go, some stay.
    meta["components"]["localiser"]["min_score"] = (scores[0] + scores[-1]) / 2
    (bundle / "bundle.json").write_text(json.dumps(meta))
    server, address = _serve(export_web(bundle, tmp_path / "site"))
    try:
        page = open_page(address)
        assert page.ready is True, page.text("#message")
        _assert_same_answers(page, capsys, bundle, phantom_images[:5])
    finally:
        server.shutdown()


def test_the_javascript_preprocessing_equals_python_to_the_bit(open_page, phantom_images,
                                                               tmp_path):
    """pipeline.js on the very pixels Python decoded: the same crop box and the same model
    input, for each crop and resize rule."""
    specs = [PreprocessSpec(input_size=(224, 224), class_names=("1", "2")),
             PreprocessSpec(input_size=(64, 80), resize="letterbox", class_names=("1", "2")),
             PreprocessSpec(input_size=(96, 160), crop="roi", roi_margin=0.3,
                            class_names=("1", "2"))]
    page = open_page()
    for image in phantom_images[:4]:
        pixels = load_rgb(image)
        for spec in specs:
            nodule = [100, 80, 261, 190] if spec.crop == "roi" else None
            got = page.page.evaluate(
                """async ([b64, w, h, spec, nodule]) => {
                    const P = await import("./pipeline.js");
                    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                    const {tensor, box} = P.prepare(bytes, w, h, spec, nodule);
                    const raw = new Uint8Array(tensor.buffer);
                    let s = ""; for (const v of raw) s += String.fromCharCode(v);
                    return {box: [box.x0, box.y0, box.x1, box.y1], tensor: btoa(s)};
                }""",
                [base64.b64encode(pixels.tobytes()).decode(), pixels.shape[1], pixels.shape[0],
                 spec.to_dict(), nodule])
            assert got["box"] == list(crop_box(pixels, spec, nodule))
            tensor = np.frombuffer(base64.b64decode(got["tensor"]), "<f4")
            assert np.array_equal(tensor, prepare(pixels, spec, nodule).ravel())
    assert page.errors == []


def test_the_search_on_a_cleaned_frame_gives_the_full_search_s_box(open_page, phantom_images,
                                                                 ddti_dir):
    """findImageAreaCleaned searches a cleaned frame only around its area: the same box as
    the full search (and as Python's on the cleaned frame), or the same refusal."""
    from eutirads.region import NoImageAreaError, find_image_area

    images = phantom_images[:5] + sorted((ddti_dir / "raw_jpg").glob("*.jpg"))[:15]
    page = open_page()
    for image in images:
        pixels = load_rgb(image)
        a = find_image_area(pixels)
        cleaned = np.zeros_like(pixels)
        cleaned[a.y0:a.y1, a.x0:a.x1] = pixels[a.y0:a.y1, a.x0:a.x1]
        try:
            want = list(find_image_area(cleaned))
        except NoImageAreaError:
            want = "refused"
        got = page.page.evaluate(
            """async ([b64, w, h, area]) => {
                const P = await import("./pipeline.js");
                const rgb = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                const box = (f) => { try { const b = f(); return [b.x0, b.y0, b.x1, b.y1]; }
                                     catch (e) { return e instanceof P.NoImageAreaError ? "refused" : String(e); } };
                const [x0, y0, x1, y1] = area;
                return [box(() => P.findImageArea(rgb, w, h)),
                        box(() => P.findImageAreaCleaned(rgb, w, h, {x0, y0, x1, y1}))];
            }""", [base64.b64encode(cleaned.tobytes()).decode(), pixels.shape[1], pixels.shape[0],
                   list(a)])
        assert got == [want, want], image.name
    assert page.errors == []


def test_the_heatmap_matches_the_python_predictor(open_page, bundle, phantom_images):
    from eutirads.inference import Predictor, load_image

    image = phantom_images[3]
    page = open_page()
    page.classify(image)
    heat = np.asarray(page.page.evaluate("Array.from(window.eutiradsPage.heat)"), np.float32)
    expected = Predictor(bundle).predict(load_image(image)).heatmap  # as `eutirads predict`
    assert heat.shape == (expected.size,) and expected.max() > 0.5
    assert np.abs(heat - expected.ravel()).max() < 1e-3


def test_nothing_is_requested_after_load_and_the_csp_forbids_it(open_page, phantom_images):
    page = open_page()
    loaded = len(page.requests)
    assert any(r.endswith("model/model.onnx") for r in page.requests)
    assert any(r.endswith(".wasm") for r in page.requests)
    for image in phantom_images[:3]:
        assert page.classify(image) is not None
    page.page.click("#card-box summary")
    page.page.select_option("#lang", "es")
    assert page.requests[loaded:] == []
    csp = page.page.eval_on_selector_all(
        "meta[http-equiv='Content-Security-Policy']", "els => els.map(e => e.content)")
    assert "connect-src 'self'" in csp[0] and "default-src 'none'" in csp[0]
    assert csp[-1] == "connect-src 'none'"
    # and the page itself cannot send anything anywhere any more
    outcome = page.page.evaluate(
        "fetch('site.json').then(() => 'sent', () => 'refused')")
    assert outcome == "refused"
    assert page.requests[loaded:] == []


def test_bad_input_gets_a_clear_message_and_no_uncaught_error(open_page, phantom_images,
                                                              tmp_path):
    not_image = tmp_path / "notes.png"
    not_image.write_bytes(b"these are notes, not pixels\n" * 10)
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(phantom_images[0].read_bytes()[:400])
    huge = tmp_path / "huge.png"
    Image.new("L", (8000, 7000)).save(huge)  # 56 MP, over the 50 MP limit; a small file
    page = open_page()
    cases = [(not_image, "not a JPEG or PNG image"), (truncated, "cannot be read"),
             (huge, "too large (8000x7000 pixels")]
    for image, reason in cases:
        assert page.classify(image) is None
        assert page.page.evaluate("document.body.dataset.state") == "rejected"
        assert reason in page.text("#message")
        assert page.page.locator("#result").is_hidden()
    # the page still works after them, and the same file chosen twice is read twice
    assert page.classify(phantom_images[0]) is not None
    assert page.classify(phantom_images[0]) is not None
    assert page.page.locator("#message").is_hidden()
    assert page.errors == []


def test_a_service_worker_gives_threads_where_the_host_sends_no_isolation_headers(
        open_page, bundle, phantom_images, tmp_path, capsys):
    """GitHub Pages sends no COOP/COEP headers: with --service-worker the page installs
    isolate.js, reloads once and runs the model on threads, with the CLI's answers and
    still no request after load. A browser that blocks service workers gets one thread."""
    from eutirads.export.web import export_web

    plain = export_web(bundle, tmp_path / "plain")
    assert not (plain / "isolate.js").exists()
    site = export_web(bundle, tmp_path / "site", service_worker=True)
    assert (site / "isolate.js").is_file()
    server, address = _serve(site)  # a plain static server: no isolation headers
    try:
        page = open_page(address)
        assert page.ready is True, page.text("#message")
        cores = page.page.evaluate("navigator.hardwareConcurrency")
        assert page.page.evaluate("self.crossOriginIsolated") is True
        assert page.page.evaluate("window.eutiradsPage.threads") == min(4, cores)
        loaded = len(page.requests)
        _assert_same_answers(page, capsys, bundle, phantom_images[:4])
        assert page.requests[loaded:] == []

        blocked = open_page(address, service_workers="block")
        assert blocked.ready is True, blocked.text("#message")
        assert blocked.page.evaluate("self.crossOriginIsolated") is False
        assert blocked.page.evaluate("window.eutiradsPage.threads") == 1
        _assert_same_answers(blocked, capsys, bundle, phantom_images[:2])
    finally:
        server.shutdown()


def test_a_component_the_page_has_no_steps_for_is_loaded_too(site, tmp_path, open_page,
                                                             phantom_images):
    """The page loads every component site.json lists (a session each), so a new model
    in a bundle needs only the code that uses it."""
    other = tmp_path / "site"
    shutil.copytree(site, other)
    description = json.loads((other / "site.json").read_text())
    shutil.copy(other / "model/model.onnx", other / "model/extra.onnx")
    description["components"] = {"extra": {"model": "model/extra.onnx", "preprocess": None,
                                           "input": "input"}}
    (other / "site.json").write_text(json.dumps(description))
    server, address = _serve(other)
    try:
        page = open_page(address)
        assert page.ready is True, page.text("#message")
        assert page.page.evaluate("window.eutiradsPage.components") == ["extra"]
        assert any(r.endswith("model/extra.onnx") for r in page.requests)
        assert page.classify(phantom_images[0]) is not None and page.errors == []
    finally:
        server.shutdown()


def test_a_site_of_another_bundle_format_says_so(browser, site, tmp_path, open_page):
    other = tmp_path / "site"
    shutil.copytree(site, other)
    description = json.loads((other / "site.json").read_text())
    description["bundle_format"] = 99
    (other / "site.json").write_text(json.dumps(description))
    server, address = _serve(other)
    try:
        page = open_page(address)
        assert page.ready is False
        assert page.page.evaluate("document.body.dataset.state") == "failed"
        assert "bundle format 99 (this page reads 1, 2)" in page.text("#message")
        assert page.errors == []
    finally:
        server.shutdown()


def test_the_page_speaks_the_browsers_language_and_switches(open_page, phantom_images):
    page = open_page(locale="es-ES")
    page.classify(phantom_images[2])
    label = page.page.evaluate("window.eutiradsPage.last.label")
    spanish = {"1": "Normal", "2": "Benigno", "3": "Riesgo bajo", "4": "Riesgo intermedio",
               "5": "Riesgo alto"}
    assert page.text("#category") == f"EU-TIRADS {label} · {spanish[label]}"
    assert "nunca sustituye" in page.text("#disclaimer")
    page.page.select_option("#lang", "en")
    from eutirads.categories import CATEGORIES

    assert page.text("#category") == f"EU-TIRADS {label} · {CATEGORIES[int(label)].name}"
    assert "never replaces" in page.text("#disclaimer")
    assert page.page.evaluate("document.documentElement.lang") == "en"


def test_the_rule_in_the_browser_gives_python_s_category_and_path(open_page):
    import itertools

    from eutirads.categories import (DESCRIPTORS, NoduleFeatures, classify, rule_path,
                                     rule_table)

    combos = [dict(zip(DESCRIPTORS, values))
              for values in itertools.product(*DESCRIPTORS.values())] + [{"nodule": False}]
    page = open_page()
    # The page's network is closed after load: the test hands it the table site.json holds
    # (test_export_web checks they are the same).
    got = page.page.evaluate(
        """async ([table, combos]) => {
            const G = await import("./guideline.js");
            return combos.map((v) => [G.ruleCategory(table, v), G.rulePath(table, v)]);
        }""", [rule_table(), combos])
    for values, (category, path) in zip(combos, got):
        features = NoduleFeatures(**values)
        assert category == classify(features) and path == rule_path(features), values
    assert page.errors == []


def test_opened_as_a_file_the_page_says_to_use_a_web_server(browser, site):
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto((site / "index.html").as_uri())
        page.wait_for_timeout(500)
        note = page.locator("#no-script")
        assert note.is_visible() and "through a web" in note.inner_text()
    finally:
        context.close()
