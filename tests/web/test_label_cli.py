"""`eutirads users add`, `eutirads label import/export`, `eutirads serve`'s command line,
and the demo hook."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
from django.contrib.auth import get_user_model

from eutirads.cli import main
from eutirads.data.manifest import read_manifest
from eutirads.web.core.access import user_roles
from eutirads.web.core.models import AuditEvent
from eutirads.web.labeling import queue
from eutirads.web.labeling.models import Image, Project, Reading
from eutirads.web.labeling.project_io import decide_label, export_project, import_project
from tests.web.conftest import write_dataset

pytestmark = pytest.mark.django_db


def test_users_add_reads_the_password_from_stdin_and_sets_the_role(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("a-long-enough-passphrase\n"))
    assert main(["users", "add", "zoe", "--role", "reviewer"]) == 0
    user = get_user_model().objects.get(username="zoe")
    assert user.check_password("a-long-enough-passphrase") and user_roles(user) == {"reviewer"}
    assert "a-long-enough-passphrase" not in capsys.readouterr().out


def test_users_add_refuses_a_weak_password_and_has_no_password_option(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("123\n"))
    assert main(["users", "add", "zoe", "--role", "radiologist"]) == 2
    assert "password refused" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["users", "add", "zoe", "--role", "radiologist", "--password", "x"])


def test_label_import_keeps_manifest_labels_as_one_reader_and_reports_bad_rows(tmp_path, capsys):
    ds = write_dataset(tmp_path / "ds", 5, labels=["2", "3", "EU-TIRADS 4", "4a", "5"])
    (ds / "images" / "img0004.png").unlink()  # a missing image: reported, the rest imported
    code = main(["label", "import", str(ds), "--project", "thesis", "--readers", "2",
                 "--keep-labels", "thesis_reader"])
    out, err = capsys.readouterr()
    assert code == 0
    assert "4 images added" in out and "3 labels kept" in out and "2 problems" in out
    assert "img0004.png is missing" in err and "not EU-TIRADS" in err
    readings = Reading.objects.filter(reader__username="thesis_reader", done=True)
    assert sorted(readings.values_list("label", flat=True)) == ["2", "3", "4"]
    assert not get_user_model().objects.get(username="thesis_reader").is_active


def test_label_import_twice_adds_nothing_new(tmp_path, capsys):
    ds = write_dataset(tmp_path / "ds", 3)
    assert main(["label", "import", str(ds), "--project", "p1"]) == 0
    assert main(["label", "import", str(ds), "--project", "p1"]) == 0
    assert "0 images added, 3 already there" in capsys.readouterr().out
    assert Image.objects.count() == 3


def test_label_import_refuses_a_bad_project_name_or_a_missing_manifest(tmp_path, capsys):
    assert main(["label", "import", str(write_dataset(tmp_path / "ds", 1)),
                 "--project", "../evil"]) == 2
    assert main(["label", "import", str(tmp_path / "nowhere"), "--project", "p"]) == 2
    err = capsys.readouterr().err
    assert "project name" in err and "no manifest" in err


@pytest.mark.parametrize("labels, consensus, policy, expected", [
    ({"a": "3", "b": "3"}, "", "consensus", "3"),
    ({"a": "3", "b": "4"}, "", "consensus", ""),
    ({"a": "3", "b": "4"}, "4", "consensus", "4"),
    ({"a": "3", "b": "4"}, "excluded", "majority", ""),
    ({"a": "3", "b": "4", "c": "4"}, "", "majority", "4"),
    ({"a": "3", "b": "4"}, "", "majority", ""),
    ({"a": "3", "b": ""}, "", "consensus", ""),
    ({"a": "3"}, "", "consensus", ""),
    ({"a": "3", "b": "4"}, "5", "reader:b", "4"),
])
def test_the_export_policy_decides_each_label(labels, consensus, policy, expected):
    assert decide_label(labels, consensus, policy, required=2) == expected


def test_label_export_writes_a_dataset_that_training_reads(tmp_path, users, capsys):
    from eutirads.training.data import read_training_rows

    ds = write_dataset(tmp_path / "ds", 7, splits=["train"] * 6 + ["val"])
    import_project(ds, "exp", readers=2, progress=False)
    images = list(Image.objects.order_by("position"))
    for image, (a, b) in zip(images, [("3", "3"), ("4", "4"), ("3", "5"), ("5", "5"),
                                      ("2", "2"), ("4", "3"), ("4", "4")]):
        queue.save_reading(image, users["alice"], label=a)
        queue.save_reading(image, users["bob"], label=b)
    queue.set_consensus(images[2], "5", users["rita"])
    out = tmp_path / "exported"
    assert main(["label", "export", "exp", "--out", str(out), "--policy", "consensus"]) == 0
    assert "6 images written, 1 left out" in capsys.readouterr().out
    rows = read_manifest(out)
    assert [r["label"] for r in rows] == ["3", "4", "5", "5", "2", "4"]
    assert rows[2]["reader_alice"] == "3" and rows[2]["reader_bob"] == "5"
    assert rows[2]["consensus"] == "5" and rows[0]["patient_id"] == "anon0000"
    assert all((out / r["path"]).is_file() for r in rows)
    training = read_training_rows(out)
    assert training.class_names == ["2", "3", "4", "5"] and training.train
    assert AuditEvent.objects.filter(action="export").exists()


def test_label_export_by_one_reader_and_errors(tmp_path, users, capsys):
    ds = write_dataset(tmp_path / "ds", 2)
    import_project(ds, "solo", readers=1, progress=False)
    for image in Image.objects.all():
        queue.save_reading(image, users["alice"], label="3")
    report = export_project("solo", tmp_path / "o", policy="reader:alice", progress=False)
    assert report.written == 2
    assert main(["label", "export", "solo", "--out", str(tmp_path / "o2"),
                 "--policy", "reader:nobody"]) == 2
    assert main(["label", "export", "solo", "--out", str(ds)]) == 2
    assert main(["label", "export", "missing", "--out", str(tmp_path / "o3")]) == 2
    err = capsys.readouterr().err
    assert "no saved reading" in err and "overwrite" in err and "no labeling project" in err


def test_the_demo_hook_loads_a_dataset_and_says_how_to_open_it(tmp_path):
    from eutirads.web.labeling import setup_demo_project

    message = setup_demo_project(write_dataset(tmp_path / "ds", 3), name="demo")
    assert "http://127.0.0.1:8000/labeling/demo/" in message and "users add" in message
    assert Project.objects.get(name="demo").images.count() == 3
    assert "/labeling/demo/" in setup_demo_project(tmp_path / "ds", name="demo")  # rerun
    other = setup_demo_project(write_dataset(tmp_path / "other", 2), name="demo")
    assert "/labeling/demo-2/" in other and Project.objects.get(name="demo-2").images.count() == 2


def test_serve_runs_gunicorn_on_the_project_wsgi_app():
    import argparse

    from eutirads.cli.serve import gunicorn_argv

    argv = gunicorn_argv(argparse.Namespace(host="0.0.0.0", port=9000, workers=3, timeout=60))
    assert argv[0] == "gunicorn" and argv[-1] == "eutirads.web.wsgi:application"
    assert "0.0.0.0:9000" in argv and argv[argv.index("--workers") + 1] == "3"


@pytest.mark.slow
def test_serve_migrates_and_answers_with_the_login_page(tmp_path):
    import os
    import socket
    import subprocess
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "EUTIRADS_HOME": str(tmp_path / "home")}
    env.pop("DATABASE_URL", None)
    server = subprocess.Popen([sys.executable, "-m", "eutirads", "serve", "--port", str(port),
                               "--workers", "1"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    try:
        deadline, body = time.monotonic() + 40, b""
        while time.monotonic() < deadline and not body:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=2) as r:
                    body = r.read()
            except OSError:
                time.sleep(0.3)
        assert b'name="password"' in body
        assert (tmp_path / "home" / "eutirads.sqlite3").is_file()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/static/eutirads/app.css") as r:
            assert r.status == 200  # WhiteNoise serves static files without another server
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_a_password_typed_at_a_terminal_is_asked_twice_and_must_match(monkeypatch):
    from eutirads.cli.users import read_password
    from eutirads.errors import InputError

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    answers = iter(["first-passphrase", "first-passphrase"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert read_password(Terminal()) == "first-passphrase"
    answers = iter(["first-passphrase", "typo-passphrase"])
    with pytest.raises(InputError, match="differ"):
        read_password(Terminal())


def test_label_export_copies_each_image_mask_and_keeps_a_row_whose_mask_is_missing(
        tmp_path, users, capsys):
    from eutirads.data.manifest import write_manifest
    from eutirads.data.masks import save_mask

    ds = write_dataset(tmp_path / "ds", 2, splits=["train", "val"])
    rows = read_manifest(ds)
    for i, row in enumerate(rows):
        row["mask"] = f"masks/img{i:04d}.png"
    mask = np.zeros((48, 64), bool)
    mask[10:30, 20:40] = True
    save_mask(mask, ds / rows[0]["mask"])  # the second row's mask file is missing
    write_manifest(ds, rows)
    import_project(ds, "masked", readers=1, progress=False)
    for image in Image.objects.order_by("position"):
        queue.save_reading(image, users["alice"], label="3")
    out = tmp_path / "exported"
    assert main(["label", "export", "masked", "--out", str(out)]) == 0
    exported = read_manifest(out)
    assert exported[0]["mask"] == "masks/img0000.png" and (out / exported[0]["mask"]).is_file()
    assert exported[1]["mask"] == "" and len(exported) == 2
    assert "mask not copied" in capsys.readouterr().err
