"""Grading, then the Generator's share of the round: export round r-1's records, train the Generator.

The Generator export runs inside round r's grading stage because a record's weight needs the success
rate of round r's solver on the question round r-1's Teacher wrote, which exists only once round r has
graded; training follows on the same schedule (GENERATOR_TRAIN_START_ROUND), so round r's
next-round preparation can write with generator_r. Both parts are resumable: the export skips records
already written, the training is done once its result file exists. Every file written here belongs to
the grade stage (Paths.stage_outputs): a redo of round r's grading discards round r-1's records and
generator_r with the rewards, so the Generator is trained again from the new rewards.
"""

from __future__ import annotations

from prosetting.core.context import RunContext
from prosetting.processors.generator_data import export_generator_training
from prosetting.processors.grading import run_grading
from prosetting.trainers.generator_training import run_generator_training


def run_grading_and_generator(ctx: RunContext, r: int) -> dict:
    stats = run_grading(ctx, r)
    if r >= 2 and ctx.paths.enhanced_questions(r - 1).is_file():
        stats["generator_export"] = export_generator_training(ctx.paths, ctx.cfg, r - 1)
        ctx.check_stop()
    if ctx.cfg.QUESTION_WRITER != "teacher":  # a teacher-only run spends no time on a Generator it will not use
        trained = run_generator_training(ctx, r)
        stats["generator_training"] = {
            k: trained.get(k) for k in ("trained", "reason", "steps", "loss_first", "loss_last")
        }
    return stats
