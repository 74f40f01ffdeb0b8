"""End to end in a real browser (Debian's chromium driven by Playwright) against a live
server: two radiologists label with the keyboard only, a reviewer reads the agreement."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.web.conftest import PASSWORD, make_user, write_dataset

# Expressions for page.wait_for_function are written as functions ("() => ..."): a bare
# expression string is evaluated with eval(), which the app's CSP forbids.
CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is absent "
                       "(install Debian's chromium package)"),
]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are
    # still plain synchronous calls, so Django's async-safety guard can stand down here.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


def log_in(page, base, name):
    page.goto(f"{base}/login/")
    page.fill("#id_username", name)
    page.fill("#id_password", PASSWORD)
    page.press("#id_password", "Enter")
    page.wait_for_url(f"{base}/")


def label_with_keyboard(page, base, keys):
    """Open the reading screen and label one image per (digit, save key)."""
    page.goto(f"{base}/labeling/study/read/")
    page.wait_for_selector("#image:not([hidden])")
    for number, (digit, save_key) in enumerate(keys, start=1):
        before = page.inner_text("#position")
        page.keyboard.press(digit)
        assert page.get_attribute(f'.choice[data-label="{digit}"]', "aria-pressed") == "true"
        page.keyboard.press(save_key)
        # The position is blank while the next image loads (keys are refused then): wait
        # for the next image itself, not just for the old one to go.
        page.wait_for_function(
            "(before) => { const t = document.getElementById('position').textContent;"
            " return t !== before && t !== ''; }", arg=before)
        assert page.inner_text("#status") == "Saved."
        assert page.inner_text("#progress-text").startswith(f"{number} done")


def test_two_readers_label_by_keyboard_and_the_reviewer_sees_their_agreement(
        live_server, browser, tmp_path):
    from eutirads.web.labeling.models import Reading
    from eutirads.web.labeling.project_io import import_project

    for name, role in (("alice", "radiologist"), ("bob", "radiologist"), ("rita", "reviewer")):
        make_user(name, role)
    import_project(write_dataset(tmp_path / "ds", 5), "study", readers=2, progress=False,
                   mode="category", queue_order="manifest")
    base = live_server.url

    page = browser.new_page(viewport={"width": 1366, "height": 820})
    log_in(page, base, "alice")
    label_with_keyboard(page, base, [("3", "Enter"), ("4", "ArrowRight"), ("5", "Enter")])
    shot = tmp_path / "reading-screen.png"
    page.screenshot(path=str(shot))
    if os.environ.get("EUTIRADS_SCREENSHOT_DIR"):  # for a person to look at
        shutil.copy(shot, Path(os.environ["EUTIRADS_SCREENSHOT_DIR"]) / shot.name)
    alice = Reading.objects.filter(reader__username="alice", done=True).order_by("image__position")
    assert [(r.image.position, r.label) for r in alice] == [(1, "3"), (2, "4"), (3, "5")]

    # ← goes back to the last saved image, showing alice's own label; she changes it.
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("() => document.getElementById('position').textContent === 'image #3'")
    assert page.get_attribute('.choice[data-label="5"]', "aria-pressed") == "true"
    page.keyboard.press("4")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.getElementById('position').textContent === 'image #4'")
    # F flags the image as unusable: type the reason, Enter saves.
    page.keyboard.press("f")
    page.keyboard.type("only the isthmus, no nodule in view")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.getElementById('position').textContent === 'image #5'")
    # S skips the last one: nothing is left for alice.
    page.keyboard.press("s")
    page.wait_for_selector("#empty:not([hidden])")
    assert "skipped" in page.inner_text("#progress-text")
    changed = Reading.objects.get(reader__username="alice", image__position=3)
    assert changed.label == "4" and list(changed.history.values_list("label", flat=True)) == ["5", "4"]
    flagged = Reading.objects.get(reader__username="alice", image__position=4)
    assert flagged.flagged and "isthmus" in flagged.flag_reason
    page.click("text=Log out")

    log_in(page, base, "bob")
    label_with_keyboard(page, base, [("3", "Enter"), ("3", "Enter"), ("4", "ArrowRight")])
    bob = Reading.objects.filter(reader__username="bob", done=True).order_by("image__position")
    assert [(r.image.position, r.label) for r in bob] == [(1, "3"), (2, "3"), (3, "4")]
    page.click("text=Log out")

    log_in(page, base, "rita")
    page.goto(f"{base}/labeling/study/agreement/")
    row = page.inner_text("#pairs tbody tr")
    assert "alice" in row and "bob" in row and "\t3\t" in row and "67%" in row
    assert page.inner_text("#fleiss") != "–"
    if os.environ.get("EUTIRADS_SCREENSHOT_DIR"):
        page.screenshot(path=str(Path(os.environ["EUTIRADS_SCREENSHOT_DIR"]) / "agreement.png"),
                        full_page=True)
