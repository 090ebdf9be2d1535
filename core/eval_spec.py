"""EVAL_SETS: the named evaluation sets of a run, written as one line (parsed here; loaded by processors/eval_sets.py).

    EVAL_SETS=gsm8k=hub:openai/gsm8k:main:test, math500=hub:HuggingFaceH4/MATH-500, aime24=data/aime24.jsonl

Each entry is `NAME=SOURCE[?OPTION=VALUE&...]`, entries separated by commas. SOURCE is
- a file: JSON Lines, a JSON list, parquet or CSV (`data/gsm8k_test.jsonl`);
- a local dataset folder: written by `Dataset.save_to_disk`, or a folder of data files `datasets` reads
  (`/data/math500` with `test-00000-of-00001.parquet`, ...);
- a Hugging Face dataset: `hub:ID[:CONFIG[:SPLIT]]` (`hub:openai/gsm8k:main:test`; `hub:HuggingFaceH4/MATH-500`
  takes the default config and the `test` split; `hub:ID::train` skips the config).
Options: `split` (which split of a folder or Hub dataset; default `test`, or the only one), `revision` (of a Hub
dataset), `limit` (the first N questions, for a quick look), and column names where a dataset does not use the
usual ones: `question` (default `question`, then `problem`), `answer`, `solution`, `level`.
Every row is read by the one reader of GSM8K and MATH rows (core/questions.read_reference).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

OPTIONS = ("split", "revision", "limit", "question", "answer", "solution", "level")
RESERVED = ("average", "start", "heldout")
_NAME = re.compile(r"^[A-Za-z0-9][\w.-]{0,39}$")


class EvalSpecError(ValueError):
    """An EVAL_SETS entry that cannot be read; the message names the entry and what was expected."""


@dataclass(frozen=True)
class EvalSetSpec:
    name: str
    text: str  # the entry as written after `NAME=`: the set's identity in the workspace and in results
    kind: str  # file | folder | hub
    path: str = ""  # file or folder
    dataset_id: str = ""  # hub
    config: str | None = None
    split: str | None = None
    revision: str | None = None
    limit: int = 0
    columns: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        if self.kind == "hub":
            return (
                f"Hub dataset {self.dataset_id}"
                + (f", config {self.config}" if self.config else "")
                + f", split {self.split or 'test'}"
                + (f" @ {self.revision}" if self.revision else "")
            )
        return f"{self.kind} {self.path}" + (f", split {self.split}" if self.split else "")


def parse_entry(entry: str, check_paths: bool = True) -> EvalSetSpec:
    name, sep, text = entry.partition("=")
    name, text = name.strip(), text.strip()
    if not sep or not text:
        raise EvalSpecError(f"{entry.strip()!r}: expected NAME=SOURCE, e.g. gsm8k=hub:openai/gsm8k:main:test")
    if not _NAME.match(name):
        raise EvalSpecError(
            f"{name!r}: a set name is letters, digits, '_', '-', '.' (at most 40), starting with a letter or digit"
        )
    if name.lower() in RESERVED:
        raise EvalSpecError(f"{name!r}: the name is reserved ({', '.join(RESERVED)}: the held-out set is HELDOUT_FILE)")
    source, _, query = text.partition("?")
    options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=False)) if query else {}
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise EvalSpecError(f"{name}: unknown option(s) {', '.join(unknown)}; expected {', '.join(OPTIONS)}")
    try:
        limit = int(options.get("limit") or 0)
    except ValueError:
        raise EvalSpecError(f"{name}: limit={options['limit']!r}: expected a whole number") from None
    columns = {k: options[k] for k in ("question", "answer", "solution", "level") if options.get(k)}
    common = {
        "name": name,
        "text": text,
        "limit": limit,
        "columns": columns,
        "revision": options.get("revision") or None,
    }
    if source.startswith("hub:"):
        parts = source[4:].split(":")
        if len(parts) > 3 or not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", parts[0]):
            raise EvalSpecError(
                f"{name}: {source!r}: expected hub:ID[:CONFIG[:SPLIT]], e.g. hub:openai/gsm8k:main:test"
            )
        config = parts[1] if len(parts) > 1 and parts[1] else None
        split = options.get("split") or (parts[2] if len(parts) > 2 and parts[2] else None)
        return EvalSetSpec(kind="hub", dataset_id=parts[0], config=config, split=split, **common)
    path = Path(source).expanduser()
    if check_paths and not path.exists():
        raise EvalSpecError(f"{name}: {source!r}: no such file or folder (a Hugging Face dataset is written hub:ID)")
    return EvalSetSpec(
        kind="folder" if path.is_dir() else "file", path=str(path), split=options.get("split") or None, **common
    )


def parse_eval_sets(text: str, check_paths: bool = True) -> list[EvalSetSpec]:
    """Every set of an EVAL_SETS value, in order; raises EvalSpecError naming the bad entry."""
    specs = [parse_entry(e, check_paths) for e in text.split(",") if e.strip()]
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise EvalSpecError(f"set name(s) used twice: {', '.join(duplicates)}")
    return specs
