"""scripts/evaluate.py reads its generation settings as the run does: from --env-file with the environment over it,
a flag on the command line over both; without a settings file, the settings' defaults for a user's model."""

from __future__ import annotations

from prosetting.core.config import Config
from prosetting.scripts import evaluate


def _args(*argv: str):
    args = evaluate.parse_args(["--model", "org/model", "--data", "x.jsonl", *argv])
    evaluate.settings(args)
    return args


def test_the_runs_settings_file_sets_extraction_lengths_template_k_and_temperature(tmp_path, monkeypatch):
    monkeypatch.setenv("EVAL_TEMPERATURE", "0.5")  # the environment over the file, as in a run
    env = tmp_path / "run.env"
    env.write_text(
        "SOLVER_MODEL_PATH=org/model\nANSWER_EXTRACTION=auto\nMAX_NEW_TOKENS=300\nEVAL_K=2\n"
        "EVAL_TEMPERATURE=0.9\nSOLVER_SYSTEM_PROMPT=Answer briefly.\nSEED=7\n"
    )
    args = _args("--env-file", str(env), "--k", "5")
    assert (args.answer_extraction, args.max_new_tokens, args.system_prompt, args.seed) == (
        "auto",
        300,
        "Answer briefly.",
        7,
    )
    assert args.k == 5 and args.temperature == 0.5  # the command line, then the environment, win


def test_an_embedded_runs_file_evaluates_as_the_embedded_run_did(tmp_path):
    env = tmp_path / "embedded.env"
    env.write_text("SEED=3\n")  # no SOLVER_MODEL_PATH: the embedded profile, as the run resolved it
    args = _args("--env-file", str(env))
    assert (args.answer_extraction, args.max_new_tokens, args.k) == ("boxed", 64, 4)


def test_without_a_settings_file_a_users_model_gets_the_defaults_not_the_toys():
    args = _args()
    assert args.max_new_tokens == Config.MAX_NEW_TOKENS and args.k == Config.EVAL_K
    assert args.answer_extraction == Config.ANSWER_EXTRACTION


def test_a_bad_settings_file_is_refused_naming_it(tmp_path, capsys):
    env = tmp_path / "bad.env"
    env.write_text("EVAL_K=many\n")
    assert evaluate.main(["--model", "org/model", "--data", "x.jsonl", "--env-file", str(env)]) == 2
    assert "EVAL_K" in capsys.readouterr().err
