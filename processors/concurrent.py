"""The Teacher stages' work queue: items on a thread pool, a few submitted ahead, so a stop or a failure
leaves the rest unstarted (and unpaid); and their one rule for items the Teacher failed on for good
(`check_failures`, TEACHER_MAX_FAILURE_FRACTION).

    run_concurrently(todo, grade_one, workers=32, stop_event=ctx.stop_event, done=save, desc="round 1 grade")
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from threading import Event
from typing import Any

from tqdm import tqdm

from prosetting.teacher_model.transport import TeacherError


def run_concurrently(
    items: Sequence,
    work: Callable[[Any], Any],
    workers: int,
    stop_event: Event,
    *,
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


def check_failures(
    cfg, failed: dict[str, str], total: int, *, failure: str, saved: str, fix: str, logger: logging.Logger, warning: str
) -> None:
    """More than TEACHER_MAX_FAILURE_FRACTION of a stage's `total` questions failed for good (`failed`: question
    id -> its last error) fails the stage, saying what happened (`failure`), what is kept (`saved`) and what to
    do; fewer are logged on the stage's logger (`warning` takes the count and the last error)."""
    last = next(reversed(failed.values()))
    if len(failed) / max(1, total) > cfg.TEACHER_MAX_FAILURE_FRACTION:
        raise TeacherError(
            f"{len(failed)} of {total} questions {failure} the Teacher endpoint {cfg.TEACHER_BASE_URL} "
            f"(more than TEACHER_MAX_FAILURE_FRACTION={cfg.TEACHER_MAX_FAILURE_FRACTION:g}); last error: {last}. "
            f"{saved} and answered calls are cached: fix the endpoint{fix} and run the same command again"
        )
    logger.warning(warning, len(failed), last)
