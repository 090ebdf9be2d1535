"""What the user reads: the table after each round, auto_training_summary.json, a report and a plot."""

from __future__ import annotations

import logging
import time

from prosetting.core.config import Config
from prosetting.core.io import atomic_write_json, atomic_write_text, read_json
from prosetting.core.records import RoundRow, read_pool, was_trained
from prosetting.core.state_manager import StateManager
from prosetting.processors.progress import read_round
from prosetting.utils import eval_report
from prosetting.utils.pool_report import pool_composition, pool_line, pool_markdown
from prosetting.utils.writer_report import short, writer_figures

log = logging.getLogger(__name__)


def round_row(sm: StateManager, r: int, evaluations: dict) -> RoundRow:
    progress = read_round(sm, r)
    collect, grade, export, train, enhance = (
        progress.stats(s) for s in ("collect", "grade", "export", "train", "enhance")
    )
    questions = read_pool(sm.paths, r)
    ev = evaluations.get(f"round_{r}")
    comp = pool_composition(sm.paths, r)  # per level, zone and writing policy (utils/pool_report.py)
    trained = was_trained(sm.paths, r)
    return {
        "round": r,
        "done": progress.done,
        "trained": trained,
        "heldout_accuracy": ev["greedy"] if ev else None,
        "heldout_mean_at_k": ev["mean_at_k"] if ev else None,
        "pool": {
            "questions": len(questions),
            "num_attempts": collect.get("num_attempts"),
            "solver_accuracy": grade.get("accuracy"),
            "zones": grade.get("zones"),
            "levels": comp["levels"],
            "mean_level": comp["mean_level"],
            "composition": comp,
        },
        "pairs": export.get("pairs"),
        "train": {k: train.get(k) for k in ("steps", "loss_first", "loss_last", "reward_accuracy_last", "wall_s")}
        if trained
        else None,
        "next_pool": enhance.get("next_pool"),
        "new_questions": enhance.get("written"),
        "writers": writer_figures(sm.paths, r),  # written / rejected / mean utility of accepted, per writer
        "stage_seconds": progress.seconds(),
        "teacher": teacher_row(grade, enhance),
    }


def teacher_row(grade: dict, enhance: dict) -> dict | None:
    """The LLM Teacher's round: calls, cache hits, tokens and cost of grading and writing together, and how
    the verdicts were reached; None for teachers that make no calls."""
    usages = [st.get("teacher_usage") for st in (grade, enhance) if st.get("teacher_usage")]
    if not usages:
        return None
    row: dict = {}
    for usage in usages:
        for k, v in usage.items():
            if k != "agreement":
                row[k] = round(row.get(k, 0) + v, 6)
    if row.get("both_judged"):
        row["agreement"] = round(row.get("agreed", 0) / row["both_judged"], 4)
    row["ungraded"] = grade.get("ungraded", 0)
    row["dropped_flawed"] = enhance.get("dropped_flawed", 0)
    return row


def _teacher_line(t: dict) -> str:
    cost = f", cost {t['cost']:.4f}" if "cost" in t else ""
    agreement = f", rule/LLM agreement {100 * t['agreement']:.0f}%" if "agreement" in t else ""
    return (
        f"{'':>5} teacher: {t.get('calls', 0)} calls, {t.get('cache_hits', 0)} cache hits, "
        f"{t.get('prompt_tokens', 0)}+{t.get('completion_tokens', 0)} tokens{cost}; verdicts "
        f"{t.get('rule_verdicts', 0)} "
        f"by rule, {t.get('llm_verdicts', 0)} by LLM{agreement}; {t.get('unusable_replies', 0)} unusable replies, "
        f"{t.get('reasks', 0)} re-asks, {t.get('ungraded', 0)} ungraded, {t.get('dropped_flawed', 0)} flawed dropped"
    )


def _fmt(x, pct=False) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.1f}%" if pct else str(x)


def trained_rounds(sm: StateManager, upto: int) -> list[tuple[int, bool]]:
    """(round, trained) for the rounds up to `upto` that have started."""
    return [(r, was_trained(sm.paths, r)) for r in range(1, upto + 1) if sm.paths.progress(r).exists()]


