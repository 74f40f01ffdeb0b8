"""The queue order of a project: `random` (the default) is a fixed shuffle, the same for
every reader and every visit, of exactly the project's images; `manifest` keeps the
manifest's order."""

from __future__ import annotations

import pytest

from eutirads.cli import main
from eutirads.web.labeling import queue
from eutirads.web.labeling.models import Image, Project, shuffle_key
from eutirads.web.labeling.project_io import import_project
from tests.web.conftest import write_dataset

pytestmark = pytest.mark.django_db

N = 12


def read_all(project, reader) -> list[int]:
    """The positions `reader` is given, in order, labelling each image as it comes."""
    positions = []
    while True:
        current, _ = queue.claim_pair(project, reader)
        if current is None:
            return positions
        positions.append(current.position)
        image = Image.objects.select_related("project").get(pk=current.id)
        queue.save_reading(image, reader, label="3")


def test_a_new_project_is_queued_in_random_order_by_default(tmp_path, capsys):
    import_project(write_dataset(tmp_path / "ds", 2), "lib", progress=False)
    assert Project.objects.get(name="lib").queue_order == "random"
    assert main(["label", "import", str(write_dataset(tmp_path / "cli", 2)), "--project", "cli"]) == 0
    assert Project.objects.get(name="cli").queue_order == "random"
    assert main(["label", "import", str(tmp_path / "cli"), "--project", "kept",
                 "--queue-order", "manifest"]) == 0
    assert Project.objects.get(name="kept").queue_order == "manifest"
    assert Project._meta.get_field("queue_order").default == "random"


def test_an_unknown_queue_order_is_refused(tmp_path):
    from eutirads.errors import InputError

    with pytest.raises(InputError, match="--queue-order 'shuffled'"):
        import_project(write_dataset(tmp_path / "ds", 2), "bad", progress=False,
                       queue_order="shuffled")
    assert not Project.objects.filter(name="bad").exists()


def test_random_order_is_a_permutation_the_same_for_every_reader(users, tmp_path):
    import_project(write_dataset(tmp_path / "ds", N), "shuffled", readers=2, progress=False)
    project = Project.objects.get(name="shuffled")
    alice = read_all(project, users["alice"])
    assert sorted(alice) == list(range(1, N + 1))  # every image once
    assert alice != sorted(alice)  # not the manifest's order
    # The order comes from the stored keys, which anyone can derive again.
    keys = {i.position: i.shuffle for i in project.images.all()}
    assert alice == sorted(keys, key=keys.get)
    assert all(i.shuffle == shuffle_key("shuffled", i.path) for i in project.images.all())
    # bob, reading after alice, is given the same order (the queue is stable, not redrawn).
    assert read_all(project, users["bob"]) == alice


def test_another_project_of_the_same_images_has_its_own_order(users, tmp_path):
    root = write_dataset(tmp_path / "ds", N)
    import_project(root, "one", readers=1, progress=False)
    import_project(root, "two", readers=1, progress=False)
    first = read_all(Project.objects.get(name="one"), users["alice"])
    second = read_all(Project.objects.get(name="two"), users["alice"])
    assert sorted(first) == sorted(second) and first != second


def test_images_with_readings_in_progress_still_come_first(users, tmp_path):
    import_project(write_dataset(tmp_path / "ds", N), "progress", readers=2, progress=False)
    project = Project.objects.get(name="progress")
    order = sorted(project.images.all(), key=lambda i: i.shuffle)
    last = order[-1]
    queue.save_reading(last, users["bob"], label="4")  # bob read the shuffle's last image
    current, prefetch = queue.claim_pair(project, users["alice"])
    assert current.id == last.pk  # alice completes it first
    assert prefetch.id == order[0].pk  # then the shuffle's order


def test_manifest_order_keeps_the_manifests_order(users, tmp_path):
    import_project(write_dataset(tmp_path / "ds", N), "ordered", readers=1, progress=False,
                   queue_order="manifest")
    assert read_all(Project.objects.get(name="ordered"), users["alice"]) == list(range(1, N + 1))


def test_the_migration_gives_images_imported_before_their_keys(tmp_path):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("eutirads.web.labeling.migrations.0004_random_queue_order")
    import_project(write_dataset(tmp_path / "ds", 3), "old", progress=False)
    Image.objects.update(shuffle=0)  # as a project imported before the field existed
    migration.fill_shuffle_keys(apps, None)
    assert all(i.shuffle == shuffle_key("old", i.path) and i.shuffle > 0
               for i in Image.objects.all())
