"""Training the Generator in the round: launch, merge and verify exactly as the solver's training does.

Says only what differs from the solver's training: the spec (trainers/specs.SFTSpec: the Generator's
learning rate and epochs), its entry point (trainers/generator_entry.py) and its folders; the launch
scaffold is trainers/launched_training.train_and_install (the same accelerate preset: TRL_DISTRIBUTED,
TRL_NUM_PROCESSES, multi-node keys, LoRA, tracking; shard merge, verification against the training
process's fingerprint, the move into place). Writes
checkpoints/generator_rX/ and training_results/generator_rX_result.json. A run killed mid-launch is launched
again from the start (or from its last TRL checkpoint when TRL_SAVE_STEPS is set); the result file is the
done marker.

The Generator starts from GENERATOR_MODEL_PATH; empty, from the embedded solver's warm start
(checkpoints/base_solver: the tiny character-level model built and warm-started on column arithmetic, so it
can already write a problem and its digit-by-digit trace), or, for a user's own solver, from that solver.
"""

from __future__ import annotations

import logging
from pathlib import Path

from prosetting.core.context import RunContext
from prosetting.core.io import atomic_write_json, read_json, read_jsonl
from prosetting.trainers.launched_training import train_and_install
from prosetting.trainers.specs import SFTSpec, sft_spec

log = logging.getLogger(__name__)

ENTRY_MODULE = "prosetting.trainers.generator_entry"


def base_generator(ctx: RunContext) -> Path:
    """GENERATOR_MODEL_PATH, else the initial solver (for the embedded default: its warm-started tiny model)."""
    if ctx.cfg.GENERATOR_MODEL_PATH:
        return ctx.model_path("GENERATOR_MODEL_PATH")
    return Path(ctx.base_model())


def learnable_records(files: list[str]) -> list[dict]:
    """The records a Generator learns from: questions the Teacher wrote that the next round graded (a weight)."""
    return [
        x
        for f in files
        for x in read_jsonl(f)
        if x.get("weight") is not None and x.get("writer", "teacher") == "teacher"
    ]


def records_to_learn(paths, r: int) -> tuple[Path | None, list[str]]:
    """The Generator round r continues from (None: the base model) and the record files it has not learnt yet."""
    previous = paths.newest_trained("generator", before=r)
    first_new = int(previous.name.rsplit("_r", 1)[1]) if previous else 1  # generator_rP learnt rounds < P
    return previous, [
        str(paths.generator_records(k)) for k in range(first_new, r) if paths.generator_records(k).is_file()
    ]


def run_generator_training(ctx: RunContext, r: int) -> dict:
    """Train generator_r from the previous Generator on the weighted records it has not seen yet.

    The first Generator learns from every record exported so far (rounds < r) starting from the base model;
    each later one continues from the newest trained Generator on the rounds exported since that one was
    trained, so every record is seen GENERATOR_NUM_EPOCHS times over the run and a round's training time
    does not grow with the run's length.
    """
    cfg, paths = ctx.cfg, ctx.paths
    result_path = paths.generator_result(r)
    if read_json(result_path):
        return read_json(result_path)
    previous, files = records_to_learn(paths, r)
    weighted = len(learnable_records(files))
    if r < cfg.GENERATOR_TRAIN_START_ROUND or not weighted:
        reason = (
            "before GENERATOR_TRAIN_START_ROUND" if r < cfg.GENERATOR_TRAIN_START_ROUND else "no new graded records"
        )
        result = {"round": r, "trained": False, "reason": reason}
        atomic_write_json(result_path, result)
        return result
    model = previous or base_generator(ctx)

    def generator_spec(run_dir: Path, preset: str) -> SFTSpec:
        log.info(
            "generator r%d: %d weighted records from %s -> %s; preset %s; log %s",
            r,
            weighted,
            model,
            paths.generator_dir(r),
            preset,
            paths.generator_log(r),
        )
        return sft_spec(cfg, model, files, run_dir, r, preset=preset)

    log_path = paths.generator_log(r)
    preset, outcome, wall_s = train_and_install(
        ctx,
        r,
        make_spec=generator_spec,
        entry=ENTRY_MODULE,
        run_dir=paths.generator_run_dir(r),
        log_path=log_path,
        dest=paths.generator_dir(r),
    )
    metrics = {k: v for k, v in outcome.items() if k not in ("command", "remote_commands")}
    result = {
        "round": r,
        "trained": True,
        "base_model": str(model),
        "output": str(paths.generator_dir(r)),
        "train_files": files,
        "preset": preset,
        "log": str(log_path),
        "wall_s": wall_s,
        **metrics,
    }
    atomic_write_json(result_path, result)
    log.info("generator r%d: %d steps, loss %s -> %s", r, metrics["steps"], metrics["loss_first"], metrics["loss_last"])
    return result
