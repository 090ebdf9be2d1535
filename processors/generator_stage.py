"""Stage `generator`: the Generator's share of the round, after grading: export round r-1's records, train it.

Round r-1's records are exported in round r because a record's weight needs the success rate of round r's solver on
the question round r-1's Teacher wrote, which exists only once round r has graded; training follows on the same
schedule (GENERATOR_TRAIN_START_ROUND), so round r's next-round preparation can write with generator_r. Both parts
are resumable: the export skips records already written, the training is done once its result file exists. A redo
of round r's grading redoes this stage too (it comes after), discarding round r-1's records and generator_r, so the
Generator is trained again from the new rewards. A workspace from before this was a stage (grading did it) resumes
as it is: the stage finds its records and its result already saved.
"""

from __future__ import annotations

from prosetting.core.context import RunContext
from prosetting.core.records import GeneratorStats
from prosetting.processors.generator_data import export_generator_training
from prosetting.trainers.generator_training import run_generator_training


def run_generator(ctx: RunContext, r: int) -> GeneratorStats:
    stats: dict = {}
    if r >= 2 and ctx.paths.enhanced_questions(r - 1).is_file():
        stats["generator_export"] = export_generator_training(ctx.paths, ctx.cfg, r - 1)
        ctx.check_stop()
    if ctx.cfg.QUESTION_WRITER != "teacher":  # a teacher-only run spends no time on a Generator it will not use
        trained = run_generator_training(ctx, r)
        stats["generator_training"] = {
            k: trained.get(k) for k in ("trained", "reason", "steps", "loss_first", "loss_last")
        }
    return stats