def print_round_table(cfg: Config, sm: StateManager, upto: int) -> str:
    evaluations = read_json(sm.paths.evaluations) or {}
    base = evaluations.get("baseline")
    head = (
        f"{'round':>5} {'questions':>9} {'attempts':>8} {'pool acc':>8} {'pairs':>6} {'trained':>7} {'held-out':>8} "
        f"{'next pool':>9}  writers (written/rejected U=mean utility)"
    )
    lines = [head, "-" * len(head)]
    if base:
        lines.append(f"{'start':>5} {'':>9} {'':>8} {'':>8} {'':>6} {'':>7} {_fmt(base['greedy'], True):>8} {'':>9}")
    for r in range(1, upto + 1):
        row = round_row(sm, r, evaluations)
        lines.append(
            f"{r:>5} {row['pool']['questions']:>9} {_fmt(row['pool']['num_attempts']):>8} "
            f"{_fmt(row['pool']['solver_accuracy'], True):>8} {_fmt(row['pairs']):>6} "
            f"{'yes' if row['trained'] else 'no':>7} {_fmt(row['heldout_accuracy'], True):>8} "
            f"{_fmt(row['next_pool']):>9}  {short(row['writers'])}"
        )
        lines.append(pool_line(row["pool"]["composition"]))
        if row.get("teacher"):
            lines.append(_teacher_line(row["teacher"]))
    sets = eval_report.render_text(eval_report.eval_table(evaluations, trained_rounds(sm, upto), cfg.EVAL_K))
    table = "\n".join(lines) + ("\n\n" + sets if sets else "")
    print("\n" + table + "\n", flush=True)
    return table


def write_summary(cfg: Config, sm: StateManager, status: str, started: float) -> dict:
    state = sm.load_state()
    evaluations = read_json(sm.paths.evaluations) or {}
    rounds = [round_row(sm, r, evaluations) for r in range(1, cfg.TOTAL_ROUNDS + 1) if sm.paths.progress(r).exists()]
    # An untrained round's solver is the previous one: carry its held-out accuracy forward for the curve.
    last = evaluations.get("baseline")
    for row in rounds:
        ev = evaluations.get(f"round_{row['round']}")
        last = ev or last
        if row["heldout_accuracy"] is None and last:
            row["heldout_accuracy"], row["heldout_mean_at_k"] = last["greedy"], last["mean_at_k"]
    base = evaluations.get("baseline")
    summary = {
        "status": status,
        "workspace": str(sm.paths.root),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "duration_s": round(time.time() - started, 1),
        "total_rounds": cfg.TOTAL_ROUNDS,
        "rounds_done": sorted(state["completed_rounds"]),
        "rounds_failed": sorted(state["failed_rounds"]),
        "baseline_heldout_accuracy": base["greedy"] if base else None,
        "baseline_heldout_mean_at_k": base["mean_at_k"] if base else None,
        "final_heldout_accuracy": rounds[-1]["heldout_accuracy"] if rounds else None,
        "heldout_k": cfg.EVAL_K,
        "eval_k": cfg.EVAL_K,
        "eval_primary": (base or {}).get("primary", "heldout"),  # whose figures the heldout_* keys hold
        "eval_table": eval_report.eval_table(
            evaluations, [(row["round"], row["trained"]) for row in rounds], cfg.EVAL_K
        ),
        "rounds": rounds,
        **teacher_totals(rounds),
        "errors": state["failures"],
        "next_step": None if status == "completed" else "run the same command again to continue from the saved state",
    }
    atomic_write_json(sm.paths.summary, summary)
    try:
        atomic_write_text(sm.paths.report, render_markdown(summary, evaluations))
        plot(summary, sm.paths.plot)
    except Exception as exc:  # a report must never hide the run's own outcome
        log.warning("could not write the report or plot: %s", exc)
    return summary


def teacher_totals(rounds: list[dict]) -> dict:
    """Whole-run Teacher calls, cache hits, tokens and cost (when priced), for the summary."""
    rows = [row["teacher"] for row in rounds if row.get("teacher")]
    if not rows:
        return {}
    total = lambda k: sum(t.get(k, 0) for t in rows)  # noqa: E731
    out = {
        "teacher_calls": total("calls"),
        "teacher_cache_hits": total("cache_hits"),
        "teacher_prompt_tokens": total("prompt_tokens"),
        "teacher_completion_tokens": total("completion_tokens"),
    }
    if any("cost" in t for t in rows):
        out["teacher_cost"] = round(total("cost"), 6)
    return out


