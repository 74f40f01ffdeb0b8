"""Structured reading in a real browser (Debian's chromium via Playwright), live server:
a radiologist in Spanish reads phantom images by descriptors with the keyboard only; the
browser's rule agrees with Python on every combination; a slow network never shows a
stale image with saving live; a focused slider keeps its keys; a pinch zooms and a drag
sets window/level; the reading room is dark."""

from __future__ import annotations

import csv
import json
import os
from itertools import product
from pathlib import Path

import pytest

from tests.web.conftest import make_user, write_dataset
from tests.web.test_browser_labeling import ARGS, CHROMIUM, browser, log_in  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is absent "
                       "(install Debian's chromium package)"),
]
RULE_JS = (Path(__file__).resolve().parents[2] / "src/eutirads/web/labeling/static/labeling"
           / "rule.js")


def test_the_browser_rule_agrees_with_python_on_every_descriptor_combination(browser):  # noqa: F811
    from eutirads.categories import DESCRIPTORS, NoduleFeatures, classify, rule_path, rule_table

    names = list(DESCRIPTORS)
    combos = [dict(zip(names, values)) for values in product(*DESCRIPTORS.values())]
    page = browser.new_page()
    page.set_content("<!doctype html><html><body></body></html>")
    page.add_script_tag(path=str(RULE_JS))
    got = page.evaluate("""([table, combos]) => combos.map((c) => [
        window.EutiradsRule.evaluate(table, c, true), window.EutiradsRule.path(table, c, true)])""",
                        [rule_table(), combos])
    expected = [[classify(NoduleFeatures(**c)), rule_path(c)] for c in combos]
    assert len(got) == 360 and got == expected
    assert page.evaluate("(t) => window.EutiradsRule.evaluate(t, {}, false)", rule_table()) == 1
    assert page.evaluate("(t) => window.EutiradsRule.path(t, {}, false)", rule_table()) == \
        rule_path({"nodule": False})
    partial = {k: v for k, v in combos[0].items() if k != "margins"}
    assert page.evaluate("([t, c]) => window.EutiradsRule.evaluate(t, c, true)",
                         [rule_table(), partial]) is None


def _phantom_project(tmp_path, name="fantoma", n=3, readers=1):
    from eutirads.phantom.dataset import generate_dataset
    from eutirads.web.labeling.project_io import import_project

    root = tmp_path / "phantom"
    generate_dataset(root, n=n, seed=3, width=320, height=220, progress=False, workers=1)
    import_project(root, name, readers=readers, progress=False, queue_order="manifest")
    return root


def _wait_position(page, text):
    page.wait_for_function("(t) => document.getElementById('position').textContent === t",
                           arg=text)


