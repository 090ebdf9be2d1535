"""The round loop: five checkpointed stages per round, and the one place for retry, resume, signals and reports.

    controller = RoundController(cfg, driver=AutoDriver(cfg))
    summary = controller.run()

The stages are declared in processors/stages.py (what each runs, reads and writes). The solver's engines stay open
from the evaluation of a model to the next round's collection of the same model (one start, not two); the loop
closes them before every other stage (training needs the devices) and when the run ends. A stage marked done in
round_XX_progress.json is skipped on resume; one that was running when the process died is run again,
and its own per-item files let it skip the work already saved.
"""

from __future__ import annotations

import logging
import shutil
import signal
import threading
import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Protocol

from prosetting.core.config import Config, diff_configs
from prosetting.core.context import RunContext, StageInterrupted
from prosetting.core.io import atomic_write_json, read_json, write_jsonl
from prosetting.core.models import ModelNotFound, resolve_for_run
from prosetting.core.questions import load_questions_file
from prosetting.core.records import was_trained, write_pool
from prosetting.core.state_manager import SHIPPED_SEEDS, Paths, StateManager
from prosetting.core.tracking import RoundTracker, TrackingError, forget_rounds, round_scalars
from prosetting.processors import evaluation
from prosetting.processors.eval_sets import EvalSetError
from prosetting.processors.question_enhancer import carry_pool_forward
from prosetting.processors.stages import STAGES, Stage, discard_plan, redone, stages_from
from prosetting.trainers.warm_start import build_embedded_solver
from prosetting.utils import eval_report, report

log = logging.getLogger(__name__)


class Decision(Enum):
    """What a driver decides around a stage."""

    CONTINUE = "continue"  # before a stage: run it
    QUIT = "quit"  # the user ends the run: its status is "stopped", resumable
    RETRY = "retry"  # after a failure: run the stage again
    NEXT_ROUND = "next_round"  # after a failure: give the round up, go on with the next
    STOP = "stop"  # after a failure: the run failed


class StopRun(Exception):
    """The run ends here with `status`: "failed" (a stage failed for good) or "stopped" (the user quit)."""

    def __init__(self, message: str, status: str):
        super().__init__(message)
        self.status = status


class Driver(Protocol):
    """Decides, around each stage, whether to go on (auto: always; semi: asks the user)."""

    def before_stage(self, controller: RoundController, r: int, stage: Stage) -> Decision:
        """CONTINUE or QUIT."""
        ...

    def on_failure(
        self, controller: RoundController, r: int, stage: Stage, error: BaseException, tries: int
    ) -> Decision:
        """RETRY, NEXT_ROUND, STOP (the run failed) or QUIT (the user ends it)."""
        ...


class AutoDriver:
    """Unattended: retries AUTO_RETRY_MAX times AUTO_RETRY_INTERVAL apart, then stops or moves on. An error
    that says asking again cannot help (`retryable` false: a Teacher endpoint that refuses our requests or
    does not answer in the asked shape) stops the run at once: a retry or the next round would pay for the
    same failure again."""

    def __init__(self, cfg: Config, sleep: Callable[[float], bool] | None = None):
        self.cfg = cfg
        self.sleep = sleep

    def before_stage(self, controller, r, stage) -> Decision:
        return Decision.CONTINUE

    def on_failure(self, controller, r, stage, error, tries) -> Decision:
        cfg = self.cfg
        if getattr(error, "retryable", True) is False:
            return Decision.STOP
        if cfg.AUTO_RETRY_ENABLED and tries <= cfg.AUTO_RETRY_MAX:
            log.warning(
                "round %d %s failed (try %d of %d): %s; retrying in %.0fs",
                r,
                stage.name,
                tries,
                cfg.AUTO_RETRY_MAX + 1,
                error,
                cfg.AUTO_RETRY_INTERVAL,
            )
            if controller.ctx.stop_event.wait(cfg.AUTO_RETRY_INTERVAL):
                raise StageInterrupted("stop requested while waiting to retry")
            return Decision.RETRY
        if cfg.AUTO_CONTINUE_ON_FAILURE:
            log.warning("round %d %s given up (AUTO_CONTINUE_ON_FAILURE): %s", r, stage.name, stage.give_up)
            return Decision.NEXT_ROUND
        return Decision.STOP


