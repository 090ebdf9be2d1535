"""How many of a stage's Teacher replies were usable: a model that does not answer in the asked JSON shape
stops the stage before its next paid request, with one of its replies and the shape it was asked for.

    check = ReplyCheck("round 1 grading", max_fraction=0.5)
    check.record(usable=False, reply=text, why="no JSON object", shape=prompts.VERDICT_SHAPE)
    check.failure(model, base_url)      # None, or the message the stage fails with

A stage fails here once more than `max_fraction` of its replies were unusable, counted from MIN_UNUSABLE
unusable replies on, so that one bad reply of three does not end a stage that re-asks would have saved.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

MIN_UNUSABLE = 10
EXAMPLE_CHARS = 300


@dataclass
class ReplyCheck:
    stage: str
    max_fraction: float
    replies: int = 0
    unusable: int = 0
    example: tuple[str, str, str] | None = None  # the first unusable reply, what was wrong, the shape asked for
    tripped: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, usable: bool, reply: str = "", why: str = "", shape: str = "") -> bool:
        """Count one parsed reply; True once the stage must stop (from this reply on)."""
        with self._lock:
            self.replies += 1
            if not usable:
                self.unusable += 1
                self.example = self.example or (reply, why, shape)
                if self.unusable >= MIN_UNUSABLE and self.unusable > self.max_fraction * self.replies:
                    self.tripped = True
            return self.tripped

    def failure(self, model: str, base_url: str) -> str | None:
        """The stage's error message once tripped, else None."""
        if not self.tripped:
            return None
        reply, why, shape = self.example or ("", "", "")
        shown = reply if len(reply) <= EXAMPLE_CHARS else reply[:EXAMPLE_CHARS] + f"... ({len(reply)} characters)"
        if reply.strip() and reply.strip()[:20] in why:  # the parser's message quotes the reply: once is enough
            why = why.split(":", 1)[0]
        return (
            f"Teacher model {model} at {base_url}: {self.unusable} of {self.replies} replies in {self.stage} "
            f"were not in the JSON shape asked for (more than TEACHER_MAX_UNUSABLE_FRACTION={self.max_fraction:g}); "
            f"stopped before sending more requests. Expected: {shape}. One reply: {shown!r} ({why}). "
            "Use a model that follows JSON instructions (an instruct or chat model, with its chat template on "
            "the server), or raise TEACHER_MAX_TOKENS if its replies are cut short; usable answers are cached, "
            "unusable ones are not, so the same command asks again"
        )
