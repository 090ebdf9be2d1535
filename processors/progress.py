"""Where a run stands, read once: every round's stages with their status and statistics, where the next run starts,
the last result and the last failure. The dry run, the health check, the semi driver and the report read progress
through `read_progress`, never the progress files themselves.

    progress = read_progress(sm, cfg.TOTAL_ROUNDS)
    progress.resume                              # ResumePoint(round=2, stage=<train>, status="failed") or None
    progress.round(1).stats("grade")["zones"]    # a done stage's statistics
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prosetting.core.state_manager import StateManager
from prosetting.processors.stages import STAGES, Stage

# A stage's status in round_XX_progress.json, as the dry run labels it and as the health check says what the next
# run does with it. "todo": no record yet; "not recorded": no record in a completed round (a workspace from before
# the stage existed).
STATUS_LABEL = {
    "done": "done (skip)",
    "running": "resume",
    "interrupted": "resume",
    "failed": "retry",
    "todo": "todo",
    "not recorded": "not recorded",
}
STATUS_NEXT = {
    "running": "resumed (it was running when the process stopped)",
    "interrupted": "resumed",
    "failed": "retried (it failed last time)",
    "todo": "started",
}


@dataclass(frozen=True)
class StageProgress:
    stage: Stage
    record: dict[str, Any]  # the stage's entry in round_XX_progress.json ({} before it first ran)
    round_over: bool = False  # the round is completed

    @property
    def status(self) -> str:
        return self.record.get("status", "not recorded" if self.round_over else "todo")

    @property
    def stats(self) -> dict[str, Any]:
        return self.record.get("stats") or {}


@dataclass(frozen=True)
class RoundProgress:
    round: int
    stages: tuple[StageProgress, ...]

    def of(self, name: str) -> StageProgress:
        for s in self.stages:
            if s.stage.name == name:
                return s
        raise KeyError(f"round {self.round} has no stage {name!r}")

    def stats(self, name: str) -> dict[str, Any]:
        return self.of(name).stats

    @property
    def done(self) -> bool:
        """Every stage done (a stage a finished round has no record of does not count against it)."""
        return all(s.status in ("done", "not recorded") for s in self.stages)

    def seconds(self) -> dict[str, float | None]:
        """Each stage's last duration, for the stages that have a record."""
        return {s.stage.name: s.record.get("seconds") for s in self.stages if s.record}


@dataclass(frozen=True)
class ResumePoint:
    round: int
    stage: Stage
    status: str  # its status now: what the next run does with it is STATUS_NEXT[status]


@dataclass(frozen=True)
class RunProgress:
    state: dict[str, Any]  # training_state.json
    rounds: tuple[RoundProgress, ...]  # rounds 1..TOTAL_ROUNDS

    def round(self, r: int) -> RoundProgress:
        return self.rounds[r - 1]

    @property
    def resume(self) -> ResumePoint | None:
        """Where the next run starts: the first stage not done of the first round neither completed nor given up;
        None when every round is."""
        finished = set(self.state["completed_rounds"]) | set(self.state["failed_rounds"])
        for rp in self.rounds:
            if rp.round in finished:
                continue
            for sp in rp.stages:
                if sp.status != "done":
                    return ResumePoint(rp.round, sp.stage, sp.status)
        return None

    def last_result(self, up_to: int) -> tuple[int, StageProgress] | None:
        """The newest stage of round `up_to` or before that finished, done or failed."""
        for rp in reversed(self.rounds[:up_to]):
            for sp in reversed(rp.stages):
                if sp.status in ("done", "failed"):
                    return rp.round, sp
        return None

    @property
    def last_failure(self) -> dict[str, Any] | None:
        return self.state["failures"][-1] if self.state["failures"] else None


def read_round(sm: StateManager, r: int, state: dict[str, Any] | None = None) -> RoundProgress:
    state = state if state is not None else sm.load_state()
    over = r in state["completed_rounds"]
    recorded = sm.load_progress(r)["stages"]
    return RoundProgress(r, tuple(StageProgress(s, recorded.get(s.name) or {}, over) for s in STAGES))


def read_progress(sm: StateManager, total_rounds: int) -> RunProgress:
    """The run's state and rounds 1..total_rounds; raises ValueError (naming the file) on a state it cannot read."""
    state = sm.load_state()
    return RunProgress(state, tuple(read_round(sm, r, state) for r in range(1, total_rounds + 1)))
