"""Does the embedded default learn, beyond seed-to-seed noise? The real command line, once per seed.

    python benchmarks/embedded_learning.py --seeds 0 1 2 42 --out /tmp/embedded_learning

Each seed runs `python scripts/run_training.py --set SEED=s` in its own workspace (the warm start, the
pool, sampling and training all follow the seed), one after the other so that timings are those of a
machine with nothing else running. Printed and saved (`<out>/embedded_learning.json`): per seed the
held-out greedy accuracy at the warm start and after every round, the gain, and the wall time; over the
seeds the mean and spread of the warm start, of the final accuracy and of the gain. The gain counts as
real when every seed's gain is above twice the binomial standard error of one held-out evaluation (the
measurement noise) and the mean gain is above twice the seed-to-seed standard deviation of the warm-start
accuracy (the run-to-run noise).
Extra `--set KEY=VALUE` pairs go to every run (e.g. `--set TRL_LOSS_TYPE=sigmoid,sft`).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_seed(seed: int, out: Path, extra: list[str]) -> dict:
    ws = out / f"seed_{seed}"
    log = out / f"seed_{seed}.log"
    cmd = [sys.executable, str(REPO / "scripts" / "run_training.py"), "--workspace", str(ws), "--set", f"SEED={seed}"]
    for kv in extra:
        cmd += ["--set", kv]
    start = time.time()
    with log.open("w") as fh:
        rc = subprocess.run(cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
    wall = time.time() - start
    if rc != 0:
        raise SystemExit(f"seed {seed}: run_training.py exited {rc}; see {log}")
    summary = json.loads((ws / "auto_training_summary.json").read_text())
    curve = [r["heldout_accuracy"] for r in summary["rounds"]]
    base = summary["baseline_heldout_accuracy"]
    return {
        "seed": seed,
        "wall_s": round(wall, 1),
        "warm_start": base,
        "rounds": curve,
        "final": curve[-1],
        "gain": curve[-1] - base,
        "heldout_n": json.loads((ws / "results" / "evaluations.json").read_text())["baseline"]["n"],
    }


def spread(xs: list[float]) -> dict:
    return {
        "mean": statistics.fmean(xs),
        "min": min(xs),
        "max": max(xs),
        "stdev": statistics.stdev(xs) if len(xs) > 1 else 0.0,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="embedded_learning", help="folder for the workspaces, logs and the result")
    p.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE")
    a = p.parse_args()
    from prosetting.core.config import ConfigError, parse_set_args

    try:
        parse_set_args(a.extra)  # a bad pair stops here, not once per run
    except ConfigError as exc:
        p.error(str(exc))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for seed in a.seeds:
        runs.append(run_seed(seed, out, a.extra))
        r = runs[-1]
        print(
            f"seed {seed:>3}: warm start {100 * r['warm_start']:5.1f}% -> "
            + " ".join(f"{100 * x:5.1f}%" for x in r["rounds"])
            + f"   gain {100 * r['gain']:+5.1f} pp   {r['wall_s']:.0f} s",
            flush=True,
        )
    n = runs[0]["heldout_n"]
    warm, final, gain = (spread([r[k] for r in runs]) for k in ("warm_start", "final", "gain"))
    p_mid = warm["mean"]
    stderr = math.sqrt(p_mid * (1 - p_mid) / n)
    learns = gain["min"] > 2 * stderr and gain["mean"] > 2 * warm["stdev"]
    result = {
        "seeds": a.seeds,
        "extra": a.extra,
        "runs": runs,
        "warm_start": warm,
        "final": final,
        "gain": gain,
        "heldout_binomial_stderr": stderr,
        "learns": learns,
    }
    (out / "embedded_learning.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"warm start {100 * warm['mean']:.1f}% (range {100 * warm['min']:.1f}-{100 * warm['max']:.1f}), "
        f"final {100 * final['mean']:.1f}% (range {100 * final['min']:.1f}-{100 * final['max']:.1f})"
    )
    print(
        f"gain {100 * gain['mean']:+.1f} pp (range {100 * gain['min']:+.1f} to {100 * gain['max']:+.1f}, "
        f"stdev {100 * gain['stdev']:.1f}); noise: warm-start stdev over seeds {100 * warm['stdev']:.1f} pp, "
        f"binomial stderr {100 * stderr:.1f} pp on {n} questions"
    )
    print("learns beyond the noise" if result["learns"] else "does NOT learn beyond the noise")
    print(f"longest run {max(r['wall_s'] for r in runs):.0f} s")


if __name__ == "__main__":
    main()
