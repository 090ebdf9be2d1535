"""The evaluation sets as the paper's Table 1: rows start and each round, columns each set and their average.

Read from results/evaluations.json (managers/round_controller.evaluate): `baseline` is the start, `round_R`
the solver trained in round R. A round that did not train keeps the previous solver, so its row repeats the
previous figures, marked as carried.
"""

from __future__ import annotations

from prosetting.processors.evaluator import level_key


def set_names(evaluations: dict) -> list[str]:
    """Every set measured, in the order the run lists them (the held-out set first)."""
    names: list[str] = []
    for record in evaluations.values():
        for name in record.get("sets") or (["heldout"] if "greedy" in record else []):
            if name not in names:
                names.append(name)
    return names


def _cells(record: dict) -> dict[str, dict]:
    sets = record.get("sets") or ({"heldout": record} if "greedy" in record else {})
    return {name: {"greedy": r["greedy"], "mean_at_k": r["mean_at_k"], "n": r["n"]} for name, r in sets.items()}


def eval_table(evaluations: dict, rounds: list[tuple[int, bool]], k: int) -> dict | None:
    """{"sets", "k", "rows"} for the start and each (round, trained) pair; None when nothing was evaluated."""
    names = set_names(evaluations)
    base = evaluations.get("baseline")
    if not names or not base:
        return None
    rows, last = [], base
    for label, r in [("start", 0), *[(str(r), r) for r, _ in rounds]]:
        record = base if r == 0 else evaluations.get(f"round_{r}")
        carried = record is None
        record = record or last
        last = record
        cells = _cells(record)
        row = {"label": label, "round": r, "carried": carried, "sets": cells}
        if len(names) > 1 and all(n in cells for n in names):
            row["average"] = {m: sum(cells[n][m] for n in names) / len(names) for m in ("greedy", "mean_at_k")}
        rows.append(row)
    return {"sets": names, "k": k, "rows": rows}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _cell(cell: dict | None) -> str:
    return "-" if not cell else f"{_pct(cell['greedy'])} / {_pct(cell['mean_at_k'])}"


def render_text(table: dict | None) -> str:
    """The table for the terminal, after the round table."""
    if not table:
        return ""
    columns = table["sets"] + (["average"] if len(table["sets"]) > 1 else [])
    width = max(13, *(len(c) for c in columns))
    lines = [
        f"evaluation sets, greedy / Mean@{table['k']} (%); * = solver not retrained, figures carried",
        f"{'round':>6} " + " ".join(f"{c:>{width}}" for c in columns),
    ]
    for row in table["rows"]:
        cells = [_cell(row["sets"].get(n)) for n in table["sets"]]
        if len(table["sets"]) > 1:
            cells.append(_cell(row.get("average")))
        lines.append(f"{row['label'] + ('*' if row['carried'] else ''):>6} " + " ".join(f"{c:>{width}}" for c in cells))
    return "\n".join(lines)


def render_markdown(table: dict | None) -> list[str]:
    """Table 1 for results/report.md: greedy / Mean@k per set and the average."""
    if not table:
        return []
    names = table["sets"]
    columns = names + (["average"] if len(names) > 1 else [])
    n = {name: next((row["sets"][name]["n"] for row in table["rows"] if name in row["sets"]), None) for name in names}
    lines = [
        f"Evaluation sets, greedy / Mean@{table['k']} accuracy in % (questions per set in the header; "
        "rows marked * kept the previous solver):",
        "",
        "| round | " + " | ".join(f"{c} ({n[c]})" if c in n else c for c in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for row in table["rows"]:
        cells = [_cell(row["sets"].get(c)) for c in names] + ([_cell(row.get("average"))] if len(names) > 1 else [])
        lines.append(f"| {row['label']}{'*' if row['carried'] else ''} | " + " | ".join(cells) + " |")
    return lines


def levels_markdown(evaluations: dict) -> list[str]:
    """Greedy accuracy per difficulty level (the evaluator's `by_level`), one table per set that has levels."""
    lines: list[str] = []
    for name in set_names(evaluations):
        per_label = {}
        for label, record in evaluations.items():
            result = (record.get("sets") or {"heldout": record}).get(name) or {}
            levels = {lv: v for lv, v in (result.get("by_level") or {}).items() if lv != "all"}
            if levels:
                per_label[label] = levels
        if not per_label:
            continue
        levels = sorted({lv for d in per_label.values() for lv in d}, key=level_key)
        lines += [
            "",
            f"{name}: greedy accuracy per difficulty level (%):",
            "",
            "| model | " + " | ".join(f"level {lv}" for lv in levels) + " |",
            "|---" * (len(levels) + 1) + "|",
        ]
        for label, d in per_label.items():
            lines.append(f"| {label} | " + " | ".join(_pct((d.get(lv) or {}).get("greedy")) for lv in levels) + " |")
    return lines


def plot_sets(ax, table: dict) -> None:
    """Mean@k per set and their average against the round, on a matplotlib axis."""
    xs = [row["round"] for row in table["rows"]]
    for name in table["sets"]:
        ax.plot(
            xs,
            [row["sets"][name]["mean_at_k"] if name in row["sets"] else float("nan") for row in table["rows"]],
            "o-",
            label=name,
            alpha=0.8,
        )
    if len(table["sets"]) > 1:
        ax.plot(
            xs,
            [row["average"]["mean_at_k"] if "average" in row else float("nan") for row in table["rows"]],
            "k-",
            linewidth=2.5,
            label="average",
        )
    ax.set_xlabel("round (0 = start)")
    ax.set_ylabel(f"Mean@{table['k']}")
    ax.set_ylim(0, 1)
    ax.set_title("evaluation sets")
    ax.legend(fontsize=7, loc="lower right")
