"""The labeling app: blind multi-reader EU-TIRADS labeling, agreement, adjudication, export.

`setup_demo_project(dataset)` is the hook `eutirads demo` calls (imported lazily: it needs
Django configured, which it does itself)."""

__all__ = ["setup_demo_project"]


def setup_demo_project(dataset, **kwargs) -> str:
    from .project_io import setup_demo_project as _setup

    return _setup(dataset, **kwargs)
