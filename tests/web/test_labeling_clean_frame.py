"""Issue 11, item 8: a scanner screen imported without DICOM (patient banner around the
image, a name burned inside it) is served by the labeling image view through the one
clean-frame rule: nothing outside the ultrasound area, no burned-in text inside it."""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pytest
from PIL import Image as PILImage, ImageDraw, ImageFont

from eutirads.ocr import tesseract_available


@pytest.fixture
def screen_project(db, tmp_path):
    from eutirads.data.manifest import write_manifest
    from eutirads.phantom.dataset import render_example
    from eutirads.web.labeling.models import Project
    from eutirads.web.labeling.project_io import import_project

    example = render_example(9, 0, width=640, height=480)
    screen = PILImage.fromarray(example.screen)
    box = example.image_box
    where = (box.x0 + 40, box.y0 + 30)
    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 18)
    ImageDraw.Draw(screen).text(where, "DOE^JANE 0012345", fill=235, font=font)
    name = PILImage.new("L", screen.size)
    ImageDraw.Draw(name).text(where, "DOE^JANE 0012345", fill=255, font=font)
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    # Written as it came (no import cleaning), as an older dataset would hold it.
    screen.save(root / "images" / "screen.png")
    write_manifest(root, [{"path": "images/screen.png", "label": "", "patient_id": "anon1",
                           "split": "train", "source": "test"}])
    import_project(root, "screens", readers=1, progress=False)
    return Project.objects.get(name="screens"), example, np.asarray(name) > 128


@pytest.mark.skipif(not tesseract_available(), reason="Debian's tesseract-ocr is not installed")
def test_the_labeling_view_serves_only_the_image_area_without_burned_in_text(
        client_for, screen_project):
    from eutirads.web.labeling.models import Image

    project, example, name = screen_project
    image = Image.objects.get(project=project)
    response = client_for("rita").get(f"/labeling/screens/image/{image.pk}/")
    assert response.status_code == 200
    served = np.asarray(PILImage.open(BytesIO(b"".join(response.streaming_content))))
    assert served.shape[:2] == example.screen.shape[:2]  # same coordinates as the file
    box = example.image_box
    assert example.screen[:box.y0].any() and not served[:box.y0].any()  # banner gone
    assert not served[:, :box.x0].any()  # settings column gone
    assert not served[name].any()  # the name inside the area is blanked
    inner = served[box.y0 + 5:box.y1 - 5, box.x0 + 5:box.x1 - 5]
    assert inner.any()  # the image itself is served
