"""The Teacher stages' work queue: items on a thread pool, a few submitted ahead, so a stop or a failure
leaves the rest unstarted (and unpaid).

    run_concurrently(todo, grade_one, workers=32, stop_event=ctx.stop_event, done=save, desc="round 1 grade")
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from threading import Event
from typing import Any

from tqdm import tqdm


def run_concurrently(
    items: Sequence,
    work: Callable[[Any], Any],
    workers: int,
    stop_event: Event,
    done: Callable[[list], None] | None = None,
    desc: str = "",
    total: int | None = None,
    initial: int = 0,
) -> None:
    """work(item) for each item on `workers` threads, at most 2 x workers submitted at a time; done(results)
    with each group of finished results (in the order they finished). Stops submitting once stop_event is
    set. The first exception cancels every item not started and is raised once those in flight are back."""
    workers = max(1, workers)
    bar = tqdm(
        total=total if total is not None else len(items), initial=initial, desc=desc, unit="q", dynamic_ncols=True
    )
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: set = set()
        queue = iter(items)
        try:
            while True:
                while len(pending) < workers * 2 and not stop_event.is_set():
                    item = next(queue, _END)
                    if item is _END:
                        break
                    pending.add(pool.submit(work, item))
                if not pending:
                    break
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                failed = [fut.exception() for fut in finished if fut.exception() is not None]
                results = [fut.result() for fut in finished if fut.exception() is None]
                if done is not None and results:
                    done(results)  # what finished well is saved even when its neighbour failed
                bar.update(len(results))
                if failed:
                    raise failed[0]
        finally:
            for fut in pending:
                fut.cancel()
            bar.close()


_END = object()