def test_a_radiologist_in_spanish_reads_three_phantom_images_by_descriptors_with_the_keyboard(
        live_server, browser, tmp_path):  # noqa: F811
    from eutirads.web.labeling.models import Reading
    from eutirads.web.labeling.project_io import export_project

    make_user("alice", "radiologist")
    root = _phantom_project(tmp_path)
    base = live_server.url
    context = browser.new_context(locale="es-CO", viewport={"width": 1366, "height": 820})
    page = context.new_page()
    log_in(page, base, "alice")
    page.goto(f"{base}/labeling/fantoma/read/")
    assert page.get_attribute("html", "lang") == "es-co"
    assert "Guardar y siguiente" in page.inner_text("#save")
    assert "Composición" in page.inner_text("#descriptors")
    _wait_position(page, "imagen n.º 1")
    # The radiologist reads what the phantom drew (its manifest knows): five digits, one per
    # descriptor (the active descriptor moves on), and Enter: six keystrokes; N for no nodule.
    from eutirads.categories import DESCRIPTORS
    from eutirads.data.manifest import read_manifest

    truth = read_manifest(root)
    for number, row in enumerate(truth, start=1):
        if row["label"] == "1":
            page.keyboard.press("n")
        else:
            for name, values in DESCRIPTORS.items():
                page.keyboard.press(str(values.index(row[name]) + 1))
        assert page.inner_text("#computed-chip") == row["label"]
        path = page.inner_text("#rule-path")
        assert path.endswith(f"→ EU-TIRADS {row['label']}")
        assert ("sin nódulo" if row["label"] == "1" else "ecoico") in path  # in Spanish
        if number == 2:
            page.wait_for_selector("#overlay:not([hidden])")  # the manifest's box and mask
            page.keyboard.press("d")  # the largest diameter, typed; Enter saves from there
            page.keyboard.type(row["nodule_mm"])
        if number == 2 and os.environ.get("EUTIRADS_SCREENSHOT_DIR"):  # for a person to look at
            page.screenshot(path=str(Path(os.environ["EUTIRADS_SCREENSHOT_DIR"]) / "reading-es.png"))
        assert page.is_enabled("#save")
        page.keyboard.press("Enter")
        if number < 3:
            _wait_position(page, f"imagen n.º {number + 1}")
            assert page.inner_text("#status") == "Guardada."
            assert page.inner_text("#progress-text").startswith(f"{number} hechas")
    page.wait_for_selector("#empty:not([hidden])")
    saved = list(Reading.objects.filter(reader__username="alice", done=True)
                 .order_by("image__position"))
    assert [r.label for r in saved] == [row["label"] for row in truth]
    assert saved[1].descriptors == {name: truth[1][name] for name in DESCRIPTORS}
    assert saved[1].diameter_mm == float(truth[1]["nodule_mm"])

    report = export_project("fantoma", tmp_path / "export", progress=False)
    assert report.written == 3
    with open(tmp_path / "export" / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["label"] for r in rows] == [row["label"] for row in truth]
    for exported, row in zip(rows, truth):  # the descriptor columns `eutirads train` reads
        assert {n: exported[n] for n in DESCRIPTORS} == {n: row[n] for n in DESCRIPTORS}
        assert exported["reader_alice_composition"] == row["composition"]


def test_on_a_slow_network_the_old_image_is_hidden_and_saving_is_off_until_the_next_shows(
        live_server, browser, tmp_path):  # noqa: F811
    from eutirads.web.labeling.models import Reading
    from eutirads.web.labeling.project_io import import_project

    make_user("alice", "radiologist")
    import_project(write_dataset(tmp_path / "ds", 4), "slow", readers=1, progress=False,
                   mode="category", queue_order="manifest")
    base = live_server.url
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    log_in(page, base, "alice")
    page.goto(f"{base}/labeling/slow/read/")
    _wait_position(page, "image #1")
    # Record every state the screen passes through: which picture is painted, what the
    # position says, whether saving is on.
    page.evaluate("""() => {
      window.snapshots = [];
      const snap = () => { const img = document.getElementById('image');
        window.snapshots.push({ src: img.hidden ? null : img.currentSrc,
          position: document.getElementById('position').textContent,
          save: !document.getElementById('save').disabled }); };
      new MutationObserver(snap).observe(document.body, { subtree: true, attributes: true,
                                                          childList: true, characterData: true });
    }""")
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 400,
                                                  "downloadThroughput": 40_000,
                                                  "uploadThroughput": 40_000})
    page.keyboard.press("3")
    page.keyboard.press("Enter")
    # While the next image is on its way: a second verdict must not be accepted.
    page.wait_for_function("() => document.getElementById('save').disabled")
    page.keyboard.press("4")
    page.keyboard.press("Enter")
    _wait_position(page, "image #2")
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0,
                                                  "downloadThroughput": -1,
                                                  "uploadThroughput": -1})
    snapshots = page.evaluate("window.snapshots")
    assert Reading.objects.filter(reader__username="alice", done=True).count() == 1
    by_picture: dict[str, set[str]] = {}
    for s in snapshots:
        if s["src"]:
            by_picture.setdefault(s["src"], set()).add(s["position"])
        if s["save"]:
            assert s["src"], f"saving was on with no image shown: {s}"
    # Each painted picture was only ever labelled with one position, never its successor's.
    assert all(len(positions) == 1 for positions in by_picture.values()), by_picture
    assert any(s["src"] is None and not s["save"] for s in snapshots)  # hidden while loading
    # Patient images never enter the HTTP cache: they come as blob: URLs of the page.
    assert page.evaluate("document.getElementById('image').currentSrc").startswith("blob:")


