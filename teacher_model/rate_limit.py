"""Requests- and tokens-per-minute limits on the Teacher endpoint, shared by every thread of a run.

    limits = RateLimits(max_rpm=600, max_tpm=200_000)
    limits.acquire(tokens=1500)        # blocks until one request of ~1500 tokens fits both budgets

The buckets are aiolimiter's (a leaky bucket per limit); our stages call the Teacher from a thread pool,
so the limiters live on one small event loop in a daemon thread and each call waits on it. A request is
charged its prompt tokens (estimated at 4 characters per token) plus its max completion estimate;
one bigger than the whole per-minute budget is charged the whole budget rather than blocking forever.
"""

from __future__ import annotations

import asyncio
import threading

from aiolimiter import AsyncLimiter


class RateLimits:
    def __init__(self, max_rpm: int = 0, max_tpm: int = 0, period_s: float = 60.0):
        self.max_rpm, self.max_tpm = max_rpm, max_tpm
        self._loop: asyncio.AbstractEventLoop | None = None
        if not (max_rpm or max_tpm):
            return
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="teacher-rate-limit", daemon=True).start()

        async def build():
            return (
                AsyncLimiter(max_rpm, period_s) if max_rpm else None,
                AsyncLimiter(max_tpm, period_s) if max_tpm else None,
            )

        self._rpm, self._tpm = asyncio.run_coroutine_threadsafe(build(), self._loop).result()

    async def _acquire(self, tokens: int) -> None:
        if self._rpm is not None:
            await self._rpm.acquire(1)
        if self._tpm is not None:
            await self._tpm.acquire(max(1, min(tokens, self.max_tpm)))

    def acquire(self, tokens: int = 1) -> None:
        """Block until one request of about `tokens` tokens is within both limits."""
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._acquire(tokens), self._loop).result()

    def close(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop = None


def estimate_tokens(messages: list[dict], completion_budget: int = 512) -> int:
    """A request's charge against the token budget: prompt characters / 4 plus a completion allowance."""
    return sum(len(str(m.get("content", ""))) for m in messages) // 4 + completion_budget
