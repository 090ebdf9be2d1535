"""`fetched:NAME` as a model setting: the folder scripts/fetch_model.py fills, named the same on every machine."""

from prosetting.core.config import ConfigError, load_config
from prosetting.core.models import check_model_setting, resolve_model


def test_fetched_name_resolves_to_the_models_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("PROSETTING_MODELS_DIR", str(tmp_path))
    folder = tmp_path / "smollm2-135m-instruct"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert check_model_setting("SOLVER_MODEL_PATH", "fetched:smollm2-135m-instruct") is None
    assert resolve_model("fetched:smollm2-135m-instruct").path == str(folder.resolve())
    cfg, _ = load_config(env_file=None, environ={"SOLVER_MODEL_PATH": "fetched:smollm2-135m-instruct"})
    assert cfg.SOLVER_MODEL_PATH == "fetched:smollm2-135m-instruct" and not cfg.embedded


def test_a_model_not_fetched_yet_names_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("PROSETTING_MODELS_DIR", str(tmp_path))
    problem = check_model_setting("SOLVER_MODEL_PATH", "fetched:smollm2-135m-instruct")
    assert "python scripts/fetch_model.py smollm2-135m-instruct" in problem and str(tmp_path) in problem
    try:
        load_config(env_file=None, environ={"SOLVER_MODEL_PATH": "fetched:smollm2-135m-instruct"})
    except ConfigError as exc:
        assert "SOLVER_MODEL_PATH" in str(exc) and "fetch_model.py" in str(exc)
    else:
        raise AssertionError("an unfetched model was accepted")
