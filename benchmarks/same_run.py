"""Are two workspaces the same run? The check that a change which should not change behaviour did not.

    python scripts/run_training.py --workspace /tmp/before          # on the commit before the change
    python scripts/run_training.py --workspace /tmp/after           # on the change, same settings and seed
    python benchmarks/same_run.py /tmp/before /tmp/after --json same_run.json

Every file of the two workspaces is compared: JSON and JSON Lines after normalising what differs between any two
runs of the same work (the workspace's own path, wall-clock times and durations, process ids, host names, speeds),
parquet files and every other file byte for byte (the models' safetensors included). JSON Lines files compare as
sets of records: the Teacher stages append lines as their concurrent workers finish; Markdown reports line by line
with times and durations replaced. Logs, tracking event files, the lock, the plot (times in their text or
pixels) and TRL's pickled `training_args.bin` (paths inside) are left out and listed as such.
Prints one line per file that differs (the first differing JSON path and both values) and exits 1 when any does,
0 when the runs are the same.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

# Keys whose values are times, durations, speeds, process ids or host names: any two runs differ there.
VOLATILE_KEYS = frozenset(
    {
        "started",
        "finished",
        "updated",
        "time",
        "seconds",
        "duration_s",
        "elapsed_s",
        "wall_s",
        "pid",
        "host",
        "train_runtime",
        "train_samples_per_second",
        "train_steps_per_second",
        "eval_runtime",
        "eval_samples_per_second",
        "eval_steps_per_second",
        "tokens_per_s",
        "peak_rss_mib_per_process",
        "peak_gpu_mib_per_process",
        "peak_rss_mib",
        "engine_start_s",
        "generation_s",
        "load_s",
        "save_s",
        "merge_s",
        "verify_s",
        "launch_s",
    }
)
VOLATILE_SUFFIXES = ("_seconds", "_s", "_time", "_at")
# Files whose text or pixels hold wall-clock times throughout; listed, not compared.
SKIPPED = (
    re.compile(r"^logs/"),
    re.compile(r"^tracking/"),
    re.compile(r"^\.prosetting\.lock$"),
    re.compile(r"^results/progress\.png$"),
    re.compile(r"(^|/)events\.out\.tfevents\."),
    re.compile(r"^training_runs/.*/(launch_pids\.json|accelerate_config\.yaml)$"),
    re.compile(r"(^|/)training_args\.bin$"),  # TRL's pickled arguments: the output folder and run name inside
)
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?")
DURATION = re.compile(r"\b\d+(\.\d+)? ?(s|min)\b")


def volatile(key: str) -> bool:
    return key in VOLATILE_KEYS or key.endswith(VOLATILE_SUFFIXES)


def normalise(value, root: Path, drop: frozenset = frozenset()):
    """The value with its run-specific parts replaced by placeholders: the workspace's path and its folder name
    (run names derive from it), times and durations, and the launch's free port."""
    if isinstance(value, dict):
        return {k: "<volatile>" if volatile(k) else normalise(v, root, drop) for k, v in value.items() if k not in drop}
    if isinstance(value, list):
        out = [normalise(v, root, drop) for v in value]
        for i, v in enumerate(value[:-1]):
            if v == "--main_process_port":
                out[i + 1] = "<port>"
        return out
    if isinstance(value, str):
        text = value.replace(str(root), "<workspace>")
        text = re.sub(re.escape(root.name) + r"(?=-r\d)", "<workspace name>", text)  # a run name, "{name}-r{round}"
        return TIMESTAMP.sub("<timestamp>", text)
    return value


