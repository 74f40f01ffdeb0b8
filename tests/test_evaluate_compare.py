"""`eutirads compare`: one table across runs from their evaluation files (no torch needed)."""

from __future__ import annotations

import csv
import json
import pytest
import yaml

from eutirads.cli import main
from eutirads.errors import InputError
from eutirads.evaluation.compare import compare_runs, to_markdown, write_table


def _run(root, name, *, model, mode, epochs, summary=None, evaluated=True):
    run = root / name
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"model": model, "mode": mode, "epochs": 20}))
    (run / "summary.json").write_text(json.dumps({"epochs_run": epochs}))
    if evaluated:
        (run / "eval" / "test").mkdir(parents=True)
        (run / "eval" / "test" / "metrics.json").write_text(json.dumps({
            "n": 30, "log_loss": 0.91,
            "run": {"model_name": model, "mode": mode, "epochs_run": epochs},
            "summary": summary, "high_risk": {"positive": ["4", "5"]}}))
    return run


@pytest.fixture
def runs(tmp_path):
    return [
        _run(tmp_path, "seed", model="seed-cnn", mode="finetune", epochs=12,
             summary={"accuracy": 0.55, "macro_f1": 0.5, "kappa": 0.41, "macro_auc": 0.77,
                      "high_risk_auc": None}),
        _run(tmp_path, "lite0", model="tf_efficientnet_lite0", mode="two-stage", epochs=9,
             summary={"accuracy": 0.9, "macro_f1": 0.88, "kappa": 0.93, "macro_auc": 0.98,
                      "high_risk_auc": 0.99}),
        _run(tmp_path, "pending", model="resnet50", mode="frozen", epochs=5, evaluated=False),
    ]


def test_compare_builds_one_row_per_run_in_order(runs):
    table = compare_runs(runs)
    assert [r["run"] for r in table] == ["seed", "lite0", "pending"]
    assert table[1]["model"] == "tf_efficientnet_lite0" and table[1]["epochs"] == 9
    assert table[1]["kappa"] == 0.93 and table[0]["loss"] == 0.91
    assert table[2]["model"] == "resnet50" and table[2]["accuracy"] is None
    assert "not evaluated on 'test'" in table[2]["note"]


def test_markdown_and_csv_tables_hold_the_same_numbers(runs, tmp_path):
    table = compare_runs(runs)
    md = to_markdown(table)
    assert md.splitlines()[0].startswith("| Run | Model | Mode | Epochs |")
    assert "| lite0 | tf_efficientnet_lite0 | two-stage | 9 | 30 | 0.900 | 0.910 | 0.880 |" in md
    with open(write_table(table, tmp_path / "t.csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[1]["macro_f1"] == "0.880" and rows[2]["macro_f1"] == ""
    assert write_table(table, tmp_path / "t.md").read_text() == md
    with pytest.raises(InputError, match="must end in .csv or .md"):
        write_table(table, tmp_path / "t.xlsx")


def test_a_cross_validation_run_shows_its_mean_and_spread(tmp_path):
    run = tmp_path / "cv-lite0"
    run.mkdir()
    (run / "cv_results.json").write_text(json.dumps({
        "k": 5, "model": "tf_efficientnet_lite0", "mode": "frozen",
        "folds": [{"n": 30}, {"n": 31}, {"n": 30}, {"n": 30}, {"n": 31}],
        "mean": {"macro_f1": 0.41, "accuracy": 0.47, "kappa": 0.52, "auc_high": 0.81},
        "std": {"macro_f1": 0.06, "accuracy": 0.05, "kappa": 0.09, "auc_high": 0.04}}))
    (row,) = compare_runs([run])
    assert (row["model"], row["mode"], row["n"]) == ("tf_efficientnet_lite0", "frozen", 152)
    assert row["macro_f1"] == 0.41 and row["high_risk_auc"] == 0.81 and row["auc"] is None
    assert row["note"] == ("5-fold CV mean; sd macro_f1 0.060, accuracy 0.050, kappa 0.090, "
                           "auc_high 0.040")


def test_a_folder_that_is_not_a_run_is_a_clear_error(tmp_path):
    (tmp_path / "random").mkdir()
    with pytest.raises(InputError, match="not a training run"):
        compare_runs([tmp_path / "random"])
    with pytest.raises(InputError, match="run folder not found"):
        compare_runs([tmp_path / "missing"])


def test_compare_cli_prints_markdown_and_writes_csv(runs, tmp_path, capsys):
    out = tmp_path / "table.csv"
    assert main(["compare", *map(str, runs), "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert stdout.count("\n") == 5 and "| seed | seed-cnn |" in stdout
    assert out.read_text().startswith("run,model,mode,epochs,n,accuracy,loss,macro_f1,kappa,auc")
