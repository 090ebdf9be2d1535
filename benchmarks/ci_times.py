"""The times of one `.ci/run`, read from what it printed, as a results file docs/tests.md quotes.

    CI=true bash .ci/run </dev/null > ci.log 2>&1
    python benchmarks/ci_times.py ci.log --out results/ci_times.json

.ci/run prints each step's seconds ("core install took 52s", ...) and pytest closes each tier with its summary
line ("412 passed, 3 skipped, 82 deselected in 61.20s"); this keeps them with the machine (CPU model, cores,
AVX-512, AMX), so a figure in the docs names the machine it was measured on.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from prosetting.benchmarks.run_record import machine
from prosetting.core.io import atomic_write_json

STEPS = {
    "core_install_s": r"core install took (\d+)s",
    "fast_tier_s": r"fast tests on requirements\.txt alone took (\d+)s",
    "engine_install_s": r"engine install took (\d+)s",
    "total_s": r"CI took (\d+)s",
}
SUMMARY = re.compile(r"^=+ (?P<counts>.*?) in (?P<seconds>[\d.]+)s(?: \(.*\))? =+$", re.MULTILINE)


def parse(text: str) -> dict:
    """Each step's seconds and each pytest tier's counts and seconds, in the order they were printed."""
    out: dict = {k: int(m.group(1)) for k, pattern in STEPS.items() if (m := re.search(pattern, text))}
    tiers = []
    for m in SUMMARY.finditer(text):
        counts = {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", m.group("counts"))}
        tiers.append({"counts": counts, "seconds": float(m.group("seconds"))})
    out["pytest"] = tiers
    if len(tiers) == 2:
        out["fast_tier_pytest_s"], out["full_tier_pytest_s"] = tiers[0]["seconds"], tiers[1]["seconds"]
        if "total_s" in out:
            out["full_tier_tail_s"] = out["total_s"] - sum(
                out.get(k, 0) for k in ("core_install_s", "fast_tier_s", "engine_install_s")
            )
    out["exit"] = int(m.group(1)) if (m := re.search(r"^EXIT (\d+)$", text, re.MULTILINE)) else None
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log", type=Path, help="what .ci/run printed")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--note", default="", help="how the machine was (idle, caches), kept with the figures")
    args = ap.parse_args(argv)
    result = {"machine": machine(), "note": args.note, **parse(args.log.read_text())}
    atomic_write_json(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "pytest"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
