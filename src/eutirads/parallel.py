"""Run one pure function over many independent items on all cores, results in order.

The phantom writer and the dataset import use it: each item is a file to render, check or
write, with no shared state, so a process pool gives the same output as a loop. Forked
workers (where the platform has fork) inherit the parent's imports instead of paying
seconds to import numpy, PIL and scipy again.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from typing import Callable, Iterator, Sequence, TypeVar

from tqdm import tqdm

__all__ = ["available_cores", "worker_count", "imap_in_order", "map_in_order"]

T = TypeVar("T")
R = TypeVar("R")

# Below this many items a pool costs more to start than it saves.
MIN_ITEMS_FOR_POOL = 8
MAX_WORKERS = 8


def available_cores() -> int:
    """The cores this process may run on (its affinity, where the platform says)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def worker_count(requested: int | None, n_items: int) -> int:
    """`requested` when given (at least 1), else one per core (at most MAX_WORKERS), and 1
    for fewer than MIN_ITEMS_FOR_POOL items."""
    if requested is not None:
        return max(1, requested)
    return 1 if n_items < MIN_ITEMS_FOR_POOL else max(1, min(available_cores(), MAX_WORKERS))


def imap_in_order(function: Callable[[T], R], items: Sequence[T], *, workers: int,
                  progress: bool = False, desc: str = "", leave: bool = True) -> Iterator[R]:
    """function(item) for each item, yielded in the items' order as each is ready, on
    `workers` processes when more than one; a progress bar on stderr when `progress`. An
    exception in any item propagates (callers turn per-item failures into results
    themselves)."""
    bar = tqdm(total=len(items), desc=desc, unit="img", disable=not progress, file=sys.stderr,
               leave=leave)
    try:
        if workers <= 1 or len(items) < 2:
            for item in items:
                yield function(item)
                bar.update()
        else:
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            with multiprocessing.get_context(method).Pool(min(workers, len(items))) as pool:
                for result in pool.imap(function, items, chunksize=4):
                    yield result
                    bar.update()
    finally:
        bar.close()


def map_in_order(function: Callable[[T], R], items: Sequence[T], *, workers: int,
                 progress: bool = False, desc: str = "", leave: bool = True) -> list[R]:
    """list(imap_in_order(...))."""
    return list(imap_in_order(function, items, workers=workers, progress=progress, desc=desc,
                              leave=leave))
