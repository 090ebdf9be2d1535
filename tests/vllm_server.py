"""A real Teacher endpoint for tests and benchmarks: vLLM's OpenAI-compatible server on a model folder, started
the way scripts/serve_teacher.py starts it (teacher_model/serve.server_command), on a free 127.0.0.1 port.

    with vllm_teacher_server(model_dir, name="teacher") as base_url:     # waits for GET /v1/models
        ... TEACHER_BASE_URL=base_url, TEACHER_MODEL_NAME="teacher" ...
    # stopped: SIGTERM to its process group (the API server and its engine process), SIGKILL after 30 s

As a module-scoped pytest fixture (a test that uses it must be marked slow):

    @pytest.fixture(scope="module")
    def teacher_url(tmp_path_factory):
        with vllm_teacher_server(MODEL, log_path=tmp_path_factory.mktemp("vllm") / "server.log") as url:
            yield url

Start-up is slow on a CPU machine: a 135 M model answered /v1/models 136 s after start on 2 quiet cores, but
522 s on 2 cores under a load of 18 (vLLM compiled the model again); a 2-layer random model took about 50 s.
The wait allows `timeout_s` (READY_TIMEOUT_S by default) and fails with the server's log tail.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prosetting.core.devices import free_port
from prosetting.teacher_model.serve import base_url, server_command

READY_TIMEOUT_S = 600.0  # a 2-layer model's 50 s, x4 under load (as the 135 M model slowed down), then x3
STOP_TIMEOUT_S = 30.0


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def wait_ready(url: str, proc: subprocess.Popen, log_path: Path, timeout_s: float = READY_TIMEOUT_S) -> float:
    """Seconds until GET url/models answered 200; raises RuntimeError with the log's tail if the server exits
    or does not answer within timeout_s."""
    t0 = time.time()
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"vLLM server exited with code {proc.returncode}; its log ends:\n{_tail(log_path)}")
        if time.time() - t0 > timeout_s:
            raise RuntimeError(f"vLLM server did not answer {url}/models in {timeout_s:.0f} s; log:\n{_tail(log_path)}")
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2) as resp:
                if resp.status == 200:
                    return time.time() - t0
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1.0)


def stop(proc: subprocess.Popen, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM to the server's process group (it was started in a session of its own), SIGKILL if it lingers."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            return
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the engine process too, should it outlive the API server
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


@contextmanager
def vllm_teacher_server(
    model_dir: str | os.PathLike,
    name: str | None = None,
    max_model_len: int = 2048,
    log_path: str | os.PathLike | None = None,
    timeout_s: float = READY_TIMEOUT_S,
    env: dict[str, str] | None = None,
    extra: list[str] | tuple[str, ...] = (),
) -> Iterator[str]:
    """Serve `model_dir` as `name` (default: the folder's name) on a free 127.0.0.1 port; yields the base URL
    (http://127.0.0.1:PORT/v1) once it answers, and stops the server's process group on exit. `env` adds
    environment variables (e.g. VLLM_CPU_OMP_THREADS_BIND); the log goes to `log_path` (default: a temporary
    file, removed at the end)."""
    port = free_port()
    argv, environ = server_command(model_dir, port=port, max_model_len=max_model_len, name=name, extra=extra)
    environ.update(env or {})
    temporary = log_path is None  # removed at the end; a failed start shows its tail in the error
    log_path = Path(tempfile.mkstemp(prefix="vllm-teacher-", suffix=".log")[1]) if temporary else Path(log_path)
    url = base_url("127.0.0.1", port)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=environ, start_new_session=True)
    try:
        wait_ready(url, proc, log_path, timeout_s)
        yield url
    finally:
        stop(proc)
        if temporary:
            log_path.unlink(missing_ok=True)
