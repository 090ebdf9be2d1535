"""What a training stage hands the process `accelerate launch` starts: a typed spec whose fields carry TRL's names.

    spec = dpo_spec(cfg, model, train_files, val_files, run_dir, r, preset="single")
    spec.write(run_dir / "spec.json")                     # training_runs/rX/spec.json, plain JSON
    spec = DPOSpec.read(Path(args.spec))                  # in the entry: every key checked, named on error
    DPOConfig(**spec.training_arguments(), beta=spec.beta, ...)

A setting is renamed once, here: `TRL_BATCH_SIZE` becomes `per_device_train_batch_size`, the name TRL and
transformers give it, and the entry passes it on as it is. The solver trains with DPO (`DPOSpec`), the Generator
with weighted SFT on the Teacher's questions (`SFTSpec`: its own learning rate and epochs, no reference model, no
preference loss). Fields outside TRL's arguments keep the names of what they configure: accelerate's
`mixed_precision`, peft's `lora_*`, our folders.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prosetting.core import tracking
from prosetting.core.config import Config, ConfigError
from prosetting.core.io import atomic_write_json


class SpecError(ValueError):
    """A spec file that is not the spec its entry expects; the message names the file and the keys."""


@dataclass(frozen=True, kw_only=True)
class TrainingSpec:
    # --- the run: model, data, folders ---
    round: int
    model: str  # the folder training starts from
    train_files: list[str]
    validation_files: list[str] = field(default_factory=list)
    output_dir: str  # TRL's output folder: checkpoints, logs
    final_dir: str  # where the entry writes the trained model (sharded under FSDP) for the parent to merge
    resume_from_checkpoint: str | None = None
    run_name: str | None = None
    project: str | None = None  # trackio's project, when a run-level tracker is on
    report_to: list[str] = field(default_factory=list)  # [] reports to no tracker
    # --- TRL's and transformers' training arguments, by their names ---
    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    learning_rate: float
    warmup_steps: float  # below 1: a fraction of the steps (transformers 5), from TRL_WARMUP_RATIO
    num_train_epochs: float
    max_steps: int  # 0: the epochs decide
    max_length: int
    gradient_checkpointing: bool
    save_steps: int  # 0: no checkpoints
    seed: int
    # --- accelerate's precision, peft's LoRA ---
    mixed_precision: str  # "no", "bf16" or "fp16"
    lora_r: int  # 0: full fine-tuning
    lora_alpha: int
    lora_target_modules: str

    def training_arguments(self) -> dict[str, Any]:
        """The arguments TRL's DPOConfig and SFTConfig share, as the spec gives them."""
        return {
            "output_dir": self.output_dir,
            "run_name": self.run_name,
            **({"project": self.project} if self.project else {}),
            "per_device_train_batch_size": self.per_device_train_batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "learning_rate": self.learning_rate,
            "warmup_steps": self.warmup_steps,
            "num_train_epochs": self.num_train_epochs,
            "max_steps": self.max_steps or -1,
            "max_length": self.max_length,
            "seed": self.seed,
            "data_seed": self.seed,
            "bf16": self.mixed_precision == "bf16",
            "fp16": self.mixed_precision == "fp16",
            "gradient_checkpointing": self.gradient_checkpointing,
            "save_strategy": "steps" if self.save_steps else "no",
            "save_steps": self.save_steps or 500,
        }

    def write(self, path: Path) -> None:
        atomic_write_json(path, dataclasses.asdict(self))

    @classmethod
    def read(cls, path: Path):
        """The spec in `path`; SpecError naming the file and the keys when it is not this kind of spec."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SpecError(f"{path}: cannot read the training spec: {exc}") from exc
        if not isinstance(data, dict):
            raise SpecError(f"{path}: a training spec is a JSON object, not {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        missing = sorted(
            name
            for name, f in fields.items()
            if name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        )
        if unknown or missing:
            raise SpecError(
                f"{path}: not a {cls.__name__}"
                + (f"; unknown keys {unknown}" if unknown else "")
                + (f"; missing keys {missing}" if missing else "")
                + " (written by another version of ProSetting? the stage writes a new one when it runs again)"
            )
        return cls(**data)


@dataclass(frozen=True, kw_only=True)
class DPOSpec(TrainingSpec):
    """The solver's preference training (stage train, trainers/dpo_entry.py)."""

    ref_model: str | None = None  # None: TRL builds the reference from `model`
    beta: float
    loss_type: list[str]
    loss_weights: list[float] | None = None
    precompute_ref_log_probs: bool = False


@dataclass(frozen=True, kw_only=True)
class SFTSpec(TrainingSpec):
    """The Generator's weighted SFT on the Teacher's questions (trainers/generator_entry.py)."""


