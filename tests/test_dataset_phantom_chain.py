"""The issue's "Done when" chain, small: phantom -> dataset import -> split -> summary --json."""

from __future__ import annotations

import json
from collections import defaultdict

from eutirads.cli import main
from eutirads.data.manifest import read_manifest


def test_phantom_images_import_split_and_summarise_with_every_patient_in_one_split(
        tmp_path, capsys):
    phantom, dataset = tmp_path / "p", tmp_path / "d"
    assert main(["phantom", str(phantom), "--n", "40", "--seed", "1", "--per-patient", "2",
                 "--workers", "1", "--quiet"]) == 0
    assert main(["dataset", "import", str(phantom), "--out", str(dataset),
                 "--format", "folders"]) == 0
    assert main(["dataset", "split", str(dataset)]) == 0
    capsys.readouterr()
    assert main(["dataset", "summary", str(dataset), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)

    assert summary["labels"] == ["1", "2", "3", "4", "5"]
    assert summary["images"] == 40 and summary["unlabelled"] == 0
    assert summary["decode_failures"] == [] and summary["skipped_at_import"] == 0
    assert summary["patients_in_several_splits"] == 0
    assert all(summary["splits"][name] > 0 for name in ("train", "val", "test"))
    # Images of different phantom patients are not mistaken for duplicates: the only
    # groups are the patients themselves.
    assert summary["groups"] == summary["patients"] == 20

    rows = read_manifest(dataset)
    splits_of_patient = defaultdict(set)
    for row in rows:
        splits_of_patient[row["patient_id"]].add(row["split"])
    assert all(len(s) == 1 for s in splits_of_patient.values())
    # The phantom's own columns (box, features) came through the import.
    assert {row["source"] for row in rows} == {"phantom"}
    assert all(row["x0"] for row in rows if row["label"] != "1")
    assert all(row["composition"] for row in rows if row["label"] != "1")