def test_keys_on_a_focused_slider_never_save_or_advance(live_server, browser, tmp_path):  # noqa: F811
    from eutirads.web.labeling.models import Reading
    from eutirads.web.labeling.project_io import import_project

    make_user("alice", "radiologist")
    import_project(write_dataset(tmp_path / "ds", 3), "slider", readers=1, progress=False,
                   mode="category", queue_order="manifest")
    base = live_server.url
    page = browser.new_page()
    log_in(page, base, "alice")
    page.goto(f"{base}/labeling/slider/read/")
    _wait_position(page, "image #1")
    page.keyboard.press("3")
    page.focus("#brightness")
    for key in ("ArrowRight", "ArrowRight", "Enter", "ArrowLeft", "s", "5"):
        page.keyboard.press(key)
    page.wait_for_timeout(300)
    assert page.inner_text("#position") == "image #1"
    assert page.get_attribute('.choice[data-label="3"]', "aria-pressed") == "true"
    assert not Reading.objects.filter(done=True).exists()
    assert page.input_value("#brightness") != "100"  # the slider itself moved
    page.keyboard.press("Escape")  # leaves the slider; keys work again
    page.keyboard.press("Enter")
    _wait_position(page, "image #2")
    assert Reading.objects.filter(done=True).count() == 1


def test_a_pinch_zooms_and_a_drag_sets_window_and_level_on_the_reading_screen(
        live_server, browser, tmp_path):  # noqa: F811
    from eutirads.web.labeling.models import Reading
    from eutirads.web.labeling.project_io import import_project

    make_user("alice", "radiologist")
    import_project(write_dataset(tmp_path / "ds", 2), "pinch", readers=1, progress=False,
                   mode="category")
    context = browser.new_context(has_touch=True, viewport={"width": 1200, "height": 800})
    page = context.new_page()
    log_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/labeling/pinch/read/")
    page.wait_for_selector("#image:not([hidden])")
    stage = page.locator("#stage").bounding_box()
    cx, cy = stage["x"] + stage["width"] / 2, stage["y"] + stage["height"] / 2
    cdp = context.new_cdp_session(page)

    def touch(kind, points):  # real touch input, as a tablet's screen sends it
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [
            {"x": x, "y": y, "id": i} for i, (x, y) in enumerate(points)]})

    def view():
        return page.evaluate("""() => { const i = document.getElementById('image');
            return { transform: i.style.transform, filter: i.style.filter,
                     overlay: document.getElementById('overlay').style.transform,
                     zoom: document.getElementById('zoom-level').textContent,
                     brightness: document.getElementById('brightness').value,
                     contrast: document.getElementById('contrast').value }; }""")

    # Two fingers 80 px apart spread to 240 px: three times the size, the outline with it.
    touch("touchStart", [(cx - 40, cy), (cx + 40, cy)])
    for step in range(1, 11):
        touch("touchMove", [(cx - 40 - 8 * step, cy), (cx + 40 + 8 * step, cy)])
    touch("touchEnd", [])
    zoomed = view()
    assert zoomed["zoom"] == "300%" and "scale(3)" in zoomed["transform"]
    assert zoomed["overlay"] == zoomed["transform"]
    # One finger: window/level (right +60 px: contrast +30; up 40 px: brightness +20).
    touch("touchStart", [(cx, cy)])
    for step in range(1, 5):
        touch("touchMove", [(cx + 15 * step, cy - 10 * step)])
    touch("touchEnd", [])
    levelled = view()
    assert (levelled["brightness"], levelled["contrast"]) == ("120", "130")
    assert levelled["filter"] == "brightness(120%) contrast(130%)"
    assert levelled["zoom"] == "300%"  # a level drag leaves the zoom alone
    # The mouse: 0 resets; a right-button drag sets window/level; a left drag pans when zoomed.
    page.keyboard.press("0")
    assert view()["filter"] == "brightness(100%) contrast(100%)" and view()["zoom"] == "100%"
    page.mouse.move(cx, cy)
    page.mouse.down(button="right")
    page.mouse.move(cx - 40, cy + 20, steps=4)
    page.mouse.up(button="right")
    assert view()["filter"] == "brightness(90%) contrast(80%)"
    page.keyboard.press("+")
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + 30, cy + 10, steps=3)
    page.mouse.up()
    assert view()["transform"] == "translate(30px, 10px) scale(1.25)"
    # None of it saved or moved on: the keys still label the image on screen.
    assert not Reading.objects.filter(done=True).exists()
    page.keyboard.press("3")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.getElementById('status').textContent === 'Saved.'")
    assert Reading.objects.filter(done=True, label="3").count() == 1