def first_difference(a, b, where: str = "") -> str | None:
    """The JSON path of the first place `a` and `b` differ, with both values; None when equal."""
    if type(a) is not type(b):
        return f"{where or '/'}: {a!r:.120} != {b!r:.120}"
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{where}/{k}: only in {'after' if k not in a else 'before'}"
            found = first_difference(a[k], b[k], f"{where}/{k}")
            if found:
                return found
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{where or '/'}: {len(a)} items != {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = first_difference(x, y, f"{where}[{i}]")
            if found:
                return found
        return None
    return None if a == b else f"{where or '/'}: {a!r:.120} != {b!r:.120}"


def load(path: Path, root: Path, drop: frozenset = frozenset()):
    """A JSON or JSON Lines file, normalised; a JSON Lines file as its records in a canonical order, since the
    Teacher stages append theirs as concurrent workers finish (the order of lines is not part of the result)."""
    text = path.read_text()
    if path.suffix == ".jsonl":
        rows = [normalise(json.loads(line), root, drop) for line in text.splitlines() if line.strip()]
        return sorted(rows, key=lambda row: json.dumps(row, sort_keys=True))
    return normalise(json.loads(text), root, drop)


def text_lines(path: Path, root: Path) -> list[str]:
    """A text report's lines with the workspace, times and durations replaced."""
    text = path.read_text().replace(str(root), "<workspace>")
    return [DURATION.sub("<duration>", TIMESTAMP.sub("<timestamp>", line)) for line in text.splitlines()]


def files_of(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def compare(before: Path, after: Path, drop: frozenset = frozenset()) -> dict:
    """{"same": [...], "different": {file: why}, "only_before": [...], "only_after": [...], "skipped": [...]}."""
    a, b = files_of(before), files_of(after)
    out: dict = {"same": [], "different": {}, "only_before": [], "only_after": [], "skipped": []}
    for name in sorted(set(a) | set(b)):
        if any(rx.search(name) for rx in SKIPPED):
            out["skipped"].append(name)
        elif name not in b:
            out["only_before"].append(name)
        elif name not in a:
            out["only_after"].append(name)
        elif name.endswith((".json", ".jsonl")):
            try:
                why = first_difference(load(a[name], before, drop), load(b[name], after, drop))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                why = f"not readable as JSON: {exc}"
            (out["different"].__setitem__(name, why) if why else out["same"].append(name))
        elif name.endswith(".md"):
            lines = [text_lines(p, root) for p, root in ((a[name], before), (b[name], after))]
            diff = next((i for i, (x, y) in enumerate(zip(*lines, strict=False)) if x != y), None)
            if diff is None and len(lines[0]) != len(lines[1]):
                diff = min(len(lines[0]), len(lines[1]))
            if diff is None:
                out["same"].append(name)
            else:
                out["different"][name] = f"line {diff + 1} differs"
        elif sha256(a[name]) == sha256(b[name]):
            out["same"].append(name)
        else:
            out["different"][name] = "bytes differ"
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("before", type=Path, help="the workspace of the run before the change")
    p.add_argument("after", type=Path, help="the workspace of the same run after it")
    p.add_argument("--json", type=Path, help="write the whole comparison here")
    p.add_argument(
        "--drop",
        action="append",
        default=[],
        metavar="KEY",
        help="leave JSON keys named KEY out on both sides (a change that adds a record on purpose: --drop evaluate)",
    )
    args = p.parse_args(argv)
    for root in (args.before, args.after):
        if not (root / "training_state.json").is_file():
            p.error(f"{root}: not a workspace (no training_state.json)")
    result = compare(args.before.resolve(), args.after.resolve(), frozenset(args.drop))
    for name, why in result["different"].items():
        print(f"differs   {name}: {why}")
    for side in ("only_before", "only_after"):
        for name in result[side]:
            print(f"{side.replace('_', ' ')}: {name}")
    print(
        f"{len(result['same'])} files the same, {len(result['different'])} different, "
        f"{len(result['only_before'])} only before, {len(result['only_after'])} only after, "
        f"{len(result['skipped'])} not compared (logs, tracking, lock, plot, training_args.bin)"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 1 if result["different"] or result["only_before"] or result["only_after"] else 0


if __name__ == "__main__":
    sys.exit(main())