def common_fields(
    cfg: Config, model: Path, train: list[str], val: list[str], run_dir: Path, r: int, *, name: str, preset: str
) -> dict[str, Any]:
    """The fields every launched training takes from the settings; `name` is the tracker's default run name."""
    return {
        "round": r,
        "model": str(model),
        "train_files": train,
        "validation_files": val,
        "output_dir": str(run_dir),
        "final_dir": str(run_dir / "final"),
        **tracking.spec_names(cfg, name),  # wandb/trackio: the workspace's run
        "report_to": [t.strip() for t in cfg.TRL_REPORT_TO.split(",") if t.strip() and t.strip() != "none"],
        "per_device_train_batch_size": cfg.TRL_BATCH_SIZE,
        "gradient_accumulation_steps": cfg.TRL_GRAD_ACCUM,
        "learning_rate": cfg.TRL_LEARNING_RATE,
        "warmup_steps": cfg.TRL_WARMUP_RATIO,
        "num_train_epochs": cfg.TRL_NUM_EPOCHS,
        "max_steps": cfg.TRL_MAX_STEPS,
        "max_length": cfg.TRL_MAX_LENGTH,
        # under fsdp, activation checkpointing is the accelerate config's (fsdp_activation_checkpointing)
        "gradient_checkpointing": cfg.TRL_GRADIENT_CHECKPOINTING and preset != "fsdp",
        "save_steps": cfg.TRL_SAVE_STEPS,
        "seed": cfg.SEED + r,
        "mixed_precision": cfg.TRL_MIXED_PRECISION,
        "lora_r": cfg.TRL_LORA_R,
        "lora_alpha": cfg.TRL_LORA_ALPHA,
        "lora_target_modules": cfg.TRL_LORA_TARGET_MODULES,
        "resume_from_checkpoint": latest_checkpoint(run_dir) if cfg.TRL_SAVE_STEPS else None,
    }


def check_training_settings(cfg: Config) -> None:
    """The checks across the keys of "Training the Solver" that make the spec (Stage.checks of `train`); raises
    ConfigError naming the key. How the training is launched is trainers/launch.check_launch_settings."""
    terms = cfg.loss_types
    if not terms:
        raise ConfigError("TRL_LOSS_TYPE: expected at least one loss term, e.g. `sigmoid` or `sigmoid,sft`")
    if cfg.TRL_LOSS_WEIGHTS and len(cfg.loss_weights) != len(terms):
        n = len(terms)
        raise ConfigError(
            f"TRL_LOSS_WEIGHTS: expected {n} weight{'s' if n > 1 else ''} (one per TRL_LOSS_TYPE term), "
            f"got {cfg.TRL_LOSS_WEIGHTS!r}"
        )
    trackers = {t.strip() for t in cfg.TRL_REPORT_TO.split(",") if t.strip()}
    if trackers - {"none", "tensorboard", "wandb", "trackio"}:
        raise ConfigError(
            f"TRL_REPORT_TO: expected a comma list of none, tensorboard, wandb, trackio; got {cfg.TRL_REPORT_TO!r}"
        )
    if cfg.TRL_REF_MODEL == "none" and set(terms) - {"sft"}:
        raise ConfigError(
            f"TRL_REF_MODEL: `none` needs reference-free losses (TRL_LOSS_TYPE=sft), got {cfg.TRL_LOSS_TYPE!r}"
        )
    if cfg.TRL_LORA_R and cfg.TRL_DISTRIBUTED in ("fsdp", "deepspeed"):
        raise ConfigError(
            f"TRL_LORA_R: LoRA is supported with TRL_DISTRIBUTED=single or ddp, not {cfg.TRL_DISTRIBUTED} "
            "(an 8B bf16 base with LoRA fits one 80 GB GPU; use ddp)"
        )


def latest_checkpoint(run_dir: Path) -> str | None:
    ckpts = [p for p in run_dir.glob("checkpoint-*") if p.is_dir() and (p / "trainer_state.json").exists()]
    return str(max(ckpts, key=lambda p: int(p.name.split("-")[-1]))) if ckpts else None


def spec_precompute(cfg: Config) -> bool:
    """TRL 1.16 has no reference-free DPO path: with TRL_REF_MODEL=none the reference pass runs once, then is
    dropped."""
    return cfg.TRL_PRECOMPUTE_REF_LOG_PROBS or cfg.TRL_REF_MODEL == "none"


def dpo_spec(
    cfg: Config,
    model: Path,
    train: list[str],
    val: list[str],
    run_dir: Path,
    r: int,
    *,
    ref_model: Path | None = None,
    preset: str = "single",
) -> DPOSpec:
    return DPOSpec(
        **common_fields(cfg, model, train, val, run_dir, r, name=f"{Path(cfg.WORKSPACE_DIR).name}-r{r}", preset=preset),
        ref_model=str(ref_model) if ref_model else None,
        beta=cfg.TRL_BETA,
        loss_type=cfg.loss_types,
        loss_weights=cfg.loss_weights if cfg.TRL_LOSS_WEIGHTS else None,
        precompute_ref_log_probs=spec_precompute(cfg),
    )


def sft_spec(cfg: Config, model: Path, train: list[str], run_dir: Path, r: int, *, preset: str = "single") -> SFTSpec:
    """The Generator's: the solver's batch, length, precision and LoRA, its own learning rate and epochs."""
    name = f"{Path(cfg.WORKSPACE_DIR).name}-generator-r{r}"
    return SFTSpec(
        **common_fields(cfg, model, train, [], run_dir, r, name=name, preset=preset)
        | {"learning_rate": cfg.GENERATOR_LEARNING_RATE, "num_train_epochs": cfg.GENERATOR_NUM_EPOCHS, "max_steps": 0}
    )
