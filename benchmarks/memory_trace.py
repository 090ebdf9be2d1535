"""Run a command and sample the memory of its whole process tree: the figures behind "peak memory per stage".

    python benchmarks/memory_trace.py --out results/mem.csv -- python scripts/run_training.py --env-file ...

Every `--interval` seconds it writes one CSV row: the time, the summed resident memory (RSS) of the command and
every process it started (engines, accelerate workers, servers), the largest single process and its name, and the
machine's used memory. The command's exit status is this script's. `--stages LOG` then reads a run's log file
(the "round r/N: stage" lines of the round controller) and prints the peak of each stage and round from the CSV.
RSS counts shared pages once per process, so the sum is an upper bound on what the tree holds.
"""

from __future__ import annotations

import argparse
import csv
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path

import psutil


def _tree_rss(root: psutil.Process) -> tuple[float, float, str]:
    """(sum of RSS MiB over root and its descendants, largest single RSS MiB, that process's name)."""
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0, 0.0, ""
    total, top, top_name = 0.0, 0.0, ""
    for p in procs:
        try:
            rss = p.memory_info().rss / 2**20
            name = " ".join(p.cmdline()[:3])[-60:] or p.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        total += rss
        if rss > top:
            top, top_name = rss, name
    return total, top, top_name


def trace(cmd: list[str], out: Path, interval: float) -> int:
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(cmd)
    root = psutil.Process(proc.pid)
    peak = 0.0
    with out.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["time", "tree_rss_mib", "largest_rss_mib", "largest_process", "machine_used_mib"])
        try:
            while proc.poll() is None:
                total, top, name = _tree_rss(root)
                peak = max(peak, total)
                used = psutil.virtual_memory().used / 2**20
                w.writerow(
                    [datetime.now().isoformat(timespec="seconds"), f"{total:.0f}", f"{top:.0f}", name, f"{used:.0f}"]
                )
                fh.flush()
                time.sleep(interval)
        except KeyboardInterrupt:
            proc.wait()
    print(f"memory_trace: peak tree RSS {peak:.0f} MiB; samples in {out}", file=sys.stderr)
    return proc.returncode


_STAGE = re.compile(r"^(\S+ \S+),\d+ .*round (\d+)/\d+: (.+)$")
_EVAL = re.compile(r"^(\S+ \S+),\d+ .* (eval_\w+): \d+ \w+ engine")


def stages(csv_path: Path, log: Path) -> None:
    """Peak tree RSS per stage: a stage runs from its log line ("round r/N: stage", or an evaluation's engine
    line) to the next one."""
    rows = list(csv.DictReader(csv_path.open()))
    samples = [(datetime.fromisoformat(r["time"]), float(r["tree_rss_mib"]), float(r["largest_rss_mib"])) for r in rows]
    marks: list[tuple[datetime, str]] = []
    for line in log.read_text().splitlines():
        m = _STAGE.match(line)
        if m:
            marks.append((datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S"), f"r{m.group(2)} {m.group(3)}"))
        m = _EVAL.match(line)
        if m:
            marks.append((datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S"), m.group(2)))
    if not marks or not samples:
        print("no stage lines or no samples", file=sys.stderr)
        return
    marks.append((samples[-1][0] + timedelta(seconds=1), "end"))
    first = [s for s in samples if s[0] < marks[0][0]]
    if first:
        print(f"{'before the first stage line':45s} peak tree {max(s[1] for s in first):7.0f} MiB")
    for (t0, name), (t1, _) in pairwise(marks):
        inside = [s for s in samples if t0 <= s[0] < t1]
        if inside:
            print(
                f"{name:45s} {(t1 - t0).total_seconds():7.0f} s  peak tree {max(s[1] for s in inside):7.0f} MiB"
                f"  largest process {max(s[2] for s in inside):7.0f} MiB"
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="CSV of samples")
    p.add_argument("--interval", type=float, default=2.0)
    p.add_argument("--stages", type=Path, help="a run's log file: print the peak per stage from --out, run nothing")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    args = p.parse_args()
    if args.stages:
        stages(args.out, args.stages)
        return
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        p.error("give the command after --")
    sys.exit(trace(cmd, args.out, args.interval))


if __name__ == "__main__":
    main()
