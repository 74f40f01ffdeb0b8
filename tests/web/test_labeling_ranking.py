"""Active learning: `eutirads label rank` orders a project's queue by the model's
uncertainty (a real, tiny ONNX bundle), and uncertain-first readers get those first."""

from __future__ import annotations

import json

from diagnosis_fixtures import tiny_bundle  # noqa: F401  (fixture)
from eutirads.web.labeling.models import Image, Project


class FakePrediction:
    def __init__(self, top):
        self.label = "3" if top is not None else None
        self.probabilities = {"3": top, "4": 1 - top} if top is not None else {}


class Scripted:
    """A predictor answering from a table (the queue order is what is tested here)."""

    def __init__(self, tops):
        self.tops = tops

    def predict(self, path, **kwargs):
        return FakePrediction(self.tops[int(kwargs["name"].split("#")[1])])


def test_uncertain_first_gives_readers_the_least_certain_images_first(client_for, project):
    from eutirads.web.labeling.ranking import rank_project

    # position -> top probability; image 4 cannot be read (no probability): last.
    ranked, problems = rank_project(project, Scripted({1: 0.99, 2: 0.55, 3: 0.8, 4: None}))
    assert (ranked, problems) == (4, [])
    project.refresh_from_db()
    assert project.queue_order == "uncertain-first"
    data = json.loads(client_for("alice").post("/labeling/study/api/next/", "{}",
                                               content_type="application/json").content)
    positions = [data["current"]["position"], data["prefetch"]["position"]]
    assert positions == [2, 3]
    assert Image.objects.get(position=4).uncertainty is None


def test_label_rank_uses_a_real_bundle_from_the_command_line(users, project, tiny_bundle,  # noqa: F811
                                                             capsys):
    from eutirads.cli import main

    assert main(["label", "rank", "study", "--bundle", str(tiny_bundle)]) == 0
    assert "4 images ranked" in capsys.readouterr().out
    values = list(Image.objects.order_by("position").values_list("uncertainty", flat=True))
    assert all(v is not None and 0 <= v < 1 for v in values)
    assert Project.objects.get(name="study").queue_order == "uncertain-first"


def test_label_rank_of_an_unknown_project_is_a_one_line_error(db, capsys):
    from eutirads.cli import main

    assert main(["label", "rank", "nope", "--bundle", "x"]) == 2
    assert "no labeling project named 'nope'" in capsys.readouterr().err
