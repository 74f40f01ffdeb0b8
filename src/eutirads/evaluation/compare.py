"""`compare_runs`: one table across runs, like the thesis's experiments table.

Reads only files (RUN/eval/<split>/metrics.json, RUN/summary.json, RUN/config.yaml, and a
cross-validation run's RUN/cv_results.json), so it needs neither torch nor the images. A run
not evaluated on the split still gets a row, with its metrics empty and a note saying so; a
cross-validation run shows its mean over folds, with the spread in the note.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import yaml

from ..errors import InputError

__all__ = ["COLUMNS", "compare_runs", "to_markdown", "to_csv", "write_table"]

COLUMNS = ("run", "model", "mode", "epochs", "n", "accuracy", "loss", "macro_f1", "kappa",
           "auc", "high_risk_auc", "note")
_HEADERS = {"run": "Run", "model": "Model", "mode": "Mode", "epochs": "Epochs", "n": "Images",
            "accuracy": "Accuracy", "loss": "Loss", "macro_f1": "Macro-F1", "kappa": "Kappa (quadratic)",
            "auc": "AUC (macro OvR)", "high_risk_auc": "High-risk AUC", "note": "Note"}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not readable JSON ({type(exc).__name__})") from None
    return value if isinstance(value, dict) else None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        value = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: not readable YAML ({type(exc).__name__})") from None
    return value if isinstance(value, dict) else {}


def compare_runs(runs: Sequence[str | os.PathLike[str]], *, split: str = "test"
                 ) -> list[dict[str, Any]]:
    """One row per run (COLUMNS), in the order given."""
    table = []
    for run in runs:
        root = Path(run)
        if not root.is_dir():
            raise InputError(f"{root}: run folder not found")
        config = _read_yaml(root / "config.yaml")
        summary = _read_json(root / "summary.json") or {}
        metrics = _read_json(root / "eval" / split / "metrics.json")
        info = (metrics or {}).get("run", {})
        row: dict[str, Any] = {
            "run": root.name,
            "model": info.get("model_name") or summary.get("model") or config.get("model"),
            "mode": info.get("mode") or summary.get("mode") or config.get("mode"),
            "epochs": info.get("epochs_run") or summary.get("epochs_run") or config.get("epochs"),
            "n": None, "accuracy": None, "loss": None, "macro_f1": None, "kappa": None,
            "auc": None, "high_risk_auc": None, "note": "",
        }
        cv = _read_json(root / "cv_results.json") if metrics is None else None
        if cv is not None:
            # A cross-validation run: the mean over folds, the spread in the note.
            mean, std = cv.get("mean") or {}, cv.get("std") or {}
            row.update(model=cv.get("model") or row["model"], mode=cv.get("mode") or row["mode"],
                       n=sum(int(f.get("n", 0)) for f in cv.get("folds") or []) or None,
                       accuracy=mean.get("accuracy"), macro_f1=mean.get("macro_f1"),
                       kappa=mean.get("kappa"), high_risk_auc=mean.get("auc_high"))
            spread = ", ".join(f"{k} {v:.3f}" for k, v in std.items()
                               if isinstance(v, (int, float)) and not math.isnan(v))
            row["note"] = f"{cv.get('k', '?')}-fold CV mean" + (f"; sd {spread}" if spread else "")
        elif metrics is None:
            if not (root / "checkpoints").is_dir() and not summary:
                raise InputError(f"{root}: not a training run (no checkpoints/, summary.json "
                                 "or cv_results.json)")
            row["note"] = f"not evaluated on '{split}' (run eutirads evaluate)"
        else:
            s = metrics.get("summary") or {}
            row.update(n=metrics.get("n"), accuracy=s.get("accuracy"), loss=metrics.get("log_loss"),
                       macro_f1=s.get("macro_f1"), kappa=s.get("kappa"), auc=s.get("macro_auc"),
                       high_risk_auc=s.get("high_risk_auc"))
            if metrics.get("high_risk"):
                row["note"] = "high risk: " + ",".join(metrics["high_risk"]["positive"])
        table.append(row)
    return table


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def to_markdown(table: Sequence[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(_HEADERS[c] for c in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(row[c]).replace("|", "\\|") for c in COLUMNS) + " |"
              for row in table]
    return "\n".join(lines) + "\n"


def to_csv(table: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in table:
        writer.writerow([_cell(row[c]) if isinstance(row[c], float) else
                         ("" if row[c] is None else row[c]) for c in COLUMNS])
    return buffer.getvalue()


def write_table(table: Sequence[dict[str, Any]], out: str | os.PathLike[str]) -> Path:
    """Write CSV or Markdown, chosen by the file's suffix."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".md"):
        raise InputError(f"{out}: --out must end in .csv or .md")
    text = to_csv(table) if suffix == ".csv" else to_markdown(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    return out
