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
        if "nodule" in want:
            _assert_same_nodule(got["nodule"], want["nodule"])
    assert page.errors == []


def _assert_same_nodule(got: dict | None, want: dict | None) -> None:
    """The localiser's nodule: the same box and regions; axes and scores to rounding (the
    two runtimes' maps may differ in the last bits at the threshold)."""
    assert (got is None) == (want is None)
    if want is None:
        return
    assert got["box"] == want["box"] and len(got["regions"]) == len(want["regions"])
    for a, b in zip(got["regions"], want["regions"]):
        assert a["box"] == b["box"] and a["area_px"] == b["area_px"]
        assert abs(a["score"] - b["score"]) <= 2e-4
        assert abs(a["long_axis_px"] - b["long_axis_px"]) <= 0.1
        assert abs(a["short_axis_px"] - b["short_axis_px"]) <= 0.1
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


def test_the_heatmap_matches_the_python_predictor(open_page, bundle, phantom_images):
    from eutirads.inference import Predictor

    image = phantom_images[3]
    page = open_page()
    page.classify(image)
    heat = np.asarray(page.page.evaluate("Array.from(window.eutiradsPage.heat)"), np.float32)
    expected = Predictor(bundle).predict(image).heatmap
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
    # the page still works after them
    assert page.classify(phantom_images[0]) is not None
    assert page.page.locator("#message").is_hidden()
    assert page.errors == []


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
