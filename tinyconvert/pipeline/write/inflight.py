"""An ordered map over a thread pool with a bound on the work in flight: at most `limit` items
are submitted whose results the caller has not yet taken, so encoded chunks cannot pile up in
memory when encoding runs ahead of writing (pool.map submits everything at once)."""
from __future__ import annotations

from collections import deque
from concurrent.futures import Executor
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def in_flight_limit(threads: int) -> int:
    """Two chunks per worker: one being encoded, one done and waiting for the writer."""
    return 2 * max(1, threads)


def bounded_map(pool: Executor, fn: Callable[[T], R], items: Iterable[T],
                limit: int) -> Iterator[R]:
    """fn(item) for every item, results in item order; the next item is submitted only when the
    oldest result has been taken, so at most `limit` results exist besides the caller's."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    pending: deque = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= limit:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:                  # a failure or an abandoned map: work not yet started is dropped
        for fut in pending:
            fut.cancel()


__all__ = ["bounded_map", "in_flight_limit"]