def _mean_brightness(page) -> float:
    """The painted page's mean grey level, 0 (black) to 1 (white), from a screenshot."""
    import io

    import numpy as np
    from PIL import Image as PILImage

    shot = PILImage.open(io.BytesIO(page.screenshot())).convert("L")
    return float(np.asarray(shot, dtype=np.float32).mean() / 255)


def test_the_reading_screen_is_dark_with_the_largest_image_and_other_pages_follow_the_system(
        live_server, browser, tmp_path):  # noqa: F811
    from eutirads.web.labeling.project_io import import_project

    make_user("alice", "radiologist")
    import_project(write_dataset(tmp_path / "ds", 2), "sala", readers=1, progress=False,
                   mode="category")
    viewport = {"width": 1366, "height": 820}
    brightness = {}
    for scheme in ("light", "dark"):
        context = browser.new_context(color_scheme=scheme, viewport=viewport)
        page = context.new_page()
        log_in(page, live_server.url, "alice")
        page.goto(f"{live_server.url}/labeling/sala/")
        brightness[scheme, "project"] = _mean_brightness(page)
        page.goto(f"{live_server.url}/labeling/sala/read/")
        page.wait_for_selector("#image:not([hidden])")
        stage = page.locator("#stage").bounding_box()
        image = page.locator("#image").bounding_box()
        # The chrome around the image (the test picture is bright noise): hide the picture.
        page.eval_on_selector("#image", "e => { e.style.visibility = 'hidden'; }")
        brightness[scheme, "reading"] = _mean_brightness(page)
        context.close()
        # The image takes all the room the panel leaves (object-fit keeps its shape).
        assert stage["width"] >= viewport["width"] - 400 and stage["height"] >= viewport["height"] - 120
        assert all(abs(image[k] - stage[k]) <= 1 for k in ("x", "y", "width", "height"))
    # A dark reading room whatever the system says; the other pages follow the system.
    assert brightness["light", "reading"] < 0.25 and brightness["dark", "reading"] < 0.25, brightness
    assert brightness["light", "project"] > 0.7 and brightness["dark", "project"] < 0.25, brightness


def test_the_help_overlay_lists_the_keys_and_b_toggles_the_nodule_box(
        live_server, browser, tmp_path):  # noqa: F811
    from eutirads.data.manifest import read_manifest, write_manifest
    from eutirads.web.labeling.project_io import import_project

    make_user("alice", "radiologist")
    root = write_dataset(tmp_path / "ds", 2)
    rows = read_manifest(root)
    rows[0].update({"x0": "10", "y0": "8", "x1": "40", "y1": "30"})
    write_manifest(root, rows)
    import_project(root, "ayuda", readers=1, progress=False, queue_order="manifest")
    base = live_server.url
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    log_in(page, base, "alice")
    page.goto(f"{base}/labeling/ayuda/read/")
    _wait_position(page, "image #1")
    page.wait_for_selector("#overlay:not([hidden])")  # the manifest's box, drawn over
    page.keyboard.press("b")
    assert page.is_hidden("#overlay")
    page.keyboard.press("Shift+?")
    assert page.is_visible("#help") and "Esc" in page.inner_text("#help")
    page.keyboard.press("Escape")
    assert page.is_hidden("#help")
    assert json.loads(page.inner_text("#labeling-rule"))["rules"][0]["category"] == 5


