"""Stage 4, training: TRL DPO in a subprocess started by `accelerate launch`, then merge and verify.

Reads  datasets/round_XX/{train,validation}.parquet (this round, or every round so far) and the
       round's solver.
Writes checkpoints/merged_solver_rX/ (a full Hugging Face model: the next round's solver),
       training_results/trl_rX_result.json and logs/trl_rX.log.

Rounds before TRAIN_START_ROUND only accumulate pairs: the stage records `trained: false`.
A stop (Ctrl+C, SIGTERM) terminates the launch's process group; with TRL_SAVE_STEPS > 0 the next
attempt resumes from the newest TRL checkpoint instead of starting the round's training again.
"""

from __future__ import annotations

import logging
from pathlib import Path

from prosetting.core.context import RunContext
from prosetting.core.records import TrainStats, write_train_result
from prosetting.datasets.data_saver import count_rows
from prosetting.trainers.launched_training import train_and_install
from prosetting.trainers.specs import DPOSpec, dpo_spec, spec_precompute

log = logging.getLogger(__name__)


def dataset_files(ctx: RunContext, r: int) -> tuple[list[str], list[str]]:
    """The parquet files this round trains on: every round so far (TRL_ACCUMULATE_ROUNDS) or this one."""
    rounds = range(1, r + 1) if ctx.cfg.TRL_ACCUMULATE_ROUNDS else [r]
    train, val = [], []
    for rr in rounds:
        d = ctx.paths.dataset_dir(rr)
        if count_rows(d / "train.parquet"):
            train.append(str(d / "train.parquet"))
        if count_rows(d / "validation.parquet"):
            val.append(str(d / "validation.parquet"))
    return train, val


ENTRY = "prosetting.trainers.dpo_entry"


def run_training(ctx: RunContext, r: int) -> TrainStats:
    cfg, paths = ctx.cfg, ctx.paths
    if r < cfg.TRAIN_START_ROUND:
        result = {
            "round": r,
            "trained": False,
            "reason": f"round {r} < TRAIN_START_ROUND={cfg.TRAIN_START_ROUND}: accumulate only",
        }
        write_train_result(paths, r, result)
        log.info("train r%d: skipped (%s)", r, result["reason"])
        return {"trained": False}
    train, val = dataset_files(ctx, r)
    if not train:
        result = {"round": r, "trained": False, "reason": "no preference pairs accumulated yet"}
        write_train_result(paths, r, result)
        log.warning("train r%d: no preference pairs to train on; the solver is carried forward unchanged", r)
        return {"trained": False}

    model = ctx.solver_for_round(r)

    def make_spec(run_dir: Path, preset: str) -> DPOSpec:
        if preset == "fsdp" and spec_precompute(cfg):
            log.warning(
                "train r%d: precomputing reference log-probs under FSDP2 has crashed with a device mismatch "
                "(trl issue 6470); if it does, set TRL_PRECOMPUTE_REF_LOG_PROBS=false",
                r,
            )
        base = ctx.base_model()
        ref = base if cfg.TRL_REF_MODEL == "initial" and Path(model) != Path(base) else None
        log.info(
            "train r%d: %d pair files from %s -> %s; preset %s, %d process(es) on %d machine(s); log %s",
            r,
            len(train),
            model,
            paths.merged_solver(r),
            preset,
            cfg.TRL_NUM_PROCESSES,
            cfg.NUM_MACHINES,
            paths.train_log(r),
        )
        return dpo_spec(cfg, model, train, val, run_dir, r, ref_model=ref, preset=preset)

    preset, outcome, wall_s = train_and_install(
        ctx,
        r,
        make_spec=make_spec,
        entry=ENTRY,
        run_dir=paths.train_run_dir(r),
        log_path=paths.train_log(r),
        dest=paths.merged_solver(r),
    )
    log_path = paths.train_log(r)
    result = {
        "round": r,
        "trained": True,
        "base_model": str(model),
        "output": str(paths.merged_solver(r)),
        "train_files": train,
        "validation_files": val,
        "preset": preset,
        **outcome,
        "wall_s": wall_s,
        "log": str(log_path),
    }
    write_train_result(paths, r, result)
    log.info(
        "train r%d: %d steps on world size %d, loss %.4f -> %.4f, reward accuracy %s; verified %d tensors; %.1fs",
        r,
        result["steps"],
        result["world_size"],
        result["loss_first"] or 0,
        result["loss_last"] or 0,
        result["reward_accuracy_last"],
        result["verified"]["tensors_compared"],
        result["wall_s"],
    )
    return {
        k: result[k]
        for k in (
            "trained",
            "steps",
            "train_pairs",
            "loss_first",
            "loss_last",
            "reward_accuracy_last",
            "world_size",
            "wall_s",
        )
    }
