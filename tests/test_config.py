"""Configuration: precedence, validation that names the key, redaction, and .env.example coverage."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from prosetting.core.config import (
    GROUPS,
    REDACTED,
    Config,
    ConfigError,
    describe_fields,
    describe_groups,
    diff_configs,
    load_config,
)
from prosetting.processors.stages import check_settings
from prosetting.utils.settings_docs import SETTINGS_BEGIN, SETTINGS_DOC, render_env_example, render_settings_list

REPO = Path(__file__).resolve().parent.parent


def test_defaults_follow_the_seed(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    cfg, sources = load_config(env_file=None, environ={"SOLVER_MODEL_PATH": str(tmp_path)})
    assert (cfg.TOTAL_ROUNDS, cfg.ATTEMPTS_PER_QUESTION, cfg.TEACHER_CONCURRENT_WORKERS) == (5, 8, 32)
    assert (cfg.TRAIN_START_ROUND, cfg.REPLAY_RATIO, cfg.TRL_ACCUMULATE_ROUNDS) == (3, 0.2, True)
    assert cfg.loss_types == ["sigmoid"] and cfg.TRL_LOSS_WEIGHTS == ""  # the paper's plain DPO
    assert set(sources.values()) == {"environment"}
    embedded, sources = load_config(env_file=None, environ={})
    assert (embedded.TRAIN_START_ROUND, embedded.TRL_ACCUMULATE_ROUNDS, embedded.loss_types) == (1, False, ["sft"])
    assert set(sources.values()) == {"embedded profile"}


def test_precedence_defaults_env_file_environment_command_line(tmp_path):
    env = tmp_path / "x.env"
    env.write_text("TOTAL_ROUNDS=2\nSEED=7\nREPLAY_RATIO=0.5\nHF_HOME=/tmp/another-tools-key\n")
    cfg, sources = load_config(env, overrides={"SEED": "9"}, environ={"REPLAY_RATIO": "0.3"})
    assert cfg.TOTAL_ROUNDS == 2 and sources["TOTAL_ROUNDS"] == str(env) and sources.where("TOTAL_ROUNDS") == f"{env}:1"
    assert cfg.REPLAY_RATIO == 0.3 and sources["REPLAY_RATIO"] == "environment"
    assert cfg.SEED == 9 and sources["SEED"] == "command line"


@pytest.mark.parametrize(
    "key,value,expected",
    [
        ("TOTAL_ROUNDS", "five", "TOTAL_ROUNDS: expected an integer, got 'five'"),
        ("TOTAL_ROUNDS", "0", "TOTAL_ROUNDS: expected a value >= 1"),
        ("REPLAY_RATIO", "1.5", "REPLAY_RATIO: expected a value <= 1.0"),
        ("AUTO_RETRY_ENABLED", "maybe", "AUTO_RETRY_ENABLED: expected true or false"),
        ("COLLECTION_BACKEND", "tgi", "COLLECTION_BACKEND: expected one of"),
        pytest.param(
            "COLLECTION_BACKEND",
            "vllm",
            "COLLECTION_BACKEND: vllm is not installed",
            marks=pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed"),
        ),
        ("TEACHER_BACKEND", "llm", "TEACHER_BASE_URL: required when TEACHER_BACKEND=llm"),
        ("TRL_LOSS_WEIGHTS", "1.0,0.5", "TRL_LOSS_WEIGHTS: expected 1 weight (one per"),  # embedded: TRL_LOSS_TYPE=sft
        (
            "SOLVER_MODEL_PATH",
            "/nonexistent/model",
            "SOLVER_MODEL_PATH: '/nonexistent/model' is neither an existing folder",
        ),
        ("QUESTIONS_FILE", "/nonexistent/q.json", "QUESTIONS_FILE: file not found"),
        ("NO_SUCH_KEY", "1", "NO_SUCH_KEY: unknown setting"),
    ],
)
def test_bad_values_fail_naming_the_key(key, value, expected):
    """As an entry point loads the settings: load_config (types, choices, ranges, models and files), then each
    stage's own checks."""
    with pytest.raises(ConfigError, match=re.escape(expected)):
        check_settings(load_config(env_file=None, overrides={key: value}, environ={})[0])


