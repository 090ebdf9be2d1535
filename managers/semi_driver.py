"""Interactive mode: before each stage (or round) the user picks [c]ontinue, [s]tatus or [q]uit, and
[r]etry after a failure. End of input (no terminal, a closed pipe) quits cleanly with a resumable state.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from prosetting.core.config import Config
from prosetting.core.records import read_pool, read_trajectories
from prosetting.datasets.data_saver import count_rows
from prosetting.managers.round_controller import Decision
from prosetting.processors.progress import read_progress


def status_text(controller, r: int) -> str:
    sm, paths, cfg = controller.sm, controller.paths, controller.cfg
    progress = read_progress(sm, max(r, cfg.TOTAL_ROUNDS))
    state = progress.state
    done = [sp.stage.name for sp in progress.round(r).stages if sp.status == "done"]
    questions = read_pool(paths, r)
    traj = len(read_trajectories(paths, r))
    pairs = count_rows(paths.dataset_dir(r) / "train.parquet") + count_rows(paths.dataset_dir(r) / "validation.parquet")
    lines = [
        f"  round {r} of {cfg.TOTAL_ROUNDS}; completed rounds {state['completed_rounds']}, failed "
        f"{state['failed_rounds']}",
        f"  stages done this round: {', '.join(done) or 'none'}",
        f"  questions {len(questions)}, trajectories {traj}, pairs {pairs}",
        f"  solver for this round: {controller.ctx.solver_for_round(r)}",
    ]
    last = progress.last_result(r)
    if last:
        rr, sp = last
        detail = sp.stats if sp.status == "done" else sp.record.get("error")
        lines.append(f"  last result: round {rr} {sp.stage.name} {sp.status}: {detail}")
    f = progress.last_failure
    if f:
        lines.append(f"  last failure: round {f['round']} {f['stage']}: {f['error']} (log: {f['log']})")
    return "\n".join(lines)


class SemiDriver:
    def __init__(self, cfg: Config, pause: str = "stage", read: Callable[[str], str] | None = None, out=None):
        self.cfg = cfg
        self.pause = pause
        self.read = read or input
        self.out = out or sys.stdout
        self._asked_round: int | None = None

    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def _ask(self, prompt: str, allowed: str) -> str:
        """A valid choice, asked again on invalid input; 'q' on end of input."""
        while True:
            try:
                answer = self.read(prompt).strip().lower()
            except EOFError:
                self._say("\n(end of input: quitting; the state is saved and the run can be resumed)")
                return "q"
            if answer[:1] in allowed and answer:
                return answer[:1]
            self._say(f"please answer one of: {', '.join(allowed)}")

    def before_stage(self, controller, r: int, stage) -> Decision:
        if self.pause == "round":
            if self._asked_round == r:
                return Decision.CONTINUE
            self._asked_round = r
        what = f"Round {r}" if self.pause == "round" else f"Round {r}, stage {stage.name} ({stage.title})"
        while True:
            choice = self._ask(f"Preparing: {what}. Please select operation [c]continue [s]status [q]quit: ", "csq")
            if choice == "s":
                self._say(status_text(controller, r))
                continue
            return Decision.CONTINUE if choice == "c" else Decision.QUIT

    def on_failure(self, controller, r: int, stage, error: BaseException, tries: int) -> Decision:
        self._say(f"Round {r} stage {stage.name} failed: {type(error).__name__}: {error}")
        self._say(f"  [c] gives the stage up for this round: {stage.give_up}")
        while True:
            choice = self._ask(
                "Please select operation [r]retry [s]status [c]continue with next round [q]quit: ", "rscq"
            )
            if choice == "s":
                self._say(status_text(controller, r))
                continue
            return {"r": Decision.RETRY, "c": Decision.NEXT_ROUND, "q": Decision.QUIT}[choice]
