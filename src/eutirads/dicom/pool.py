"""The process pool: sources run on all cores, results stream back in submission order
of completion, and a worker killed by a crashing decoder is survived."""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable

from . import pipeline
from .pipeline import Context
from .records import FileResult
from .sources import SourceRef

__all__ = ["preload", "run_pool"]

_WORKER: Context | None = None


def _init_worker(ctx: Context) -> None:
    global _WORKER
    _WORKER = ctx


def _work(ref: SourceRef) -> FileResult:
    assert _WORKER is not None
    return pipeline.ingest_file(ref, _WORKER)  # looked up here, so a test can replace it


def preload() -> None:
    """Import the decoders, scipy and the de-identification code once, before the pool
    forks, so each worker inherits them instead of spending seconds importing its own."""
    import pydicom.pixels  # noqa: F401
    from pydicom.pixels import decoders  # noqa: F401

    from .. import frame, ocr, region  # noqa: F401
    from . import deidentify, pixels  # noqa: F401


def run_pool(refs: list[SourceRef], ctx: Context, workers: int,
             handle: Callable[[FileResult], object]) -> list[SourceRef]:
    """Run refs on a process pool; returns the refs lost to a crashed worker."""
    crashed: list[SourceRef] = []
    executor = ProcessPoolExecutor(max_workers=workers, initializer=_init_worker,
                                   initargs=(ctx,))
    try:
        # Bounded submission: results stream back while the rest waits its turn.
        pending = {}
        queue = list(reversed(refs))
        while queue or pending:
            while queue and len(pending) < workers * 4:
                ref = queue.pop()
                pending[executor.submit(_work, ref)] = ref
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                ref = pending.pop(future)
                try:
                    handle(future.result())
                except BrokenProcessPool:
                    crashed.append(ref)
            if crashed:
                # The pool is gone: everything not yet finished must be redone.
                crashed.extend(pending.values())
                crashed.extend(reversed(queue))
                break
    except BaseException:
        # Let running files finish (their outputs are whole either way) so nothing keeps
        # writing into the dataset after we return; queued ones are dropped.
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    executor.shutdown(wait=True)
    return crashed