def test_a_reviewer_adjudicates_with_the_same_keys(live_server, browser, tmp_path):  # noqa: F811
    from eutirads.web.labeling import queue
    from eutirads.web.labeling.models import Image
    from eutirads.web.labeling.project_io import import_project

    users = {n: make_user(n, r) for n, r in (("alice", "radiologist"), ("bob", "radiologist"),
                                              ("rita", "reviewer"))}
    import_project(write_dataset(tmp_path / "ds", 2), "adj", readers=2, progress=False,
                   mode="category")
    images = list(Image.objects.select_related("project").order_by("position"))
    for image, (a, b) in zip(images, [("3", "4"), ("2", "5")]):
        queue.save_reading(image, users["alice"], label=a)
        queue.save_reading(image, users["bob"], label=b)
    page = browser.new_page()
    log_in(page, live_server.url, "rita")
    page.goto(f"{live_server.url}/labeling/adj/adjudication/{images[0].pk}/")
    assert "1 of 2" in page.inner_text("#adjudication-progress")
    page.keyboard.press("+")
    assert "scale(1.25)" in page.eval_on_selector("#adjudicate-image", "e => e.style.transform")
    box = page.locator("#adjudicate-image").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down(button="right")  # window/level, as on the reading screen
    page.mouse.move(x + 40, y - 20, steps=4)
    page.mouse.up(button="right")
    assert page.eval_on_selector("#adjudicate-image", "e => e.style.filter") == \
        "brightness(110%) contrast(120%)"
    page.keyboard.press("4")
    page.wait_for_url(f"**/adjudication/{images[1].pk}/")
    page.keyboard.press("x")
    page.wait_for_url("**/adjudication/")
    for image in images:
        image.refresh_from_db()
    assert [i.consensus_label for i in images] == ["4", "excluded"]


def test_no_page_of_core_labeling_diagnosis_or_the_admin_breaks_the_content_security_policy(
        live_server, browser, tmp_path):  # noqa: F811
    from eutirads.web.labeling import queue
    from eutirads.web.labeling.models import Image
    from eutirads.web.labeling.project_io import import_project

    users = {n: make_user(n, r) for n, r in (("alice", "radiologist"), ("bob", "radiologist"),
                                              ("rita", "reviewer"), ("adam", "admin"))}
    import_project(write_dataset(tmp_path / "ds", 3), "csp", readers=2, progress=False)
    image = Image.objects.select_related("project").order_by("position").first()
    queue.save_reading(image, users["alice"], descriptors={
        "composition": "solid", "echogenicity": "isoechoic", "shape": "oval",
        "margins": "smooth", "echogenic_foci": "none"})
    queue.save_reading(image, users["bob"], nodule=False)
    base = live_server.url
    pages = {"alice": ["/", "/labeling/", "/labeling/csp/", "/labeling/csp/read/",
                       "/labeling/csp/mine/", "/password/", "/diagnosis/", "/diagnosis/history/",
                       "/diagnosis/models/", "/diagnosis/reading/"],
             "rita": ["/labeling/csp/agreement/", "/labeling/csp/adjudication/",
                      f"/labeling/csp/adjudication/{image.pk}/", "/diagnosis/reading/report/"],
             "adam": ["/audit/", "/admin/", "/admin/labeling/project/",
                      f"/admin/labeling/project/{image.project.pk}/change/"]}
    for name, urls in pages.items():
        context = browser.new_context()
        page = context.new_page()
        violations = []
        page.on("console", lambda m: violations.append(m.text)
                if "Content Security Policy" in m.text else None)
        log_in(page, base, name)
        for url in urls:
            page.goto(base + url)
            page.wait_for_load_state("networkidle")
        context.close()
        assert violations == [], (name, violations)


def test_a_reading_reopened_from_my_readings_shows_the_readers_descriptors(
        live_server, browser, tmp_path):  # noqa: F811
    from eutirads.web.labeling import queue
    from eutirads.web.labeling.models import Image, Reading
    from eutirads.web.labeling.project_io import import_project

    alice = make_user("alice", "radiologist")
    import_project(write_dataset(tmp_path / "ds", 3), "mine", readers=1, progress=False)
    image = Image.objects.select_related("project").order_by("position")[1]
    queue.save_reading(image, alice, descriptors={
        "composition": "solid", "echogenicity": "mildly_hypoechoic", "shape": "oval",
        "margins": "smooth", "echogenic_foci": "none"}, override="5",
        override_reason="rapid growth")
    page = browser.new_page()
    log_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/labeling/mine/mine/")
    page.click("#mine a")
    _wait_position(page, "image #2")
    assert page.get_attribute('button[data-value="mildly_hypoechoic"]', "aria-pressed") == "true"
    assert page.inner_text("#computed-chip") == "5" and "rule: 4" in page.inner_text("#computed-name")
    assert page.input_value("#override-reason") == "rapid growth"
    page.keyboard.press("Escape")  # drop the override: the rule's category stands
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.getElementById('status').textContent === 'Saved.'")
    reading = Reading.objects.get(image=image, reader=alice)
    assert (reading.label, reading.rule_label, reading.override_reason) == ("4", "4", "")
