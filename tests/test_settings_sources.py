"""Every setting given is used or refused, and where each value came from is shown: a settings file's unknown key
stops the run with its file, line and the nearest setting; other tools' keys pass by prefix; the design documents'
names are read or refused with what replaced them; the dry run and the run's log list every value that is not a
default with its source, and warn where the environment overrides the settings file; the embedded default resolves
as it did before Config's defaults became the paper's recipe; a Generator no round uses is not loaded."""

from __future__ import annotations

import logging
import re
from argparse import Namespace
from dataclasses import fields
from pathlib import Path

import pytest

from prosetting.core.config import (
    EMBEDDED_PROFILE,
    REDACTED,
    Config,
    ConfigError,
    Sources,
    default_of,
    load_config,
    parse_set_args,
)
from prosetting.managers import plan
from prosetting.utils.preflight import Inputs, Machine

REPO = Path(__file__).resolve().parent.parent

# The embedded default (SOLVER_MODEL_PATH empty) as load_config resolved it before Config's defaults became the
# paper's recipe (taken from the code of that commit): the toy's values moved into EMBEDDED_PROFILE, unchanged.
EMBEDDED_RESOLVED = {
    "WORKSPACE_DIR": "./workspace",
    "TOTAL_ROUNDS": 5,
    "TRAIN_START_ROUND": 1,
    "SEED": 42,
    "LOG_LEVEL": "INFO",
    "SOLVER_MODEL_PATH": "",
    "SOLVER_MODEL_REVISION": "",
    "QUESTIONS_FILE": "",
    "HELDOUT_FILE": "",
    "ATTEMPTS_PER_QUESTION": 8,
    "COLLECTION_BACKEND": "auto",
    "COLLECTION_BATCH_SIZE": 64,
    "SAMPLING_TEMPERATURE": 1.0,
    "SAMPLING_TOP_P": 1.0,
    "MAX_NEW_TOKENS": 64,
    "SOLVER_SYSTEM_PROMPT": "Please reason step by step, and put your final answer within \\boxed{}.",
    "ANSWER_EXTRACTION": "boxed",
    "SAMPLING_STOP": "",
    "COLLECTION_BATCH_TIMEOUT": 1800.0,
    "COLLECTION_ENGINE_START_TIMEOUT": 1800.0,
    "COLLECTION_MAX_BATCH_RETRIES": 2,
    "COLLECTION_EXECUTOR": "local",
    "RAY_ADDRESS": "",
    "PHYSICAL_SOLVER_GPU": "",
    "TENSOR_PARALLEL_SIZE": 1,
    "COLLECTION_CPU_ENGINES": 1,
    "VLLM_GPU_MEMORY_UTILIZATION": 0.85,
    "VLLM_MAX_MODEL_LEN": 0,
    "VLLM_MAX_NUM_SEQS": 0,
    "VLLM_ENFORCE_EAGER": False,
    "VLLM_DTYPE": "auto",
    "VLLM_CPU_KVCACHE_SPACE": 1.0,
    "TEACHER_BACKEND": "builtin",
    "BUILTIN_TASK": "arithmetic",
    "TEACHER_BASE_URL": "",
    "TEACHER_API_KEY": "",
    "TEACHER_MODEL_NAME": "",
    "TEACHER_WRITER_BASE_URL": "",
    "TEACHER_WRITER_MODEL_NAME": "",
    "TEACHER_WRITER_API_KEY": "",
    "TEACHER_WRITING_TEMPERATURE": 0.7,
    "TEACHER_CONCURRENT_WORKERS": 32,
    "TEACHER_TIMEOUT": 120.0,
    "TEACHER_MAX_RETRIES": 3,
    "TEACHER_MAX_TOKENS": 0,
    "TEACHER_STRUCTURED_OUTPUT": True,
    "TEACHER_BATCH_API": False,
    "TEACHER_BATCH_POLL_SECONDS": 30.0,
    "TEACHER_CACHE_DIR": "",
    "TEACHER_MAX_RPM": 0,
    "TEACHER_MAX_TPM": 0,
    "TEACHER_MAX_FAILURE_FRACTION": 0.1,
    "TEACHER_MAX_UNUSABLE_FRACTION": 0.5,
    "TEACHER_PRICE_PER_MTOK_IN": 0.0,
    "TEACHER_PRICE_PER_MTOK_OUT": 0.0,
    "GRADING_MODE": "hybrid",
    "TEACHER_GRADING_UNIT": "question",
    "MAX_PAIRS_PER_QUESTION": 8,
    "DPO_TRUNCATE_REJECTED": False,
    "VALIDATION_FRACTION": 0.1,
    "TRL_NUM_PROCESSES": 1,
    "TRL_MIXED_PRECISION": "no",
    "TRL_ACCELERATE_CONFIG": "",
    "TRL_LEARNING_RATE": 0.0005,
    "TRL_BETA": 0.1,
    "TRL_LOSS_TYPE": "sft",
    "TRL_LOSS_WEIGHTS": "",
    "TRL_WARMUP_RATIO": 0.2,
    "TRL_NUM_EPOCHS": 1.0,
    "TRL_MAX_STEPS": 20,
    "TRL_BATCH_SIZE": 32,
    "TRL_GRAD_ACCUM": 1,
    "TRL_MAX_LENGTH": 1024,
    "TRL_SAVE_STEPS": 0,
    "TRL_ACCUMULATE_ROUNDS": False,
    "TRL_DISTRIBUTED": "auto",
    "PHYSICAL_DPO_GPU": "",
    "TRL_GRADIENT_CHECKPOINTING": False,
    "TRL_REF_MODEL": "previous",
    "TRL_PRECOMPUTE_REF_LOG_PROBS": False,
    "TRL_REPORT_TO": "none",
    "TRL_LORA_R": 0,
    "TRL_LORA_ALPHA": 16,
    "TRL_LORA_TARGET_MODULES": "all-linear",
    "NUM_MACHINES": 1,
    "MACHINE_RANK": 0,
    "MAIN_PROCESS_IP": "",
    "MAIN_PROCESS_PORT": 0,
    "TRAIN_HOSTS": "",
    "CURRICULUM": "teacher",
    "NONADAPTIVE_PLAN": "",
    "REPLAY_FAILED": True,
    "REPLAY_RATIO": 0.2,
    "NEW_QUESTIONS_PER_PARENT": 1,
    "WRITE_POLICIES": "stepping_stone,error_sibling,harder_variant",
    "HARDER_VARIANT": "raise_one",
    "NEAR_MASTERY": 0.75,
    "MAX_POOL_SIZE": 200,
    "MAX_POOL_SIZE_BY_ROUND": "",
    "POOL_CAP": "stratified",
    "QUESTION_WRITER": "teacher",
    "GENERATOR_SHARE": 0.5,
    "GENERATOR_MODEL_PATH": "",
    "GENERATOR_MODEL_REVISION": "",
    "GENERATOR_TRAIN_START_ROUND": 2,
    "GENERATOR_UTILITY_MU": 0.5,
    "GENERATOR_UTILITY_SIGMA": 0.2,
    "GENERATOR_LEARNING_RATE": 0.003,
    "GENERATOR_NUM_EPOCHS": 60.0,
    "GENERATOR_TEMPERATURE": 0.7,
    "GENERATOR_TOP_P": 1.0,
    "GENERATOR_MAX_NEW_TOKENS": 160,
    "EVAL_SETS": "",
    "EVAL_K": 4,
    "EVAL_TEMPERATURE": 0.7,
    "WARMSTART_STEPS": 600,
    "WARMSTART_TARGET_ACCURACY": 0.35,
    "AUTO_RETRY_ENABLED": True,
    "AUTO_RETRY_MAX": 2,
    "AUTO_RETRY_INTERVAL": 30.0,
    "AUTO_CONTINUE_ON_FAILURE": False,
}


