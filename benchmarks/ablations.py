"""What each part of the method earns on the embedded default: the full loop against its ablations, paired by seed.

    python benchmarks/ablations.py --seeds 0 1 2 3 4 --jobs 2 --out ablations --update-docs

Every variant is the real command line (`scripts/run_training.py --set SEED=s --set ...`) in its own
workspace. Per seed the full loop runs first and builds the warm start; every other variant of that seed
starts from a copy of the same warm-started solver (`checkpoints/base_solver`), so the variants of a seed
differ only in what the variant changes. Every loop variant trains TRL_MAX_STEPS optimizer steps per round
(the embedded profile's 20), so the curriculum comparisons are made at equal optimizer steps: a variant with
fewer pairs sees them more often, one with more sees a sample. The same-budget SFT control
(`embedded_sft_control.py`) trains from that warm start too, on the full loop's step counts.

Variants (names for --variants; the default set is full, nonadaptive, static, sft_control):
  full              the embedded default, as a new user runs it
  nonadaptive       CURRICULUM=nonadaptive: the same Teacher writes, per round and policy, as many questions as the
                    full loop of the same seed wrote (NONADAPTIVE_PLAN, made from that loop's enhanced files), from
                    parents drawn at random, without the Solver's results; the pool keeps a random subset
                    (R-Zero's "untrained challenger": what adapting to the Solver adds)
  static            CURRICULUM=static: no Teacher-written questions, the seed pool replayed every round
  near_mastery_off  NEAR_MASTERY=1.0: only mastered questions get a harder variant (the default: solved >= 0.75)
  near_mastery_half NEAR_MASTERY=0.5: questions solved half the time or more get one too
  pool_new_first    POOL_CAP=new_first: over MAX_POOL_SIZE new questions are kept first (the cut before the
                    stratified one)
  previous          the curriculum before the zone policies, by configuration: WRITE_POLICIES without stepping
                    stones, HARDER_VARIANT=next_rung, NEAR_MASTERY=1, POOL_CAP=new_first
  previous_raise_one  the same with harder variants that raise one dimension (HARDER_VARIANT=raise_one)
  previous_stones   the same with stepping stones
  no_failed_replay  REPLAY_FAILED=false: questions the solver has not mastered are not put back
  dpo_nll           TRL_LOSS_TYPE=sigmoid,sft: the DPO term beside the NLL term
  apo_nll           TRL_LOSS_TYPE=apo_zero,sft: the anchored preference term (pushes the chosen side up)
  dpo_trunc_nll     sigmoid,sft with DPO_TRUNCATE_REJECTED=true: the rejected side ends after its first differing step
  dpo_trunc_small   the same with TRL_LOSS_WEIGHTS=0.1,1.0: the DPO term at a tenth of the NLL term's weight
  sft_control       the same optimizer steps on reference solutions of problems drawn from the warm start's levels

Writes `<out>/ablations.json` and `<out>/ablations.md`, and copies both to `results/` in the repository:
per variant the held-out greedy accuracy after the last round (mean and standard deviation over the seeds,
per level, level 5 being one rung above the warm start's levels that nothing trains on directly), the
per-seed paired difference against the full loop with its standard error, the optimizer steps and questions
written, and the pool's mean level per round (and on how many seeds it rose from round 1 to the last). A
difference counts as shown when it is more than twice its standard error.
`--update-docs` (formerly `--update-readme`) then rewrites every figure the pages read from results/
(`benchmarks/doc_figures.py`), the table included in docs/ablations.md among them. Extra `--set KEY=VALUE`
pairs go to every loop run (the test suite uses them to shorten the runs).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prosetting.benchmarks.doc_figures import update_pages

REPO = Path(__file__).resolve().parent.parent

VARIANTS: dict[str, list[str]] = {
    "full": [],
    "nonadaptive": ["CURRICULUM=nonadaptive"],  # + NONADAPTIVE_PLAN, made per seed from the full loop's workspace
    "static": ["CURRICULUM=static"],
    "near_mastery_off": ["NEAR_MASTERY=1.0"],
    "near_mastery_half": ["NEAR_MASTERY=0.5"],
    "pool_new_first": ["POOL_CAP=new_first"],
    "previous": [
        "WRITE_POLICIES=error_sibling,harder_variant",
        "HARDER_VARIANT=next_rung",
        "POOL_CAP=new_first",
        "NEAR_MASTERY=1.0",
    ],
    "previous_raise_one": ["WRITE_POLICIES=error_sibling,harder_variant", "POOL_CAP=new_first", "NEAR_MASTERY=1.0"],
    "previous_stones": ["HARDER_VARIANT=next_rung", "POOL_CAP=new_first", "NEAR_MASTERY=1.0"],
    "no_failed_replay": ["REPLAY_FAILED=false"],
    "dpo_nll": ["TRL_LOSS_TYPE=sigmoid,sft"],
    "apo_nll": ["TRL_LOSS_TYPE=apo_zero,sft"],
    "dpo_trunc_nll": ["TRL_LOSS_TYPE=sigmoid,sft", "DPO_TRUNCATE_REJECTED=true"],
    "dpo_trunc_small": ["TRL_LOSS_TYPE=sigmoid,sft", "DPO_TRUNCATE_REJECTED=true", "TRL_LOSS_WEIGHTS=0.1,1.0"],
    "sft_control": [],  # not a loop run: benchmarks/embedded_sft_control.py on the full loop's workspace
}
DEFAULT_VARIANTS = ("full", "nonadaptive", "static", "sft_control")
# The table reads greedy accuracy only: the held-out Mean@k samples are skipped (a fifth of the evaluation's time).
# They cannot change a trajectory: every generate call seeds torch itself, and training runs in its own process.
FAST_EVAL = ["EVAL_TEMPERATURE=0"]
DESCRIPTIONS = {
    "full": "full loop (the default)",
    "nonadaptive": "non-adaptive Teacher (same questions per round and policy, random parents, no results)",
    "static": "static pool (seed pool replayed, no Teacher questions)",
    "near_mastery_off": "harder variants of mastered questions only (`NEAR_MASTERY=1`)",
    "near_mastery_half": "harder variants from 50 % solved (`NEAR_MASTERY=0.5`)",
    "pool_new_first": "pool cap keeps new questions first (`POOL_CAP=new_first`, the old cut)",
    "previous": "the previous curriculum (no stepping stones, next rung, mastered only, new-first cut)",
    "previous_raise_one": "the previous curriculum, harder variants raise one dimension",
    "previous_stones": "the previous curriculum with stepping stones",
    "no_failed_replay": "no replay of failed questions",
    "dpo_nll": "DPO + NLL (`sigmoid,sft`)",
    "apo_nll": "APO-zero + NLL (`apo_zero,sft`)",
    "dpo_trunc_nll": "DPO + NLL, rejected cut after its first wrong step",
    "dpo_trunc_small": "same, DPO term weighted 0.1",
    "sft_control": "same-budget SFT on reference solutions",
}


def env_for(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def run_loop(variant: str, seed: int, out: Path, extra: list[str], threads: int) -> dict:
    ws = out / variant / f"seed_{seed}"
    log = out / variant / f"seed_{seed}.log"
    summary_file = ws / "auto_training_summary.json"
    if summary_file.exists():  # finished before: the benchmark resumes
        return collect(variant, seed, ws, None)
    if variant != "full":
        base = out / "full" / f"seed_{seed}" / "checkpoints" / "base_solver"
        target = ws / "checkpoints" / "base_solver"
        if not target.exists():
            shutil.copytree(base, target)
    ws.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(REPO / "scripts" / "run_training.py"), "--workspace", str(ws), "--set", f"SEED={seed}"]
    settings = list(VARIANTS[variant])
    if variant == "nonadaptive":
        plan = out / variant / f"seed_{seed}.plan.json"
        plan.write_text(json.dumps(write_plan(out / "full" / f"seed_{seed}"), indent=2) + "\n")
        settings.append(f"NONADAPTIVE_PLAN={plan}")
    for kv in FAST_EVAL + settings + extra:  # later --set values win
        cmd += ["--set", kv]
    start = time.time()
    with log.open("w") as fh:
        rc = subprocess.run(
            cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env_for(threads)
        ).returncode
    if rc != 0:
        raise SystemExit(f"{variant} seed {seed}: run_training.py exited {rc}; see {log}")
    return collect(variant, seed, ws, round(time.time() - start, 1))


def write_plan(full_ws: Path) -> dict:
    """What the full loop wrote, per round and policy: the non-adaptive control writes as many."""
    from prosetting.core.io import read_jsonl
    from prosetting.core.state_manager import Paths

    rounds = {}
    for f in sorted(Paths(full_ws).data.glob("round_*_enhanced_questions.jsonl")):
        r = int(f.name.split("_")[1])
        counts: dict[str, int] = {}
        for row in read_jsonl(f):
            for q in row["questions"]:
                counts[q["policy"]] = counts.get(q["policy"], 0) + 1
        rounds[str(r)] = counts
    return {"source": str(full_ws), "rounds": rounds}


def collect(variant: str, seed: int, ws: Path, wall: float | None) -> dict:
    evaluations = json.loads((ws / "results" / "evaluations.json").read_text())
    last = sorted((k for k in evaluations if k.startswith("round_")), key=lambda k: int(k.split("_")[1]))[-1]
    steps = 0
    for f in sorted((ws / "training_results").glob("trl_r*_result.json")):
        steps += json.loads(f.read_text()).get("steps") or 0
    summary = json.loads((ws / "auto_training_summary.json").read_text())
    pool = [row["pool"] for row in summary["rounds"]]
    return {
        "variant": variant,
        "seed": seed,
        "warm_start": evaluations["baseline"]["greedy"],
        "final": evaluations[last]["greedy"],
        "by_level": {k: v["greedy"] for k, v in evaluations[last]["by_level"].items()},
        "warm_by_level": {k: v["greedy"] for k, v in evaluations["baseline"]["by_level"].items()},
        "train_steps": steps,
        "written": sum(row.get("new_questions") or 0 for row in summary["rounds"][:-1]),
        "pool_mean_level": [p.get("mean_level") for p in pool],
        "pool_levels": [p.get("levels") for p in pool],
        "wall_s": wall if wall is not None else summary.get("duration_s"),
    }


def run_control(seed: int, out: Path, threads: int) -> dict:
    ws = out / "full" / f"seed_{seed}"
    result_file = ws / "results" / "sft_control.json"
    if not result_file.exists():
        log = out / "sft_control" / f"seed_{seed}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as fh:
            rc = subprocess.run(
                [sys.executable, str(REPO / "benchmarks" / "embedded_sft_control.py"), "--workspace", str(ws)],
                cwd=REPO,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env_for(threads),
            ).returncode
        if rc != 0:
            raise SystemExit(f"sft_control seed {seed}: exited {rc}; see {log}")
    r = json.loads(result_file.read_text())
    last = r["rounds"][-1]
    steps = sum(x["steps"] for x in r["rounds"])
    return {
        "variant": "sft_control",
        "seed": seed,
        "warm_start": r["warm_start"],
        "final": last["control_greedy"],
        "by_level": last.get("control_by_level", {}),
        "warm_by_level": {},
        "train_steps": steps,
        "written": None,
        "pool_mean_level": [],
        "pool_levels": [],
        "wall_s": None,
    }


def summarize(runs: list[dict], variants: list[str], seeds: list[int]) -> dict:
    by = {(r["variant"], r["seed"]): r for r in runs}
    levels = sorted(
        {lv for r in runs for lv in r["by_level"]}, key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0)
    )
    table = {}
    for v in variants:
        rs = [by[(v, s)] for s in seeds if (v, s) in by]
        finals = [r["final"] for r in rs]
        row = {
            "n": len(rs),
            "mean": statistics.fmean(finals),
            "stdev": statistics.stdev(finals) if len(finals) > 1 else 0.0,
            "per_seed": {r["seed"]: r["final"] for r in rs},
            "by_level": {
                lv: statistics.fmean([r["by_level"][lv] for r in rs if lv in r["by_level"]])
                for lv in levels
                if any(lv in r["by_level"] for r in rs)
            },
            "train_steps": statistics.fmean([r["train_steps"] for r in rs]),
            "written": statistics.fmean([r["written"] for r in rs])
            if all(r.get("written") is not None for r in rs)
            else None,
            "wall_s_max": max((r["wall_s"] for r in rs if r["wall_s"]), default=None),
        }
        curves = [r["pool_mean_level"] for r in rs if r.get("pool_mean_level") and None not in r["pool_mean_level"]]
        if curves and len({len(c) for c in curves}) == 1:
            row["pool_mean_level"] = [statistics.fmean(c[i] for c in curves) for i in range(len(curves[0]))]
            row["pool_level_rises"] = sum(c[-1] > c[0] for c in curves)
            row["pool_top_share"] = pool_shares(rs)
        if v != "full":
            diffs = [
                by[(v, s)]["final"] - by[("full", s)]["final"] for s in seeds if (v, s) in by and ("full", s) in by
            ]
            if diffs:
                se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
                row["paired_diff_vs_full"] = {
                    "mean": statistics.fmean(diffs),
                    "stderr": se,
                    "per_seed": diffs,
                    "shown": len(diffs) > 1 and abs(statistics.fmean(diffs)) > 2 * se,
                }
        table[v] = row
    warm = [by[("full", s)]["warm_start"] for s in seeds if ("full", s) in by]
    return {
        "seeds": seeds,
        "levels": levels,
        "variants": table,
        "warm_start": {
            "mean": statistics.fmean(warm) if warm else None,
            "by_level": {
                lv: statistics.fmean(
                    [by[("full", s)]["warm_by_level"].get(lv, 0.0) for s in seeds if ("full", s) in by]
                )
                for lv in levels
            },
        },
    }


def pool_shares(rs: list[dict]) -> dict:
    """Mean share of the pool at level 4 and at level 5 or above, in round 1 and in the last round."""

    def share(levels: dict, test) -> float:
        n = sum(levels.values())
        return sum(v for k, v in levels.items() if k != "n/a" and test(float(k))) / n if n else 0.0

    out = {}
    for name, test in (("L4", lambda x: x == 4), ("L5+", lambda x: x >= 5)):
        for label, i in (("first", 0), ("last", -1)):
            out[f"{name}_{label}"] = statistics.fmean(share(r["pool_levels"][i], test) for r in rs)
    return out


def markdown(summary: dict) -> str:
    levels = summary["levels"]
    pct = lambda x: f"{100 * x:.1f}"  # noqa: E731
    head = (
        "| variant | held-out greedy % (mean ± sd) | paired diff vs full (± se) | "
        + " | ".join(f"L{lv}" for lv in levels)
        + " | train steps | questions written |"
    )
    threads = summary.get("threads_per_run")
    lines = [
        f"Seeds {', '.join(map(str, summary['seeds']))}; held-out greedy accuracy after the last round, per level "
        f"(level 5 is above the warm start's range); {threads or 'all'} thread(s) per run. Warm start: "
        f"{pct(summary['warm_start']['mean'])} % "
        f"({' / '.join(pct(summary['warm_start']['by_level'][lv]) for lv in levels)} per level).",
        "",
        head,
        "|" + "---|" * (5 + len(levels)),
    ]
    for v, row in summary["variants"].items():
        d = row.get("paired_diff_vs_full")
        diff = (
            "" if d is None else f"{100 * d['mean']:+.1f} ± {100 * d['stderr']:.1f}{' (shown)' if d['shown'] else ''}"
        )
        written = "" if row.get("written") is None else f"{row['written']:.0f}"
        lines.append(
            f"| {DESCRIPTIONS.get(v, v)} | {pct(row['mean'])} ± {pct(row['stdev'])} | {diff} | "
            + " | ".join(pct(row["by_level"][lv]) if lv in row["by_level"] else "" for lv in levels)
            + f" | {row['train_steps']:.0f} | {written} |"
        )
    curves = {v: row for v, row in summary["variants"].items() if row.get("pool_mean_level")}
    if curves:
        n = max(len(row["pool_mean_level"]) for row in curves.values())
        lines += [
            "",
            "Pool per round (mean over seeds): mean difficulty level, the seeds on which it rose from round 1 "
            "to the last, and the share of level-4 and level-5+ questions in round 1 → the last round.",
            "",
            "| variant | " + " | ".join(f"round {i + 1}" for i in range(n)) + " | rose on | L4 share | L5+ share |",
            "|" + "---|" * (4 + n),
        ]
        for v, row in curves.items():
            sh = row["pool_top_share"]
            lines.append(
                f"| {DESCRIPTIONS.get(v, v)} | "
                + " | ".join(f"{x:.2f}" for x in row["pool_mean_level"])
                + f" | {row['pool_level_rises']} of {row['n']} | {pct(sh['L4_first'])} → {pct(sh['L4_last'])} % | "
                f"{pct(sh['L5+_first'])} → {pct(sh['L5+_last'])} % |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), choices=list(VARIANTS))
    p.add_argument("--out", default="ablations", help="folder for the workspaces, logs and results")
    p.add_argument("--jobs", type=int, default=1, help="runs at once (each gets cores/jobs threads)")
    p.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--update-docs",
        "--update-readme",
        action="store_true",
        help="rewrite the figures README.md and docs/ read from results/ (the table of docs/ablations.md among them)",
    )
    p.add_argument(
        "--no-results-copy", action="store_true", help="do not copy the result into the repository's results/"
    )
    a = p.parse_args()
    if a.update_docs and a.no_results_copy:
        p.error("--update-docs reads results/: it cannot go with --no-results-copy")
    from prosetting.core.config import ConfigError, parse_set_args

    try:
        parse_set_args(a.extra)  # a bad pair stops here, not once per run
    except ConfigError as exc:
        p.error(str(exc))
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    variants = ["full"] + [v for v in a.variants if v != "full"]
    threads = max(1, (os.cpu_count() or 1) // a.jobs) if a.jobs > 1 else 0

    def one(job):
        v, s = job
        r = run_control(s, out, threads) if v == "sft_control" else run_loop(v, s, out, a.extra, threads)
        wall = "" if r["wall_s"] is None else f", {r['wall_s']:.0f} s"
        print(
            f"{v:>17} seed {s:>3}: warm start {100 * r['warm_start']:5.1f}% -> {100 * r['final']:5.1f}%  "
            f"({r['train_steps']} steps{wall}; pool mean level {r['pool_mean_level']})",
            flush=True,
        )
        return r

    with ThreadPoolExecutor(max_workers=a.jobs) as pool:  # every seed's full loop first: the others copy its warm start
        runs = list(pool.map(one, [("full", s) for s in a.seeds]))
        runs += list(pool.map(one, [(v, s) for v in variants[1:] for s in a.seeds]))
    summary = summarize(runs, variants, a.seeds)
    summary["runs"] = runs
    summary["extra"] = a.extra
    summary["threads_per_run"] = threads or None
    table = markdown(summary)
    (out / "ablations.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "ablations.md").write_text(table)
    if not a.no_results_copy:
        (REPO / "results").mkdir(exist_ok=True)
        shutil.copy(out / "ablations.json", REPO / "results" / "ablations.json")
        shutil.copy(out / "ablations.md", REPO / "results" / "ablations.md")
    if a.update_docs:
        update_pages()
    print("\n" + table)


if __name__ == "__main__":
    main()
