"""benchmarks/memory_trace.py: the process tree's memory sampled while a command runs, and the peak per stage
read back from a run's log lines."""

import csv
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "memory_trace.py"

# A parent that starts a child holding about 200 MiB: the tree's sum must see the child. The child holds it until the
# file named by its argument exists (the test makes it once the trace has seen it, so no sampling interval on a loaded
# machine can miss it), or for 10 minutes at most.
CHILD = (
    "import os, sys, time; b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096]); t = time.time()\n"
    "while not os.path.exists(sys.argv[1]) and time.time() - t < 600: time.sleep(0.05)"
)
PARENT = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {CHILD!r}, sys.argv[1]], check=True)"


def complete_rows(path: Path) -> list[dict]:
    """The CSV rows written so far, without a last line still being written."""
    lines = path.read_text().split("\n")[:-1] if path.exists() else []
    return list(csv.DictReader(lines))


@pytest.mark.slow
def test_the_trace_sums_the_tree_and_keeps_the_exit_status(tmp_path):
    out, release = tmp_path / "mem.csv", tmp_path / "release"
    trace = [sys.executable, str(SCRIPT), "--out", str(out), "--interval", "0.2", "--"]
    proc = subprocess.Popen([*trace, sys.executable, "-c", PARENT, str(release)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        rows = complete_rows(out)
        if len(rows) >= 3 and max(float(r["tree_rss_mib"]) for r in rows) > 200:
            break
        time.sleep(0.1)
    release.touch()
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    rows = list(csv.DictReader(out.open()))
    assert len(rows) >= 3
    assert max(float(r["tree_rss_mib"]) for r in rows) > 200  # the child's 200 MiB, counted in the tree
    assert "peak tree RSS" in stderr

    failed = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--", sys.executable, "-c", "exit(3)"])
    assert failed.returncode == 3


def test_the_peak_per_stage_comes_from_the_run_log(tmp_path, capsys):
    out = tmp_path / "mem.csv"
    out.write_text(
        "time,tree_rss_mib,largest_rss_mib,largest_process,machine_used_mib\n"
        "2026-12-02T04:00:01,100,90,a,1000\n"
        "2026-12-02T04:00:05,3000,2600,engine,4000\n"
        "2026-12-02T04:00:12,9000,8800,trainer,10000\n"
        "2026-12-02T04:00:20,500,400,a,2000\n"
    )
    log = tmp_path / "auto_trainer.log"
    log.write_text(
        "2026-12-02 04:00:03,001 INFO    prosetting.collectors.engine_pool: eval_baseline: 1 vllm engine(s) via local\n"
        "2026-12-02 04:00:08,001 INFO    prosetting.managers.round_controller: round 1/2: TRL DPO training\n"
        "2026-12-02 04:00:15,001 INFO    prosetting.managers.round_controller: round 1/2: next-round preparation\n"
    )
    spec = importlib.util.spec_from_file_location("memory_trace", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.stages(out, log)
    lines = {line.split("  ")[0].strip(): line for line in capsys.readouterr().out.splitlines()}
    assert "3000 MiB" in lines["eval_baseline"] and "5 s" in lines["eval_baseline"]
    assert "9000 MiB" in lines["r1 TRL DPO training"]
    assert "500 MiB" in lines["r1 next-round preparation"]