def settings_file(tmp_path: Path, text: str, name: str = "x.env") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- 1. every key of a settings file is used or refused -------------------------------------------------------
def test_an_unknown_key_names_its_file_line_and_the_nearest_setting(tmp_path):
    path = settings_file(tmp_path, "# my run\nSEED=7\n\nTOTAL_ROUND=3\nmax_pairs_per_question=4\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    text = str(err.value)
    assert f"{path}:4: TOTAL_ROUND is not a setting; did you mean TOTAL_ROUNDS?" in text
    assert f"{path}:5: max_pairs_per_question is not a setting; did you mean MAX_PAIRS_PER_QUESTION?" in text
    assert "OTHER_TOOL_PREFIXES" in text  # the rule a user can read


def test_a_line_that_is_not_a_setting_is_refused_with_its_line(tmp_path):
    with pytest.raises(ConfigError, match=r"x\.env:2: cannot read 'this is not a setting'"):
        load_config(settings_file(tmp_path, "SEED=1\nthis is not a setting\n"), environ={})
    with pytest.raises(ConfigError, match=r"x\.env:1: SEED has no `=`"):
        load_config(settings_file(tmp_path, "SEED\n"), environ={})


def test_other_tools_keys_pass_by_prefix_and_a_misspelling_of_ours_does_not(tmp_path):
    path = settings_file(
        tmp_path,
        "HF_TOKEN=hf_x\nCUDA_VISIBLE_DEVICES=0\nVLLM_USE_V1=1\nWANDB_PROJECT=p\nTOKENIZERS_PARALLELISM=false\n"
        "PATH=/usr/bin\nRAY_ADDRESS=auto\nVLLM_MAX_MODEL_LEN=2048\nSEED=5\n",
    )
    cfg, sources = load_config(path, environ={})
    assert (cfg.SEED, cfg.RAY_ADDRESS, cfg.VLLM_MAX_MODEL_LEN) == (5, "auto", 2048)  # VLLM_ and RAY_ keys of ours
    assert not {"HF_TOKEN", "CUDA_VISIBLE_DEVICES", "VLLM_USE_V1", "PATH"} & set(sources)  # passed, not read
    with pytest.raises(ConfigError, match=r"x\.env:1: VLLM_MAX_MODEL_LENGTH is not a setting; did you mean "):
        load_config(settings_file(tmp_path, "VLLM_MAX_MODEL_LENGTH=2048\n"), environ={})
    with pytest.raises(ConfigError, match=r"RAY_ADRESS is not a setting; did you mean RAY_ADDRESS\?"):
        load_config(settings_file(tmp_path, "RAY_ADRESS=auto\n"), environ={})


def test_the_environment_is_read_for_our_names_only_and_the_command_line_names_the_nearest():
    cfg, sources = load_config(None, environ={"SEED": "8", "TOTAL_ROUND": "2", "HOME": "/root"})
    assert cfg.SEED == 8 and cfg.TOTAL_ROUNDS == default_of("TOTAL_ROUNDS") and "TOTAL_ROUNDS" not in sources
    with pytest.raises(
        ConfigError, match=r"--set 'TOTAL_ROUND=2': TOTAL_ROUND is not a setting; did you mean TOTAL_ROUNDS\?"
    ):
        parse_set_args(["TOTAL_ROUND=2"])
    with pytest.raises(ConfigError, match=r"TOTAL_ROUND: unknown setting \(from command line\); did you mean"):
        load_config(None, overrides={"TOTAL_ROUND": "2"}, environ={})


# --- 2. the design documents' names ----------------------------------------------------------------------------
# The names 000 and 001 use that are not Config's: their .env lines and the keys of their "Default Configuration"
# dict, upper-cased (attempts_per_question, physical_solver_gpu, trl_num_processes and trl_mixed_precision are ours).
DESIGN_NAMES = ("MAX_ROUNDS", "SAVE_ROUNDS", "PHYSICAL_GRPO_GPU", "TRAINING_FRAMEWORK", "CHECKPOINT_INTERVAL")


def test_every_design_name_is_a_name_of_ours():
    for name in DESIGN_NAMES:
        parse_set_args([f"{name}=1"])  # known: read or refused with its reason by load_config, never "not a setting"
    for name in ("ATTEMPTS_PER_QUESTION", "PHYSICAL_SOLVER_GPU", "TRL_NUM_PROCESSES", "TRL_MIXED_PRECISION"):
        assert name in Config.__dataclass_fields__


def layer(kind: str, tmp_path: Path, key: str, value: str) -> dict:
    """load_config's arguments giving KEY=VALUE in a settings file, the environment or on the command line."""
    if kind == "file":
        return {"env_file": settings_file(tmp_path, f"# a design .env\n{key}={value}\n"), "environ": {}}
    if kind == "environment":
        return {"env_file": None, "environ": {key: value}}
    return {"env_file": None, "overrides": parse_set_args([f"{key}={value}"]), "environ": {}}


@pytest.mark.parametrize("kind", ["file", "environment", "command line"])
def test_max_rounds_is_total_rounds_and_the_plan_has_rounds_1_and_2(kind, tmp_path):
    cfg, sources = load_config(**layer(kind, tmp_path, "MAX_ROUNDS", "2"))
    assert cfg.TOTAL_ROUNDS == 2 and sources.given_as["TOTAL_ROUNDS"] == "MAX_ROUNDS"
    where = f"{tmp_path / 'x.env'}:2" if kind == "file" else kind
    assert sources.where("TOTAL_ROUNDS") == f"{where}, as MAX_ROUNDS"
    cfg = Config(**{**cfg.to_dict(redact=False), "WORKSPACE_DIR": str(tmp_path / "ws")})
    text = plan.describe_plan(cfg, Inputs(cfg, sources, Machine()))
    assert re.findall(r"^round (\d+):", text, re.M) == ["1", "2"]
    assert f"TOTAL_ROUNDS=2 (from {where}, as MAX_ROUNDS)" in text


def test_our_name_wins_over_the_designs_in_one_layer(tmp_path):
    cfg, _ = load_config(settings_file(tmp_path, "MAX_ROUNDS=2\nTOTAL_ROUNDS=4\n"), environ={})
    assert cfg.TOTAL_ROUNDS == 4


@pytest.mark.parametrize("kind", ["file", "environment", "command line"])
@pytest.mark.parametrize(
    "key,value,replacement",
    [
        (
            "PHYSICAL_GRPO_GPU",
            "0,1,2,3",
            "this build has no GRPO trainer: the solver trains by DPO (TRL), on the GPUs of PHYSICAL_DPO_GPU",
        ),
        ("SAVE_ROUNDS", "3,4,5", "every trained round's solver is saved"),
        ("CHECKPOINT_INTERVAL", "1", "every stage is checkpointed as it finishes"),
        ("TRAINING_FRAMEWORK", "VERL_PPO", "this build trains the solver with TRL DPO only"),
    ],
)
def test_a_design_name_this_build_does_otherwise_is_refused_with_what_replaced_it(
    kind, key, value, replacement, tmp_path
):
    with pytest.raises(ConfigError) as err:
        load_config(**layer(kind, tmp_path, key, value))
    assert key in str(err.value) and replacement in str(err.value)
    where = f"{tmp_path / 'x.env'}:2" if kind == "file" else kind
    assert f"(from {where})" in str(err.value)
    if key in ("SAVE_ROUNDS", "CHECKPOINT_INTERVAL"):
        assert "TRL_SAVE_STEPS" in str(err.value)


def test_the_design_training_framework_is_the_one_this_build_has(tmp_path):
    cfg, sources = load_config(**layer("file", tmp_path, "TRAINING_FRAMEWORK", "TRL_DPO"))
    assert cfg.to_dict() == load_config(None, environ={})[0].to_dict() and "TRAINING_FRAMEWORK" not in sources


# --- 3. precedence, visible --------------------------------------------------------------------------------------
def test_the_environment_over_the_settings_file_is_warned_with_both_values_and_the_line(tmp_path):
    path = settings_file(tmp_path, "# a preset\nSEED=42\nTOTAL_ROUNDS=3\nREPLAY_RATIO=0.5\nEVAL_K=8\n")
    cfg, sources = load_config(
        path,
        overrides={"REPLAY_RATIO": "0.1"},
        environ={"SEED": "3", "TOTAL_ROUNDS": "3", "REPLAY_RATIO": "0.3", "TEACHER_API_KEY": "sk-env"},
    )
    assert (cfg.SEED, sources["SEED"], sources["EVAL_K"]) == (3, "environment", str(path))  # precedence as before
    assert cfg.REPLAY_RATIO == 0.1 and sources["REPLAY_RATIO"] == "command line"
    (warning,) = plan.settings_warnings(sources)  # not TOTAL_ROUNDS (same value), not REPLAY_RATIO (--set chose)
    assert warning.startswith(f"WARNING: SEED=3 from the environment overrides SEED=42 of {path}:2; the run uses 3")
    text = "\n".join(plan.describe_settings(cfg, sources))
    assert f"EVAL_K=8 (from {path}:5)" in text and "TOTAL_ROUNDS=3 (from environment)" in text
    assert "SEED=3 (from environment)" in text and "REPLAY_RATIO=0.1 (from command line)" in text
    assert f"TEACHER_API_KEY={REDACTED} (from environment)" in text and "sk-env" not in text


def test_a_secret_overridden_by_the_environment_is_warned_redacted(tmp_path):
    path = settings_file(tmp_path, "TEACHER_API_KEY=sk-file\n")
    _, sources = load_config(path, environ={"TEACHER_API_KEY": "sk-env"})
    (warning,) = plan.settings_warnings(sources)
    assert "TEACHER_API_KEY" in warning and "sk-" not in warning and f"{path}:1" in warning


def test_the_dry_run_prints_the_sources_and_the_warning(tmp_path, monkeypatch, capsys):
    from prosetting.managers.launcher import launch
    from prosetting.scripts.run_training import build_parser

    for f in fields(Config):
        monkeypatch.delenv(f.name, raising=False)
    monkeypatch.setenv("SEED", "3")  # a leftover export
    path = settings_file(tmp_path, "# preset\n\nSEED=42\nMAX_ROUNDS=2\n")
    argv = ["--env-file", str(path), "--workspace", str(tmp_path / "ws"), "--set", "EVAL_K=2", "--dry-run"]
    assert launch(build_parser().parse_args(argv)) == 0
    out = capsys.readouterr().out
    assert f"WARNING: SEED=3 from the environment overrides SEED=42 of {path}:3" in out
    assert "settings       " in out and "not left to their defaults" in out
    for line in (
        f"WORKSPACE_DIR={tmp_path / 'ws'} (from command line)",
        f"TOTAL_ROUNDS=2 (from {path}:4, as MAX_ROUNDS)",
        "SEED=3 (from environment)",
        "EVAL_K=2 (from command line)",
        "TRL_LOSS_TYPE=sft (from embedded profile)",
    ):
        assert line in out, line
    block = out.split("not left to their defaults")[1].split("\nchecks")[0].splitlines()[1:]
    assert block and all(re.fullmatch(r" {17}[A-Z0-9_]+=.* \(from .+\)", line) for line in block), block
    assert not (tmp_path / "ws").exists()


def test_the_runs_log_starts_with_the_sources_and_the_warning(tmp_path, monkeypatch, caplog):
    """The launcher as a real run calls it, with the round loop replaced by one that only reports."""
    import prosetting.managers.round_controller as rc
    from prosetting.managers.launcher import launch

    class Controller:
        def __init__(self, cfg, driver=None, sources=None):
            self.ctx, self.paths = Namespace(), Namespace(summary="s", report="r", plot="p")

        def run(self):
            return {"status": "completed", "duration_s": 0, "rounds_done": 0, "rounds_failed": 0, "errors": []}

    monkeypatch.setattr(rc, "RoundController", Controller)
    monkeypatch.setattr(rc, "AutoDriver", lambda cfg: None)
    monkeypatch.setattr("prosetting.managers.launcher.setup_logging", lambda *a, **k: tmp_path / "run.log")
    path = settings_file(tmp_path, "SEED=42\nGENERATOR_MODEL_PATH=org/generator\n")
    args = Namespace(env_file=str(path), set=[], workspace=str(tmp_path / "ws"), rounds=2, dry_run=False, mode="auto")
    args.from_round = args.from_stage = None
    monkeypatch.setattr("prosetting.managers.launcher.load_config", lambda f, o: load_config(f, o, {"SEED": "3"}))
    with caplog.at_level(logging.INFO, logger="prosetting.managers.launcher"):
        assert launch(args) == 0
    text = caplog.text
    assert f"SEED=3 from the environment overrides SEED=42 of {path}:1" in text
    assert (
        "TOTAL_ROUNDS=2 (from command line)" in text and f"GENERATOR_MODEL_PATH=org/generator (from {path}:2)" in text
    )
    assert "GENERATOR_MODEL_PATH=org/generator unused" in text


# --- 4. the embedded default is unchanged by the paper's defaults ---------------------------------------------------
def test_the_embedded_default_resolves_as_before():
    cfg, sources = load_config(env_file=None, environ={})
    assert cfg.to_dict() == EMBEDDED_RESOLVED
    assert set(sources.values()) == {"embedded profile"}


def test_the_embedded_profile_says_only_what_differs_from_the_defaults():
    for key, value in EMBEDDED_PROFILE.items():
        assert default_of(key) != value, f"EMBEDDED_PROFILE[{key!r}] is Config's default"


# --- 5. a Generator no round uses is not loaded ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "settings,used",
    [
        ({"QUESTION_WRITER": "teacher"}, False),
        ({"QUESTION_WRITER": "mixed", "CURRICULUM": "static"}, False),
        ({"QUESTION_WRITER": "mixed", "GENERATOR_TRAIN_START_ROUND": "4", "TOTAL_ROUNDS": "3"}, False),
        ({"QUESTION_WRITER": "mixed"}, True),
        ({"QUESTION_WRITER": "generator", "TOTAL_ROUNDS": "2"}, True),  # trained in round 2
    ],
)
def test_the_generator_model_is_looked_up_only_when_a_round_uses_it(settings, used, tmp_path, monkeypatch):
    looked_up = []
    monkeypatch.setattr(plan, "cached_model", lambda value, revision=None: looked_up.append(value))
    overrides = {"GENERATOR_MODEL_PATH": "org/generator", "WORKSPACE_DIR": str(tmp_path / "ws"), **settings}
    cfg, sources = load_config(None, overrides=overrides, environ={})
    assert cfg.uses_generator is used
    assert (("GENERATOR_MODEL_PATH", "GENERATOR_MODEL_REVISION") in cfg.models_in_use()) is used
    text = plan.describe_plan(cfg, Inputs(cfg, sources, Machine()))
    assert looked_up == (["org/generator"] if used else [])
    assert ("GENERATOR_MODEL_PATH=org/generator unused" in text) is not used


def test_a_plain_sources_dict_still_describes(tmp_path):
    cfg = Config(WORKSPACE_DIR=str(tmp_path))
    assert plan.describe_settings(cfg, {"SEED": "environment"}) == [
        plan.describe_settings(cfg, {"SEED": "environment"})[0],
        "                 SEED=42 (from environment)",
    ]
    assert plan.describe_settings(cfg, {}) == [] and isinstance(load_config(None, environ={})[1], Sources)


def test_a_generator_no_round_uses_is_not_resolved_at_start(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from prosetting.managers import round_controller

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    resolved = []
    monkeypatch.setattr(
        round_controller, "resolve_for_run", lambda v, rev, rec: resolved.append(v) or SimpleNamespace(repo_id="")
    )
    for writer, expected in (("teacher", [str(model)]), ("mixed", [str(model), "org/generator"])):
        resolved.clear()
        cfg, _ = load_config(
            env_file=None,
            environ={
                "SOLVER_MODEL_PATH": str(model),
                "GENERATOR_MODEL_PATH": "org/generator",
                "QUESTION_WRITER": writer,
            },
        )
        round_controller.RoundController.resolve_models(SimpleNamespace(cfg=cfg, ctx=SimpleNamespace(models={})), {})
        assert resolved == expected
