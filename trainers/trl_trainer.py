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

from prosetting.core import tracking
from prosetting.core.config import Config
from prosetting.core.context import RunContext
from prosetting.core.io import atomic_write_json
from prosetting.datasets.data_saver import count_rows
from prosetting.trainers.launched_training import train_and_install

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


def latest_checkpoint(run_dir: Path) -> str | None:
    ckpts = [p for p in run_dir.glob("checkpoint-*") if p.is_dir() and (p / "trainer_state.json").exists()]
    return str(max(ckpts, key=lambda p: int(p.name.split("-")[-1]))) if ckpts else None


def build_spec(
    cfg: Config,
    model: Path,
    train: list[str],
    val: list[str],
    run_dir: Path,
    r: int,
    *,
    ref_model: Path | None = None,
    preset: str = "single",
) -> dict:
    return {
        "round": r,
        "model": str(model),
        "ref_model": str(ref_model) if ref_model else None,
        "train_files": train,
        "validation_files": val,
        "output_dir": str(run_dir),
        "final_dir": str(run_dir / "final"),
        **tracking.spec_names(cfg, f"{Path(cfg.WORKSPACE_DIR).name}-r{r}"),  # wandb/trackio: the workspace's run
        "batch_size": cfg.TRL_BATCH_SIZE,
        "grad_accum": cfg.TRL_GRAD_ACCUM,
        "learning_rate": cfg.TRL_LEARNING_RATE,
        "warmup_ratio": cfg.TRL_WARMUP_RATIO,
        "num_epochs": cfg.TRL_NUM_EPOCHS,
        "max_steps": cfg.TRL_MAX_STEPS,  # 0: the epochs decide
        "beta": cfg.TRL_BETA,
        "loss_type": cfg.loss_types,
        "loss_weights": cfg.loss_weights if cfg.TRL_LOSS_WEIGHTS else None,
        "max_length": cfg.TRL_MAX_LENGTH,
        "mixed_precision": cfg.TRL_MIXED_PRECISION,
        # under fsdp, activation checkpointing is the accelerate config's (fsdp_activation_checkpointing)
        "gradient_checkpointing": cfg.TRL_GRADIENT_CHECKPOINTING and preset != "fsdp",
        "precompute_ref_log_probs": spec_precompute(cfg),
        "report_to": [t.strip() for t in cfg.TRL_REPORT_TO.split(",") if t.strip() and t.strip() != "none"],
        "lora_r": cfg.TRL_LORA_R,
        "lora_alpha": cfg.TRL_LORA_ALPHA,
        "lora_target_modules": cfg.TRL_LORA_TARGET_MODULES,
        "save_steps": cfg.TRL_SAVE_STEPS,
        "seed": cfg.SEED + r,
        "resume_from_checkpoint": latest_checkpoint(run_dir) if cfg.TRL_SAVE_STEPS else None,
    }


def spec_precompute(cfg: Config) -> bool:
    """TRL 1.16 has no reference-free DPO path: with TRL_REF_MODEL=none the reference pass runs once, then is
    dropped."""
    return cfg.TRL_PRECOMPUTE_REF_LOG_PROBS or cfg.TRL_REF_MODEL == "none"


ENTRY = "prosetting.trainers.dpo_entry"


def run_training(ctx: RunContext, r: int) -> dict:
    cfg, paths = ctx.cfg, ctx.paths
    result_path = paths.train_result(r)
    if r < cfg.TRAIN_START_ROUND:
        result = {
            "round": r,
            "trained": False,
            "reason": f"round {r} < TRAIN_START_ROUND={cfg.TRAIN_START_ROUND}: accumulate only",
        }
        atomic_write_json(result_path, result)
        log.info("train r%d: skipped (%s)", r, result["reason"])
        return {"trained": False}
    train, val = dataset_files(ctx, r)
    if not train:
        result = {"round": r, "trained": False, "reason": "no preference pairs accumulated yet"}
        atomic_write_json(result_path, result)
        log.warning("train r%d: no preference pairs to train on; the solver is carried forward unchanged", r)
        return {"trained": False}

    model = ctx.solver_for_round(r)

    def dpo_spec(run_dir: Path, preset: str) -> dict:
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
        return build_spec(cfg, model, train, val, run_dir, r, ref_model=ref, preset=preset)

    preset, outcome, wall_s = train_and_install(
        ctx,
        r,
        make_spec=dpo_spec,
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
    atomic_write_json(result_path, result)
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
