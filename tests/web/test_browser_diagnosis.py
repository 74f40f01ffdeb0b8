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
