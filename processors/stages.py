"""The stages of a round, each declared once: what it runs, reads and writes, its log, its settings, and what giving
it up means.

    for stage in STAGES:                        # collect, grade, generator, export, train, enhance, evaluate
        stage.outputs(paths, r)                 # every file or folder it creates: what a redo of it discards
        stage.run(ctx, r)                       # its statistics, saved in round_XX_progress.json

The round loop, redo, the dry-run plan, the health check, the semi driver and the report read these objects, never a
list of names. A stage is a function of files: it reads `inputs` (and the round's solver), writes `outputs`, and
skips whatever of its own per-item work is already saved, so running it again after a crash is resuming it.

Five are the method's (Socratic-Zero's round: collect, grade, export, train, enhance); `generator` trains the
Generator on the Teacher's questions once their utility is known, and `evaluate` measures the round's trained
solver on the evaluation sets, under the same retry, resume and redo as the others. A workspace from before these
two were stages resumes as it is: a completed round without their records stays completed ("not recorded"), and a
round in progress runs them, finding what grading and the round's end had already saved (the Generator's records
and result, the evaluation's cached figures).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prosetting.collectors.placement import check_engine_settings
from prosetting.collectors.trajectory_collector import run_collection
from prosetting.core.config import Config, group_keys
from prosetting.core.context import RunContext
from prosetting.core.records import (
    CollectStats,
    EnhanceStats,
    EvaluateStats,
    ExportStats,
    GeneratorStats,
    GradeStats,
    TrainStats,
)
from prosetting.core.state_manager import Paths
from prosetting.datasets.dpo_data_converter import run_export
from prosetting.processors.evaluation import check_evaluation_settings, forget_evaluation, run_evaluation
from prosetting.processors.generator_stage import run_generator
from prosetting.processors.grading import run_grading
from prosetting.processors.question_enhancer import check_pool_settings, run_enhancement
from prosetting.teacher_model import check_endpoint_settings
from prosetting.trainers.launch import check_launch_settings
from prosetting.trainers.specs import check_training_settings
from prosetting.trainers.trl_trainer import run_training

Files = Callable[[Paths, int], list[Path]]
Inputs = Callable[[Paths, int, Config], list[Path]]
Check = Callable[[Config], None]  # raises core.config.ConfigError naming the key
RUN_WIDE = ("Run and workspace", "Models and data")  # the Config groups every stage may read


@dataclass(frozen=True)
class Stage:
    """One step of a round."""

    name: str
    title: str
    run: Callable[[RunContext, int], dict]
    inputs: Inputs  # the workspace files it reads (besides the round's solver, for those that sample or train it)
    outputs: Files  # every file or folder it creates, present or not
    groups: tuple[str, ...]  # the Config groups (core/config.GROUPS titles) that hold its settings, besides RUN_WIDE
    give_up: str  # what the round loses when this stage is given up (AUTO_CONTINUE_ON_FAILURE, semi mode's [c])
    stats: type  # the statistics it returns and round_XX_progress.json keeps (a TypedDict of core/records.py)
    log: Callable[[Paths, int], Path | None] = lambda paths, r: None  # its own log file; None: the run's log
    samples_solver: bool = False  # samples the solver: the loop leaves open engines it may share (else it closes them)
    makes_solver: bool = False  # writes the round's trained solver (the next round samples it)
    plan_note: Callable[[Config, int], str] = field(default=lambda cfg, r: "")  # what the dry run adds to its row
    # what a redo of it removes besides its own files: its entries in files shared with other rounds
    forget: Callable[[Paths, int], None] = field(default=lambda paths, r: None)
    # the checks across the keys of its groups, each next to the code that reads them (check_settings runs them)
    checks: tuple[Check, ...] = ()

    def settings(self) -> list[str]:
        """The Config keys this stage reads, by group."""
        return [key for title in self.groups for key in group_keys(title)]

    def log_file(self, paths: Paths, r: int) -> str | None:
        path = self.log(paths, r)
        return str(path) if path else None


def _generator_outputs(paths: Paths, r: int) -> list[Path]:
    """Round r-1's records (their weights come from round r's rewards) and the Generator trained on them
    (processors/generator_stage.py)."""
    return [
        *([paths.generator_records(r - 1)] if r >= 2 else []),
        paths.generator_result(r),
        paths.generator_dir(r),
        paths.generator_run_dir(r),
        paths.generator_log(r),
    ]


def _accumulate_only(cfg: Config, r: int) -> str:
    return "accumulate only" if r < cfg.TRAIN_START_ROUND else ""


STAGES: tuple[Stage, ...] = (
    Stage(
        "collect",
        "trajectory collection",
        run_collection,
        inputs=lambda p, r, cfg: [p.questions(r)],
        outputs=lambda p, r: [p.trajectories(r), p.trajectory_parts(r)],
        stats=CollectStats,
        groups=("Collection", "Collection engines"),
        checks=(check_engine_settings,),
        give_up="the round has no attempts: nothing is graded, exported or trained, and its pool is carried forward",
        samples_solver=True,
    ),
    Stage(
        "grade",
        "Teacher grading",
        run_grading,
        inputs=lambda p, r, cfg: [p.questions(r), p.trajectories(r)],
        outputs=lambda p, r: [p.rewards(r), p.grade_batch(r)],
        stats=GradeStats,
        groups=("Teacher", "Grading"),
        checks=(check_endpoint_settings,),
        give_up="the round's attempts stay ungraded: no pairs, no training, and its pool is carried forward",
    ),
    Stage(
        "generator",
        "Generator export and training",
        run_generator,
        inputs=lambda p, r, cfg: [p.rewards(r), *([p.enhanced_questions(r - 1), p.rewards(r - 1)] if r >= 2 else [])],
        outputs=_generator_outputs,
        stats=GeneratorStats,
        # it trains through the solver's launch (trainers/launched_training.train_and_install): same preset and machines
        groups=("Generator", "Training the Solver", "Multi-machine training"),
        checks=(check_launch_settings,),
        give_up="the Generator is not trained this round: writing uses the newest Generator trained before it",
        log=lambda p, r: p.generator_log(r),
    ),
    Stage(
        "export",
        "DPO export",
        run_export,
        inputs=lambda p, r, cfg: [p.questions(r), p.trajectories(r), p.rewards(r)],
        outputs=lambda p, r: [p.dataset_dir(r), p.solver_training(r)],
        stats=ExportStats,
        groups=("DPO export", "Collection"),  # the pairs' prompt is the one the attempts were sampled with
        give_up="the round has no pairs: the solver is not trained, and the pool is carried forward",
    ),
    Stage(
        "train",
        "TRL DPO training",
        run_training,
        inputs=lambda p, r, cfg: [p.dataset_dir(rr) for rr in (range(1, r + 1) if cfg.TRL_ACCUMULATE_ROUNDS else [r])],
        outputs=lambda p, r: [p.train_result(r), p.merged_solver(r), p.train_run_dir(r), p.train_log(r)],
        stats=TrainStats,
        groups=("Training the Solver", "Multi-machine training"),
        checks=(check_training_settings, check_launch_settings),
        give_up="the round's solver is not trained: the next round samples the newest solver trained before it",
        log=lambda p, r: p.train_log(r),
        makes_solver=True,
        plan_note=_accumulate_only,
    ),
    Stage(
        "enhance",
        "next-round preparation",
        run_enhancement,
        inputs=lambda p, r, cfg: [p.questions(r), p.trajectories(r), p.rewards(r)],
        outputs=lambda p, r: [p.enhanced_questions(r), p.questions(r + 1), p.enhance_batch(r)],
        stats=EnhanceStats,
        # the Generator writes on the solver's engine backend (processors/generator_writer.py)
        groups=("Teacher", "Next round's pool", "Generator", "Collection", "Collection engines"),
        checks=(check_endpoint_settings, check_pool_settings, check_engine_settings),
        give_up="no questions are written: the next round's pool is this round's, carried forward",
    ),
    Stage(
        "evaluate",
        "evaluation of the round's solver",
        run_evaluation,
        inputs=lambda p, r, cfg: [p.train_result(r), p.heldout],
        outputs=lambda p, r: [],  # its record is the "round_R" entry of results/evaluations.json: see `forget`
        stats=EvaluateStats,
        groups=("Evaluation", "Collection", "Collection engines"),  # it samples the solver as collection does
        checks=(check_engine_settings, check_evaluation_settings),
        give_up="the round's trained solver is not measured: its row in the reports has no held-out figures",
        samples_solver=True,  # the next round's collection samples the same model: one engine start for both
        forget=forget_evaluation,
    ),
)
STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)
SOLVER_STAGE: Stage = next(s for s in STAGES if s.makes_solver)


def check_settings(cfg: Config) -> None:
    """Every stage's checks of its own settings (Stage.checks), each once, in round order; raises ConfigError naming
    the first bad key. load_config has already checked each value against its type, choices and range, and the
    run-wide settings; an entry point runs both before anything starts (the launcher, the health check)."""
    for check in dict.fromkeys(c for s in STAGES for c in s.checks):
        check(cfg)


def stage_named(name: str) -> Stage:
    for s in STAGES:
        if s.name == name:
            return s
    raise ValueError(f"unknown stage {name!r}; the stages are {', '.join(STAGE_NAMES)}")


def stages_from(name: str) -> tuple[Stage, ...]:
    """The stage `name` and every stage after it in a round."""
    return STAGES[STAGES.index(stage_named(name)) :]


def redone(r: int, stage: str, total_rounds: int) -> Iterator[tuple[int, Stage]]:
    """(round, stage) of everything a redo from stage `stage` of round `r` undoes: that stage and every stage after
    it in round r, then every stage of the later rounds."""
    for rr in range(r, total_rounds + 1):
        for s in stages_from(stage) if rr == r else STAGES:
            yield rr, s


def discard_plan(paths: Paths, r: int, stage: str, total_rounds: int) -> list[Path]:
    """The files a redo from stage `stage` of round `r` deletes: the existing outputs of what it undoes (`redone`),
    and the results of round r and after."""
    files: list[Path] = []
    for rr, s in redone(r, stage, total_rounds):
        files += [p for p in s.outputs(paths, rr) if p.exists()]
        if s is STAGES[-1] and paths.round_results(rr).exists():
            files.append(paths.round_results(rr))
    return files
