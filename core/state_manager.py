"""Workspace layout, the run lock and the JSON state that lets a run resume from any stage.

    sm = StateManager(Path("workspace")); sm.acquire_lock()
    sm.paths.trajectories(1)            # workspace/data/round_01_trajectories.jsonl
    sm.mark_stage_done(1, "collect", {"questions": 120})

Files (seed 001's layout; JSON Lines where per-item data is appended):
    training_state.json, training_config.json, round_XX_progress.json, auto_training_summary.json
    data/round_XX_{questions.json, trajectories.jsonl, rewards.jsonl, solver_training.json,
                   enhanced_questions.jsonl, results.json}
    datasets/round_XX/{train.parquet, validation.parquet, dataset_info.json}
    training_results/trl_rX_result.json, checkpoints/merged_solver_rX/, logs/
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prosetting.core.io import atomic_write_json, read_json

SHIPPED_DATA = Path(__file__).resolve().parent.parent / "data"
"""The data the package ships: the embedded default's seed questions and its held-out set."""
SHIPPED_SEEDS = SHIPPED_DATA / "seed_questions.jsonl"
SHIPPED_HELDOUT = SHIPPED_DATA / "heldout.jsonl"
STATE_VERSION = 1


def _read_old_names(entry: dict[str, Any]) -> None:
    """A stage's progress entry as written before `attempts` meant only a trajectory row's list: its retry counter
    was `attempts` (now `tries`), and the collection statistics' count of attempts too (now `num_attempts`). The next
    write of the entry saves the new names."""
    if "attempts" in entry:
        entry.setdefault("tries", entry.pop("attempts"))
    stats = entry.get("stats")
    if isinstance(stats, dict) and isinstance(stats.get("attempts"), int):
        stats.setdefault("num_attempts", stats.pop("attempts"))


class WorkspaceLockedError(RuntimeError):
    """Another live process runs on this workspace."""


