"""scripts/serve_teacher.py and teacher_model/serve.py: the vLLM server command a Teacher endpoint is started with
(the server itself is started in tests/test_teacher_vllm.py, a slow test)."""

from __future__ import annotations

import json
import sys

import pytest

from prosetting.scripts import serve_teacher
from prosetting.teacher_model.serve import base_url, served_name, server_command


@pytest.fixture
def model_dir(tmp_path):
    folder = tmp_path / "smollm2-135m-instruct"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"max_position_embeddings": 1024}))
    return folder


def flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def test_cpu_command_has_the_settings_vllm_needs_there(model_dir, monkeypatch):
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    argv, env = server_command(model_dir, port=8123, max_model_len=4096, on_gpu=False, extra=["--seed", "0"])
    assert argv[:3] == [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]  # not the `vllm` command
    assert flag(argv, "--model") == str(model_dir) and flag(argv, "--served-model-name") == "smollm2-135m-instruct"
    assert flag(argv, "--port") == "8123" and flag(argv, "--host") == "127.0.0.1"
    assert flag(argv, "--max-model-len") == "1024"  # capped at the model's own context
    assert flag(argv, "--gpu-memory-utilization") == "0.3" and env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert argv[-2:] == ["--seed", "0"]


def test_gpu_command_leaves_vllm_its_defaults(model_dir, monkeypatch):
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "4")
    argv, env = server_command(model_dir, name="teacher", on_gpu=True)
    assert flag(argv, "--served-model-name") == "teacher" and "--gpu-memory-utilization" not in argv
    assert flag(argv, "--max-model-len") == "1024" and env["VLLM_CPU_KVCACHE_SPACE"] == "4"


def test_a_folder_without_config_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        server_command(tmp_path)


def test_the_script_prints_the_settings_then_becomes_the_server(model_dir, monkeypatch, capsys):
    started = []
    monkeypatch.setattr(serve_teacher.os, "execvpe", lambda path, argv, env: started.append((path, argv, env)))
    serve_teacher.main(["--model", str(model_dir), "--port", "8001", "--host", "0.0.0.0", "--", "--seed", "1"])
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["TEACHER_BASE_URL=http://127.0.0.1:8001/v1", "TEACHER_MODEL_NAME=smollm2-135m-instruct"]
    ((path, argv, env),) = started
    assert path == sys.executable and flag(argv, "--host") == "0.0.0.0" and argv[-2:] == ["--seed", "1"]
    assert served_name(model_dir) == "smollm2-135m-instruct" and base_url("::", 9) == "http://127.0.0.1:9/v1"


def test_a_fetched_model_is_served_from_the_models_folder(model_dir, monkeypatch):
    monkeypatch.setenv("PROSETTING_MODELS_DIR", str(model_dir.parent))
    argv, _ = server_command("fetched:smollm2-135m-instruct", port=8123, on_gpu=False)
    assert flag(argv, "--model") == str(model_dir.resolve())
    assert flag(argv, "--served-model-name") == "smollm2-135m-instruct"
    with pytest.raises(FileNotFoundError, match="fetch_model.py other"):
        server_command("fetched:other", port=8123, on_gpu=False)