def render_markdown(summary: dict, evaluations: dict) -> str:
    lines = [
        f"# ProSetting run: {summary['status']}",
        "",
        f"Workspace `{summary['workspace']}`, {summary['duration_s']:.0f} s, rounds done {summary['rounds_done']}, "
        f"failed {summary['rounds_failed']}.",
        "",
    ]
    if summary["baseline_heldout_accuracy"] is not None:
        primary = summary.get("eval_primary", "heldout")
        lines += [
            f"{'Held-out' if primary == 'heldout' else primary} greedy accuracy: "
            f"{_fmt(summary['baseline_heldout_accuracy'], True)} at the start, "
            f"{_fmt(summary['final_heldout_accuracy'], True)} after the last round "
            f"(Mean@{summary['heldout_k']}: {_fmt(summary['baseline_heldout_mean_at_k'], True)} -> "
            f"{_fmt(summary['rounds'][-1]['heldout_mean_at_k'] if summary['rounds'] else None, True)}).",
            "",
        ]
    lines += [
        "| round | questions | mean level | pool accuracy | zones (0 / partial / 1) | pairs | trained | held-out "
        "greedy | held-out Mean@k |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary["rounds"]:
        z = row["pool"]["zones"] or {}
        lines.append(
            f"| {row['round']} | {row['pool']['questions']} | {_fmt(row['pool']['mean_level'])} | "
            f"{_fmt(row['pool']['solver_accuracy'], True)} | {z.get('too_difficult', '-')} / {z.get('learning', '-')} "
            "/ "
            f"{z.get('mastered', '-')} | {_fmt(row['pairs'])} | {'yes' if row['trained'] else 'no'} | "
            f"{_fmt(row['heldout_accuracy'], True)} | {_fmt(row['heldout_mean_at_k'], True)} |"
        )
    teacher = [(row["round"], row["teacher"]) for row in summary["rounds"] if row.get("teacher")]
    if teacher:
        lines += (
            ["", "LLM Teacher per round:", "", "```"]
            + [f"round {r}: {_teacher_line(t).strip()}" for r, t in teacher]
            + ["```"]
        )
    table = eval_report.render_markdown(summary.get("eval_table"))
    if table:
        lines += ["", *table]
    lines += eval_report.levels_markdown(evaluations)  # the evaluator's `by_level`, per set
    lines += pool_markdown(summary["rounds"])
    writers = [
        (row["round"], name, f) for row in summary["rounds"] for name, f in sorted(row.get("writers", {}).items())
    ]
    if writers:
        lines += [
            "",
            "Question writers (mean utility of accepted questions, graded by the next round):",
            "",
            "| round | writer | written | rejected | acceptance | graded | mean utility |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r} | {name} | {f['written']} | {f['rejected']} | {_fmt(f['acceptance_rate'], True)} | {f['graded']} | "
            f"{_fmt(f['mean_utility'])} |"
            for r, name, f in writers
        ]
    if summary["errors"]:
        lines += ["", "## Errors", ""] + [
            f"- round {e['round']} {e['stage']}: {e['error']} (log: {e['log']})" for e in summary["errors"]
        ]
    return "\n".join(lines) + "\n"


def plot(summary: dict, path) -> None:
    rounds = summary["rounds"]
    if not rounds:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [0] + [row["round"] for row in rounds]
    greedy = [summary["baseline_heldout_accuracy"]] + [row["heldout_accuracy"] for row in rounds]
    meank = [summary["baseline_heldout_mean_at_k"]] + [row["heldout_mean_at_k"] for row in rounds]
    table = summary.get("eval_table")
    several = bool(table) and len(table["sets"]) > 1
    fig, axes = plt.subplots(1, 2 if several else 1, figsize=(13 if several else 7, 4))
    ax = axes[0] if several else axes
    if several:
        eval_report.plot_sets(axes[1], table)
    if any(v is not None for v in greedy):
        name = summary.get("eval_primary", "heldout").replace("heldout", "held-out")
        ax.plot(xs, [v if v is not None else float("nan") for v in greedy], "o-", label=f"{name} greedy")
        ax.plot(
            xs,
            [v if v is not None else float("nan") for v in meank],
            "s--",
            label=f"{name} Mean@{summary['heldout_k']}",
        )
    ax.plot(
        [row["round"] for row in rounds],
        [row["pool"]["solver_accuracy"] or float("nan") for row in rounds],
        "^:",
        label="pool accuracy (sampled)",
    )
    ax.set_xlabel("round (0 = warm start)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    for row in rounds:
        if row["trained"]:
            ax.axvspan(row["round"] - 0.5, row["round"] + 0.5, color="tab:green", alpha=0.07)
    ax2 = ax.twinx()
    levels = [row["pool"]["mean_level"] for row in rounds]
    if any(v is not None for v in levels):
        ax2.plot(
            [row["round"] for row in rounds],
            [v if v is not None else float("nan") for v in levels],
            "d-",
            color="tab:red",
            alpha=0.6,
            label="pool mean difficulty level",
        )
        ax2.set_ylabel("mean difficulty level")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="lower right", fontsize=8)
    ax.set_title("ProSetting: held-out accuracy and pool difficulty (shaded: trained rounds)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