@dataclass(frozen=True)
class Paths:
    """Every file of a workspace, named in one place."""

    root: Path

    @property
    def state(self) -> Path:
        return self.root / "training_state.json"

    @property
    def config(self) -> Path:
        return self.root / "training_config.json"

    @property
    def summary(self) -> Path:
        return self.root / "auto_training_summary.json"

    @property
    def report(self) -> Path:
        return self.root / "results" / "report.md"

    @property
    def plot(self) -> Path:
        return self.root / "results" / "progress.png"

    @property
    def lock(self) -> Path:
        return self.root / ".prosetting.lock"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def base_model(self) -> Path:
        """Where the embedded solver is built and warm-started (once per workspace)."""
        return self.root / "checkpoints" / "base_solver"

    @property
    def heldout(self) -> Path:
        return self.data / "heldout.jsonl"

    @property
    def evaluations(self) -> Path:
        return self.root / "results" / "evaluations.json"

    def eval_set(self, name: str) -> Path:
        """An EVAL_SETS set's questions, read once from its source (data/eval/sources.json says which)."""
        return self.data / "eval" / f"{name}.jsonl"

    @property
    def eval_sources(self) -> Path:
        return self.data / "eval" / "sources.json"

    @property
    def tracking(self) -> Path:
        """Live tracking of the round figures: tensorboard/ events, run.json (run ids, rounds already logged)."""
        return self.root / "tracking"

    def progress(self, r: int) -> Path:
        return self.root / f"round_{r:02d}_progress.json"

    def _data(self, r: int, name: str) -> Path:
        return self.data / f"round_{r:02d}_{name}"

    def questions(self, r: int) -> Path:
        return self._data(r, "questions.json")

    def trajectories(self, r: int) -> Path:
        return self._data(r, "trajectories.jsonl")

    def rewards(self, r: int) -> Path:
        return self._data(r, "rewards.jsonl")

    def solver_training(self, r: int) -> Path:
        return self._data(r, "solver_training.json")

    def enhanced_questions(self, r: int) -> Path:
        return self._data(r, "enhanced_questions.jsonl")

    def round_results(self, r: int) -> Path:
        return self._data(r, "results.json")

    def dataset_dir(self, r: int) -> Path:
        return self.root / "datasets" / f"round_{r:02d}"

    def train_result(self, r: int) -> Path:
        return self.root / "training_results" / f"trl_r{r}_result.json"

    def train_run_dir(self, r: int) -> Path:
        return self.root / "training_runs" / f"r{r}"

    def merged_solver(self, r: int) -> Path:
        return self.root / "checkpoints" / f"merged_solver_r{r}"

    def train_log(self, r: int) -> Path:
        return self.logs / f"trl_r{r}.log"

    def generator_records(self, r: int) -> Path:
        return self._data(r, "generator_training.jsonl")

    def generator_dir(self, r: int) -> Path:
        return self.root / "checkpoints" / f"generator_r{r}"

    def generator_result(self, r: int) -> Path:
        return self.root / "training_results" / f"generator_r{r}_result.json"

    def generator_run_dir(self, r: int) -> Path:
        return self.root / "training_runs" / f"generator_r{r}"

    def generator_log(self, r: int) -> Path:
        return self.logs / f"generator_r{r}.log"

    def newest_trained(self, model: str, before: int) -> Path | None:
        """The newest `model` ("solver": merged_solver_rX, "generator": generator_rX) trained in a round
        before `before` (its result says trained and its folder is there); None when none was."""
        result, folder = {
            "solver": (self.train_result, self.merged_solver),
            "generator": (self.generator_result, self.generator_dir),
        }[model]
        for r in range(before - 1, 0, -1):
            done = read_json(result(r))
            if done and done.get("trained") and folder(r).is_dir():
                return folder(r)
        return None

    def trajectory_parts(self, r: int) -> Path:
        """Collection batches saved but not yet merged into trajectories(r), one file per batch."""
        return self._data(r, "trajectories.parts")

    def grade_batch(self, r: int) -> Path:
        """The Teacher batch job (TEACHER_BATCH_API) of round r's grading: its id, so a restart polls it."""
        return self._data(r, "grade_batch.json")

    def enhance_batch(self, r: int) -> Path:
        """The Teacher batch job of round r's next-round preparation."""
        return self._data(r, "enhance_batch.json")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class StateManager:
    """Owns training_state.json, the round progress files and the workspace lock."""

    def __init__(self, root: Path):
        self.paths = Paths(Path(root).resolve())
        self._locked = False

    # --- lock -------------------------------------------------------------------------------
    def read_lock(self) -> dict | None:
        try:
            return json.loads(self.paths.lock.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def lock_is_stale(self, info: dict | None) -> bool:
        if not info:
            return True
        if info.get("host") != socket.gethostname():
            return False  # cannot tell from here; treat as live
        return not _pid_alive(int(info.get("pid", -1)))

    def acquire_lock(self) -> dict | None:
        """Take the workspace; returns the stale lock taken over, if any. Raises if a live run holds it."""
        self.paths.root.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
        stale = None
        for _ in range(3):
            try:
                fd = os.open(self.paths.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                info = self.read_lock()
                if info and info.get("pid") == os.getpid():
                    self._locked = True
                    return None
                if not self.lock_is_stale(info):
                    raise WorkspaceLockedError(
                        f"workspace {self.paths.root} is in use by process {info.get('pid')} on {info.get('host')} "
                        f"(started {info.get('started')}); wait for it or stop it, or use another WORKSPACE_DIR"
                    ) from None
                self.paths.lock.unlink(missing_ok=True)
                stale = info
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
                fh.flush()
                os.fsync(fh.fileno())
            self._locked = True
            return stale
        raise WorkspaceLockedError(f"could not take the lock {self.paths.lock}; another run is starting")

    def release_lock(self) -> None:
        if self._locked:
            info = self.read_lock()
            if info and info.get("pid") == os.getpid():
                self.paths.lock.unlink(missing_ok=True)
            self._locked = False

    # --- state ------------------------------------------------------------------------------
    def load_state(self) -> dict[str, Any]:
        state = read_json(self.paths.state)
        if state is None:
            return {
                "version": STATE_VERSION,
                "status": "new",
                "current_round": 1,
                "completed_rounds": [],
                "failed_rounds": [],
                "failures": [],
                "runs": [],
            }
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"{self.paths.state}: state version {state.get('version')} is not {STATE_VERSION}")
        return state

    def save_state(self, state: dict[str, Any]) -> None:
        state["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        atomic_write_json(self.paths.state, state)

    def load_progress(self, r: int) -> dict[str, Any]:
        progress = read_json(self.paths.progress(r)) or {"round": r, "stages": {}}
        for entry in progress["stages"].values():
            _read_old_names(entry)
        return progress

    def stage_record(self, r: int, stage: str) -> dict[str, Any]:
        return self.load_progress(r)["stages"].get(stage, {})

    def is_stage_done(self, r: int, stage: str) -> bool:
        return self.stage_record(r, stage).get("status") == "done"

    def _update_stage(self, r: int, stage: str, **record: Any) -> None:
        progress = self.load_progress(r)
        entry = progress["stages"].setdefault(stage, {})
        entry.update(record)
        atomic_write_json(self.paths.progress(r), progress)

    def mark_stage_started(self, r: int, stage: str) -> None:
        prev = self.stage_record(r, stage)
        self._update_stage(r, stage, status="running", started=time.time(), tries=prev.get("tries", 0) + 1)

    def mark_stage_done(self, r: int, stage: str, stats: dict[str, Any]) -> None:
        """Call only after the stage's outputs are durable on disk."""
        rec = self.stage_record(r, stage)
        now = time.time()
        self._update_stage(
            r,
            stage,
            status="done",
            finished=now,
            seconds=round(now - rec.get("started", now), 2),
            stats=stats,
            error=None,
        )

    def mark_stage_failed(self, r: int, stage: str, error: str, log: str | None = None) -> None:
        self._update_stage(r, stage, status="failed", finished=time.time(), error=error, log=log)

    def mark_stage_interrupted(self, r: int, stage: str) -> None:
        self._update_stage(r, stage, status="interrupted", finished=time.time())

    def reset_from(self, r: int, drop: Sequence[str], total_rounds: int) -> list[Path]:
        """Forget the stages `drop` of round `r` (a stage and every one after it) and every stage of the rounds
        after it; returns the progress files touched."""
        touched = []
        for rr in range(r, total_rounds + 1):
            path = self.paths.progress(rr)
            if not path.exists():
                continue
            progress = self.load_progress(rr)
            if rr == r:
                for s in drop:
                    progress["stages"].pop(s, None)
            else:
                progress["stages"].clear()
            atomic_write_json(path, progress)
            touched.append(path)
        state = self.load_state()
        state["completed_rounds"] = [x for x in state["completed_rounds"] if x < r]
        state["failed_rounds"] = [x for x in state["failed_rounds"] if x < r]
        state["current_round"] = r
        state["status"] = "running"
        self.save_state(state)
        return touched