def test_env_file_error_names_the_file(tmp_path):
    env = tmp_path / "bad.env"
    env.write_text("ATTEMPTS_PER_QUESTION=eight\n")
    with pytest.raises(
        ConfigError, match=f"ATTEMPTS_PER_QUESTION: expected an integer, got 'eight' \\(from {re.escape(str(env))}:1\\)"
    ):
        load_config(env, environ={})
    with pytest.raises(ConfigError, match="--env-file: file not found"):
        load_config(tmp_path / "missing.env", environ={})


def test_secrets_are_redacted_and_ignored_in_diffs():
    cfg, _ = load_config(env_file=None, environ={"TEACHER_API_KEY": "sk-secret"})
    assert cfg.TEACHER_API_KEY == "sk-secret"
    dumped = cfg.to_dict()
    assert dumped["TEACHER_API_KEY"] == REDACTED and "sk-secret" not in str(dumped)
    other = {**dumped, "TEACHER_API_KEY": "different", "SEED": 1}
    assert diff_configs(other, dumped) == [("SEED", 1, 42)]


def test_env_example_and_the_settings_page_are_generated_from_config():
    # `python -m prosetting.utils.settings_docs` rewrites both after a field is added or changed.
    assert SETTINGS_DOC == "docs/configuration.md"
    assert (REPO / ".env.example").read_text() == render_env_example()
    page = (REPO / SETTINGS_DOC).read_text()
    assert page.count(SETTINGS_BEGIN) == 1 and render_settings_list() in page, (
        "run: python -m prosetting.utils.settings_docs"
    )
    text = (REPO / ".env.example").read_text()
    for key, _default, help_text in describe_fields():
        assert re.search(rf"^# {key}=", text, re.M) and help_text in text, f".env.example lacks {key}"


def test_every_key_is_in_one_group_in_field_order_and_help_lists_them_by_group():
    keys = [key for key, _, _ in describe_fields()]
    firsts = [first for first, _, _ in GROUPS]
    assert firsts[0] == keys[0] and [k for k in keys if k in firsts] == firsts, "GROUPS: first keys in field order"
    grouped = describe_groups()
    assert [key for _, _, members in grouped for key, _, _ in members] == keys
    assert all(members for _, _, members in grouped) and len({title for title, _, _ in grouped}) == len(GROUPS)
    # the `# --- title ---` lines in the class say the same as GROUPS
    source = (REPO / "core" / "config.py").read_text()
    assert re.findall(r"^    # --- (.+) ---$", source, re.M) == [title for _, title, _ in GROUPS]
    from prosetting.scripts.run_training import build_parser

    help_text = build_parser().format_help()
    positions = [help_text.index(f"\n{title}: ") for _, title, _ in GROUPS]
    assert positions == sorted(positions)
    for (title, _, members), start, end in zip(grouped, positions, [*positions[1:], len(help_text)], strict=True):
        for key, _default, _help in members:
            assert f"\n  {key}=" in help_text[start:end], f"--help lacks {key} under {title}"
    assert "TRAIN_START_ROUND=3, embedded: 1" in help_text


def test_every_field_has_help():
    assert all(h for _, _, h in describe_fields())
    assert len(describe_fields()) == len(Config.__dataclass_fields__)


def test_embedded_profile_applies_only_to_the_embedded_solver_and_never_over_a_user_value(tmp_path):
    from prosetting.core.config import EMBEDDED_PROFILE

    cfg, sources = load_config(env_file=None, environ={})
    for key, value in EMBEDDED_PROFILE.items():
        assert getattr(cfg, key) == value and sources[key] == "embedded profile"
    cfg, sources = load_config(env_file=None, overrides={"MAX_POOL_SIZE": "7"}, environ={})
    assert cfg.MAX_POOL_SIZE == 7 and sources["MAX_POOL_SIZE"] == "command line"
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    cfg, sources = load_config(env_file=None, overrides={"SOLVER_MODEL_PATH": str(model)}, environ={})
    assert "embedded profile" not in sources.values()
    assert cfg.MAX_POOL_SIZE == Config.__dataclass_fields__["MAX_POOL_SIZE"].default


def test_one_set_parser_names_the_bad_argument():
    from prosetting.core.config import parse_set_args

    assert parse_set_args(["SEED=3", "TEACHER_API_KEY=a=b", "SEED=4"]) == {"SEED": "4", "TEACHER_API_KEY": "a=b"}
    with pytest.raises(ConfigError, match=r"--set 'SEED': expected KEY=VALUE"):
        parse_set_args(["SEED"])
    with pytest.raises(ConfigError, match=r"--set 'SEEDS=3': SEEDS is not a setting"):
        parse_set_args(["SEED=1", "SEEDS=3"])
