"""The fast tier stays in-process: tests/conftest.py catches a test without the slow marker that starts a process."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys


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