class RoundController:
    def __init__(self, cfg: Config, driver: Driver | None = None, sources: dict[str, str] | None = None):
        self.cfg = cfg
        self.sm = StateManager(cfg.workspace)
        self.ctx = RunContext(cfg=cfg, sm=self.sm, share_engines=True)
        self.driver = driver or AutoDriver(cfg)
        self.sources = sources or {}
        self.started = time.time()
        self._signals_seen = 0
        self.tracker: RoundTracker | None = None

    @property
    def paths(self) -> Paths:
        return self.sm.paths

    # --- set-up -----------------------------------------------------------------------------
    def check_config_change(self) -> list[tuple[str, object, object]]:
        """Compare with the saved training_config.json; the current value wins, and is said."""
        saved = read_json(self.paths.config)
        changes = diff_configs(saved, self.cfg.to_dict()) if saved else []
        for key, old, new in changes:
            log.warning(
                "configuration changed since the last run: %s was %r, now %r (the new value is used)", key, old, new
            )
        return changes

    def prepare(self) -> None:
        """Everything before round 1: config, models, initial solver, round-1 pool, held-out baseline."""
        paths, cfg = self.paths, self.cfg
        self.check_config_change()
        self.tracker = RoundTracker.from_config(cfg)
        saved = read_json(paths.config) or {}
        evaluation.prepare_eval_sets(cfg, paths)
        self.resolve_models(saved.get("resolved_models") or {})
        atomic_write_json(
            paths.config,
            {**self.cfg.to_dict(), "resolved_models": {k: m.to_dict() for k, m in self.ctx.models.items()}},
        )
        if cfg.embedded and not (paths.base_model / "config.json").exists():
            log.info(
                "building the embedded solver (tiny Qwen2, SFT warm start until %.0f%% validation accuracy, at most "
                "%d steps) in %s",
                100 * cfg.WARMSTART_TARGET_ACCURACY,
                cfg.WARMSTART_STEPS,
                paths.base_model,
            )
            build_embedded_solver(paths.base_model, cfg)
        if not paths.questions(1).exists():
            seeds = load_questions_file(cfg.QUESTIONS_FILE or SHIPPED_SEEDS)
            write_pool(paths, 1, seeds)
            log.info("round 1 pool: %d seed questions from %s", len(seeds), cfg.QUESTIONS_FILE or SHIPPED_SEEDS)
        heldout = evaluation.heldout_file(cfg)
        if heldout and not paths.heldout.exists():
            qs = load_questions_file(heldout, origin="heldout")
            write_jsonl(paths.heldout, qs)
        self.evaluate("baseline", self.ctx.base_model())
        self.track()

    def resolve_models(self, recorded: dict) -> None:
        """SOLVER_MODEL_PATH and GENERATOR_MODEL_PATH as local folders, once per run, each only when some round
        uses it (Config.models_in_use: nothing is downloaded for a role no round plays); a Hub id at the commit
        recorded by an earlier start of this workspace, so a resumed run keeps its snapshot."""
        for key, revision_key in self.cfg.models_in_use():
            value = getattr(self.cfg, key)
            self.ctx.models[key] = model = resolve_for_run(value, getattr(self.cfg, revision_key), recorded.get(key))
            if model.repo_id:
                log.info("%s: %s", key, model.describe())

    def evaluate(self, label: str, model_dir: Path) -> dict | None:
        """Every evaluation set on a model, cached in results/evaluations.json under `label`
        (processors/evaluation.py): the start's here, each round's in its `evaluate` stage."""
        return evaluation.evaluate_model(self.ctx, label, model_dir, evaluation.eval_sets(self.cfg, self.paths))

    # --- the loop ---------------------------------------------------------------------------
    def _install_signals(self) -> dict:
        def handler(signum, frame):
            self._signals_seen += 1
            if self._signals_seen == 1:
                log.warning(
                    "%s received: stopping at the next safe point (press Ctrl+C again to stop now)",
                    signal.Signals(signum).name,
                )
                self.ctx.stop_event.set()
            else:
                raise KeyboardInterrupt

        if threading.current_thread() is not threading.main_thread():
            return {}
        return {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

    def run(self) -> dict:
        """Run every round that is not done yet; returns the summary that is also saved."""
        stale = self.sm.acquire_lock()
        if stale:
            log.warning(
                "took over the lock of a run that is gone (pid %s on %s, started %s)",
                stale.get("pid"),
                stale.get("host"),
                stale.get("started"),
            )
        previous = self._install_signals()
        state = self.sm.load_state()
        state["status"] = "running"
        state.setdefault("runs", []).append({"started": time.strftime("%Y-%m-%dT%H:%M:%S")})
        self.sm.save_state(state)
        status = "failed"
        try:
            self.prepare()
            for r in range(1, self.cfg.TOTAL_ROUNDS + 1):
                state = self.sm.load_state()
                if r in state["completed_rounds"] or r in state["failed_rounds"]:
                    continue
                self.run_round(r)
            status = "completed"
        except StageInterrupted:
            status = "interrupted"
        except StopRun as exc:
            status = exc.status
        except KeyboardInterrupt:
            status = "interrupted"
        except (ModelNotFound, EvalSetError, TrackingError) as exc:
            log.error("%s", exc)
            self.record_failure(None, "setup", exc)
            status = "failed"
        except Exception as exc:
            log.exception("run failed outside any stage: %s", exc)
            self.record_failure(None, "setup", exc)
            status = "failed"
        finally:
            self.ctx.close_engines("the run ends")  # first: no engine process outlives the run, whatever ended it
            for s, h in previous.items():
                signal.signal(s, h)
            state = self.sm.load_state()
            state["status"] = status
            state["runs"][-1].update(finished=time.strftime("%Y-%m-%dT%H:%M:%S"), status=status)
            self.sm.save_state(state)
            summary = report.write_summary(self.cfg, self.sm, status, self.started)
            if self.tracker is not None:
                self.tracker.close()
            self.sm.release_lock()
        if status == "interrupted":
            log.warning("stopped; state saved. Continue with the same command (workspace %s)", self.paths.root)
        return summary

    def run_round(self, r: int) -> None:
        for stage in STAGES:
            if self.sm.is_stage_done(r, stage.name):
                continue
            if not stage.samples_solver:
                self.ctx.close_engines(f"before round {r} {stage.name}")
            if self.driver.before_stage(self, r, stage) is Decision.QUIT:
                raise StopRun(f"quit before round {r} {stage.name}", status="stopped")
            if not self.run_stage(r, stage):
                self.finish_round(r, failed=True)
                return
        self.finish_round(r, failed=False)

    def run_stage(self, r: int, stage: Stage) -> bool:
        """Run one stage with the driver's retry policy; False when the round is abandoned."""
        tries = 0
        while True:
            tries += 1
            self.ctx.check_stop()
            self.sm.mark_stage_started(r, stage.name)
            log.info("round %d/%d: %s", r, self.cfg.TOTAL_ROUNDS, stage.title)
            try:
                stats = stage.run(self.ctx, r)
            except (StageInterrupted, KeyboardInterrupt):
                self.sm.mark_stage_interrupted(r, stage.name)
                raise
            except Exception as exc:
                log_file = stage.log_file(self.paths, r)
                self.sm.mark_stage_failed(r, stage.name, f"{type(exc).__name__}: {exc}", log_file)
                self.record_failure(r, stage.name, exc, log_file)
                log.error("round %d %s failed: %s", r, stage.name, exc, exc_info=log.isEnabledFor(logging.DEBUG))
                decision = self.driver.on_failure(self, r, stage, exc, tries)
                if decision is Decision.RETRY:
                    continue
                if decision is Decision.NEXT_ROUND:
                    return False
                if decision is Decision.QUIT:
                    raise StopRun(f"quit after round {r} {stage.name} failed", status="stopped") from exc
                raise StopRun(f"round {r} {stage.name} failed", status="failed") from exc
            self.sm.mark_stage_done(r, stage.name, stats)
            return True

    def record_failure(self, r: int | None, stage: str, exc: BaseException, log_file: str | None = None) -> None:
        state = self.sm.load_state()
        state["failures"].append(
            {
                "round": r,
                "stage": stage,
                "error": f"{type(exc).__name__}: {exc}",
                "log": log_file or (str(self.ctx.log_file) if self.ctx.log_file else None),
                "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            }
        )
        self.sm.save_state(state)

    def finish_round(self, r: int, failed: bool) -> None:
        progress = self.sm.load_progress(r)
        measured = None
        if failed:
            carry_pool_forward(self.ctx, r)
        elif was_trained(self.paths, r):  # measured by the round's evaluate stage
            measured = (read_json(self.paths.evaluations) or {}).get(f"round_{r}")
        results = {"round": r, "failed": failed, "stages": progress["stages"], "heldout": measured}
        atomic_write_json(self.paths.round_results(r), results)
        state = self.sm.load_state()
        (state["failed_rounds"] if failed else state["completed_rounds"]).append(r)
        state["current_round"] = r + 1
        self.sm.save_state(state)
        report.print_round_table(self.cfg, self.sm, r)
        self.track()

    def track(self) -> None:
        """Send the start's and every finished round's figures that the trackers do not have yet (TRL_REPORT_TO)."""
        if self.tracker is None:
            return
        evaluations = read_json(self.paths.evaluations) or {}
        state = self.sm.load_state()
        finished = sorted(set(state["completed_rounds"]) | set(state["failed_rounds"]))
        rounds = [(r, was_trained(self.paths, r)) for r in finished]
        table = eval_report.eval_table(evaluations, rounds, self.cfg.EVAL_K)
        by_round = {row["round"]: row for row in (table or {}).get("rows", [])}
        self.tracker.log(0, round_scalars(None, by_round.get(0)))
        for r, _ in rounds:
            self.tracker.log(r, round_scalars(report.round_row(self.sm, r, evaluations), by_round.get(r)))

    # --- redo from a point ------------------------------------------------------------------
    def discard_plan(self, r: int, stage: str) -> list[Path]:
        """The files `reset(r, stage)` would delete: that stage's outputs and everything after."""
        return discard_plan(self.paths, r, stage, self.cfg.TOTAL_ROUNDS)

    def reset(self, r: int, stage: str) -> list[Path]:
        self.sm.acquire_lock()
        try:
            files = self.discard_plan(r, stage)
            for p in files:
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
            for rr, s in redone(r, stage, self.cfg.TOTAL_ROUNDS):
                s.forget(self.paths, rr)
            self.sm.reset_from(r, [s.name for s in stages_from(stage)], self.cfg.TOTAL_ROUNDS)
            forget_rounds(self.cfg.workspace, r)
        finally:
            self.sm.release_lock()
        return files
