"""utils/test_runner.py, the self-test a user runs after installing: every check passes, in seconds."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # starts a subprocess
def test_self_test_passes(tmp_path):
    out = subprocess.run(
        [sys.executable, str(REPO / "utils" / "test_runner.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = out.stdout.strip().splitlines()
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.fullmatch(r"\d+ passed, 0 failed", lines[-1]), lines[-1]
    assert int(lines[-1].split()[0]) == sum(line.startswith("PASS") for line in lines) >= 8
