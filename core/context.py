"""What every stage is given: the configuration, the workspace, the Teacher, the stop flag, and the solver engines
the round loop keeps open from one stage to the next."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from prosetting.core.config import Config
from prosetting.core.models import ResolvedModel, resolve_model
from prosetting.core.state_manager import Paths, StateManager


class StageInterrupted(Exception):
    """A stop was requested (Ctrl+C, SIGTERM, semi-mode quit); the stage stopped at a safe point."""


@dataclass
class RunContext:
    cfg: Config
    sm: StateManager
    stop_event: threading.Event = field(default_factory=threading.Event)
    log_file: Path | None = None  # the run's log, named in failure records
    # The run's Teacher (teacher_model.base.Teacher): given here, or built from the configuration on first use by
    # teacher_model.teacher_for(ctx); every stage of the run shares it (its cache, limits and counters).
    teacher: object = None
    # SOLVER_MODEL_PATH / GENERATOR_MODEL_PATH resolved to local folders (round_controller.prepare fills it from the
    # commits recorded in training_config.json; anything else resolves on first use)
    models: dict[str, ResolvedModel] = field(default_factory=dict)
    # Solver engines kept open between stages that sample the same model (collectors.engine_pool.shared_engines
    # makes them on first use). Only the round loop shares them: it closes them before any other stage and at the
    # end of the run; without sharing, a stage's engines close with the stage.
    share_engines: bool = False
    _engines: object = None

    @property
    def paths(self) -> Paths:
        return self.sm.paths

    def check_stop(self) -> None:
        """Stages call this at safe points (between batches, between items)."""
        if self.stop_event.is_set():
            raise StageInterrupted("stop requested")

    def close_engines(self, reason: str = "") -> None:
        """Stop the solver engines kept open between stages, if any, so their memory is free for what comes next."""
        if self._engines is not None:
            self._engines.close(reason)

    def model_path(self, key: str) -> Path:
        """The local folder of a model setting (a folder as it is, a Hub id as its cached snapshot)."""
        if key not in self.models:
            self.models[key] = resolve_model(
                getattr(self.cfg, key), getattr(self.cfg, key.replace("_PATH", "_REVISION")) or None
            )
        return Path(self.models[key].path)

    def base_model(self) -> Path:
        return self.model_path("SOLVER_MODEL_PATH") if self.cfg.SOLVER_MODEL_PATH else self.paths.base_model

    def solver_for_round(self, r: int) -> Path:
        """Round r samples with the newest merged solver trained before it, else the initial one."""
        return self.paths.newest_trained("solver", before=r) or self.base_model()
