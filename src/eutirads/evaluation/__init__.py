"""Evaluation: pure metric functions (`metrics`), and `evaluate_run`, which predicts a
run's split with the eval preprocessing and writes the report (Markdown, HTML, JSON)."""

from __future__ import annotations

from . import agreement, metrics

__all__ = ["agreement", "metrics", "evaluate_run", "compare_runs"]


def __getattr__(name: str):
    # evaluate_run and compare_runs need torch/matplotlib: import them only when asked for.
    if name == "evaluate_run":
        from .evaluate import evaluate_run
        return evaluate_run
    if name == "compare_runs":
        from .compare import compare_runs
        return compare_runs
    raise AttributeError(name)
