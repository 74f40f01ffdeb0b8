"""A real browser (Debian's chromium through Playwright) logs in, uploads an image, draws a
box with the pointer, and reads the category and the guideline's advice off the page."""

from __future__ import annotations

import re
import shutil

import pytest

import diagnosis_samples as samples
from diagnosis_fixtures import *  # noqa: F401,F403 - fixtures

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
def browser(monkeypatch):
    # Playwright's sync API keeps an event loop on this thread; the test's own ORM calls are
    # still synchronous, so Django's async-safety check would refuse them.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not shutil.which(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not found (install Debian's chromium package)")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def test_a_radiologist_uploads_an_image_and_reads_category_and_advice(browser, live_server,
                                                                      users, dx_home,
                                                                      tiny_bundle, tmp_path):
    from conftest import PASSWORD
    from eutirads.categories import CATEGORIES, fna_advice
    from eutirads.web.diagnosis.models import Prediction
    from eutirads.web.diagnosis.services import register_bundle

    register_bundle(tiny_bundle, activate=True)
    image = tmp_path / "upload.png"
    image.write_bytes(samples.png_bytes(samples.ultrasound_like(480, 320)))

    page = browser.new_page(viewport={"width": 390, "height": 844}, has_touch=True)  # a phone
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.goto(f"{live_server.url}/diagnosis/")
    page.set_input_files("#dx-file", str(image))
    canvas = page.locator("#dx-canvas")
    canvas.wait_for(state="visible")
    area = canvas.bounding_box()
    page.mouse.move(area["x"] + area["width"] * 0.25, area["y"] + area["height"] * 0.25)
    page.mouse.down()
    page.mouse.move(area["x"] + area["width"] * 0.75, area["y"] + area["height"] * 0.75, steps=4)
    page.mouse.up()
    assert page.input_value("#dx-x0") != "" and int(page.input_value("#dx-x1")) > 300
    page.fill("#dx-size", "12")
    page.click("#dx-submit")

    heading = page.locator("#dx-category").inner_text()
    label = int(re.match(r"EU-TIRADS (\d) · (.+)", heading).group(1))
    assert heading.endswith(CATEGORIES[label].name)
    assert page.locator("#dx-advice").inner_text() == fna_advice(label, 12.0)
    # the heatmap layer follows the opacity slider
    page.locator("#dx-opacity").fill("20")
    assert page.eval_on_selector("#dx-heat", "e => e.style.opacity") == "0.2"
    stored = Prediction.objects.get()
    assert stored.label == str(label) and stored.box is not None and stored.diameter_mm == 12.0
    # "Draw a box on this image": the result's re-encoded image goes back into the form
    page.click("#dx-reuse")
    canvas.wait_for(state="visible")
    assert page.eval_on_selector("#dx-file", "e => e.files.length") == 1
    assert page.eval_on_selector("#dx-canvas", "e => [e.width, e.height]") == [480, 320]


def _phantom_with_nodule(folder):
    """A phantom screen of category 5 (or 4) and its true mask."""
    import numpy as np

    from eutirads.data.manifest import load_mask, read_manifest
    from eutirads.phantom import generate_dataset

    generate_dataset(folder, n=10, seed=7, progress=False, workers=1)
    rows = [r for r in read_manifest(folder) if r["label"] in ("5", "4")]
    row = rows[0]
    return folder / row["path"], np.asarray(load_mask(folder, row))


