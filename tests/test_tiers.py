"""The fast tier stays in-process: tests/conftest.py catches a test without the slow marker that starts a process."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest


def test_a_process_started_by_a_fast_test_is_recorded_and_a_system_probe_is_not(_fast_tests_start_no_process):
    started = _fast_tests_start_no_process  # what this test started, as the guard records it
    assert started == []
    subprocess.run(["uname", "-p"], capture_output=True, check=False)  # a system probe: let through
    assert started == []
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    process = multiprocessing.get_context("spawn").Process(target=print)
    process.start()
    process.join()
    assert [s.split()[0] for s in started] == ["subprocess.Popen", "multiprocessing"]
    started.clear()  # this test started them on purpose: teardown would fail it otherwise


def test_the_designs_test_runner_runs_the_fast_tier_and_passes_other_arguments_to_pytest():
    from prosetting.utils.test_runner import pytest_args

    assert pytest_args([]) == ["-m", "not slow"]
    assert pytest_args(["-k", "teacher", "-x"]) == ["-m", "not slow", "-k", "teacher", "-x"]
    assert pytest_args(["--all", "-q"]) == ["-q"]


@pytest.mark.slow
def test_python_utils_test_runner_runs_the_self_test_from_any_folder(tmp_path):
    repo = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, str(repo / "utils" / "test_runner.py"), "-q", "-k", "test_a_process_started_by_a_fast_test"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "1 passed" in out.stdout