def test_done_when_outline_descriptors_decision_history_pdf_and_abstention(
        browser, live_server, users, dx_home, tmp_path, active_full):
    """Issue 13's done-when, in Chromium, with a real format-2 bundle (localiser and
    descriptor heads): a phantom upload shows outline, size, descriptors, category and
    advice; the radiologist changes one descriptor and saves;
    history shows both decisions; the PDF downloads and holds them; a checkerboard
    abstains with a reason and no advice."""
    from conftest import PASSWORD
    from eutirads.web.diagnosis.models import Decision, Prediction

    pdfium = pytest.importorskip("pypdfium2", reason="pypdfium2 reads the downloaded PDF")
    pytest.importorskip("weasyprint", reason="the PDF report needs WeasyPrint")
    screen, _mask = _phantom_with_nodule(tmp_path / "phantom")
    page = browser.new_page(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.goto(f"{live_server.url}/diagnosis/")
    page.set_input_files("#dx-file", str(screen))
    page.fill("#dx-mmpp", "0.1")
    page.click("#dx-submit")
    # outline and calipers drawn, size measured on the outline, descriptors, category
    page.screenshot(path=str(tmp_path / "result.png"), full_page=True)  # for a person
    contours = page.locator("#dx-overlay .dx-contour").count()
    assert contours >= 1 and page.locator("#dx-overlay .dx-caliper").count() == 2 * contours
    size = page.locator("#dx-size-text").inner_text()
    assert re.match(r"\d+(\.\d)? mm \(measured on the model's outline\)", size), size
    predicted = Prediction.objects.get().descriptor_values
    assert predicted["echogenicity"].replace("_", " ") in \
        page.locator("#dx-descriptors").inner_text()
    assert page.locator("#dx-rule-path").inner_text().startswith("Rule:")
    heading = page.locator("#dx-category").inner_text()
    assert re.match(r"EU-TIRADS [1-5] · ", heading)
    assert page.locator("#dx-advice").inner_text().startswith("FNA is")
    # the model's box is editable: it comes back into the form, ready to redraw
    page.click("#dx-reuse")
    page.locator("#dx-canvas").wait_for(state="visible")
    page.wait_for_function("document.getElementById('dx-x0').value !== ''")
    auto = Prediction.objects.get().box
    assert [int(page.input_value(f"#dx-{k}")) for k in ("x0", "y0", "x1", "y1")] == \
        [auto[k] for k in ("x0", "y0", "x1", "y1")]
    # the radiologist changes one descriptor and saves
    changed = "mildly_hypoechoic" if predicted["echogenicity"] != "mildly_hypoechoic" \
        else "isoechoic"
    page.select_option("#dx-d-echogenicity", changed)
    page.click("#dx-decision-save")
    page.wait_for_selector("#dx-decided")
    assert "echogenicity" in page.locator("#dx-differs").inner_text()
    prediction = Prediction.objects.get()
    decision = Decision.objects.get()
    assert decision.descriptors["echogenicity"] == changed
    assert prediction.descriptors["echogenicity"]["value"] == predicted["echogenicity"]
    # history shows both
    page.goto(f"{live_server.url}/diagnosis/history/")
    row = page.locator("#dx-history tbody tr").first
    assert row.locator(".dx-h-decision").inner_text().strip() == decision.label
    assert "differs" in row.locator(".dx-h-agreement").inner_text()
    # the PDF downloads and holds both decisions
    page.goto(f"{live_server.url}/diagnosis/history/{prediction.pk}/")
    with page.expect_download() as info:
        page.click("#dx-report-pdf")
    pdf = (tmp_path / "report.pdf")
    info.value.save_as(pdf)
    document = pdfium.PdfDocument(str(pdf))
    first = document[0]
    first.render(scale=1).to_pil().save(tmp_path / "report.png")
    text = " ".join(first.get_textpage().get_text_range().split())
    assert f"Model: EU-TIRADS {prediction.label}" in text
    assert predicted["echogenicity"].replace("_", " ") in text
    assert changed.replace("_", " ") in text
    assert f"EU-TIRADS {decision.label}" in text and "alice" in text
    assert "measured on the model's outline" in text
    # a checkerboard abstains, with a reason and no advice
    board = tmp_path / "board.png"
    board.write_bytes(samples.png_bytes(samples.checkerboard()))
    page.goto(f"{live_server.url}/diagnosis/")
    page.set_input_files("#dx-file", str(board))
    page.click("#dx-submit")
    assert "does not look like" in page.locator("#dx-abstain-reason").inner_text()
    assert page.locator("#dx-advice").count() == 0
    assert "FNA is" not in page.locator("#dx-result").inner_text()
