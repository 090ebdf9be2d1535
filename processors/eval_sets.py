"""Loading the evaluation sets of EVAL_SETS (core/eval_spec.py) as question records.

    questions = load_eval_set(parse_entry("math500=hub:HuggingFaceH4/MATH-500"))

A file (JSON Lines, JSON list, parquet, CSV), a local dataset folder (`save_to_disk`, or data files that
`datasets.load_dataset(folder)` reads) or a Hub dataset through `datasets.load_dataset` and its cache
(offline with HF_HUB_OFFLINE=1 once it has been loaded). Every row goes through the one reader of GSM8K and
MATH rows, `read_reference`; a row without a question or a reference raises, naming the set and the row.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from prosetting.core.eval_spec import EvalSetSpec
from prosetting.core.questions import QuestionFileError, read_records, read_reference

log = logging.getLogger(__name__)

QUESTION_COLUMNS = ("question", "problem", "prompt")


class EvalSetError(ValueError):
    """An evaluation set that cannot be read; the message names the set, where it comes from and the fix."""


def to_questions(
    rows: Iterable[tuple[str, dict]], where: str, name: str, columns: dict[str, str] | None = None, limit: int = 0
) -> list[dict]:
    """Question records ({id, question, answer, meta}) from (position, row) pairs, each reference read by
    read_reference; the position ("line 7", "row 7") names a bad row in the error."""
    columns = columns or {}
    questions = []
    for index, (position, row) in enumerate(rows, 1):
        at = f"{where}: {position}"
        if not isinstance(row, dict):
            raise EvalSetError(
                f"{at}: expected a JSON object with a question and a reference, got {type(row).__name__}"
            )
        qcol = columns.get("question") or next((c for c in QUESTION_COLUMNS if row.get(c)), None)
        text = row.get(qcol) if qcol else None
        if not isinstance(text, str) or not text.strip():
            raise EvalSetError(
                f"{at}: no `question` or `problem` text (columns {', '.join(row)}); name the column "
                "with ?question=COLUMN"
            )
        reference = {
            "answer": _flat(row.get(columns.get("answer", "answer"))),
            "solution": _flat(row.get(columns.get("solution", "solution"))),
        }
        answer = read_reference(reference)[0]
        if answer is None:
            raise EvalSetError(
                f"{at}: no reference answer: expected `answer` (GSM8K `#### value` allowed) or a "
                f"`solution` with \\boxed{{...}} (columns {', '.join(row)}); name the column with ?answer=COLUMN"
            )
        meta = dict(row.get("meta") or {}) if isinstance(row.get("meta"), dict) else {}
        level = row.get(columns.get("level", "level"))
        if "level" not in meta and level is not None and str(level).strip():
            meta["level"] = level
        qid = row.get("id", row.get("unique_id", row.get("idx")))
        questions.append(
            {
                "id": str(qid) if qid is not None else f"{name}-{index:05d}",
                "question": text.strip(),
                "answer": answer,
                "meta": meta,
            }
        )
        if limit and len(questions) >= limit:
            break
    if not questions:
        raise EvalSetError(f"{where}: no questions")
    return questions


def _flat(value):
    """OlympiadBench-style answers come as a list of strings: one answer is the string itself."""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) if value else None
    return value


def load_eval_set(spec: EvalSetSpec) -> list[dict]:
    """The set's questions; raises EvalSetError with the set's name, source and what to do."""
    where = f"EVAL_SETS {spec.name} ({spec.describe()})"
    try:
        rows = _rows(spec)
    except EvalSetError:
        raise
    except Exception as exc:
        raise EvalSetError(f"{where}: cannot be read: {type(exc).__name__}: {exc}{_advice(spec, exc)}") from exc
    questions = to_questions(rows, where, spec.name, spec.columns, spec.limit)
    log.info("evaluation set %s: %d questions from %s", spec.name, len(questions), spec.describe())
    return questions


def _rows(spec: EvalSetSpec) -> Iterable[tuple[str, dict]]:
    """(position, row) pairs of the set's source."""
    if spec.kind == "file" and Path(spec.path).suffix in (".json", ".jsonl"):
        try:
            return [(f"line {lineno}", row) for lineno, row in read_records(Path(spec.path))]
        except QuestionFileError as exc:
            raise EvalSetError(f"EVAL_SETS {spec.name}: {exc}") from None
    return ((f"row {i}", row) for i, row in enumerate(_dataset(spec), 1))


def _dataset(spec: EvalSetSpec):
    """A `datasets.Dataset` for parquet/CSV files, dataset folders and Hub ids."""
    if spec.kind == "file":
        path = Path(spec.path)
        builder = {".parquet": "parquet", ".csv": "csv", ".tsv": "csv"}.get(path.suffix)
        if builder is None:
            raise EvalSetError(f"EVAL_SETS {spec.name}: {path}: expected .jsonl, .json, .parquet or .csv")
        import datasets

        return datasets.load_dataset(
            builder, data_files=str(path), split="train", **({"delimiter": "\t"} if path.suffix == ".tsv" else {})
        )
    import datasets

    if spec.kind == "folder":
        folder = Path(spec.path)
        if (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file():
            return _pick_split(datasets.load_from_disk(str(folder)), spec)
        return _pick_split(datasets.load_dataset(str(folder), split=spec.split), spec)
    data = datasets.load_dataset(spec.dataset_id, spec.config, split=spec.split or None, revision=spec.revision)
    return _pick_split(data, spec)


def _pick_split(data, spec: EvalSetSpec):
    """A Dataset as it is; from a DatasetDict the asked split, else `test`, else its only split."""
    if not hasattr(data, "keys"):
        return data
    splits = list(data.keys())
    name = spec.split or ("test" if "test" in splits else splits[0] if len(splits) == 1 else None)
    if name not in splits:
        raise EvalSetError(
            f"EVAL_SETS {spec.name} ({spec.describe()}): no split {name!r}; it has {', '.join(splits)}: add ?split=NAME"
        )
    return data[name]


def _advice(spec: EvalSetSpec, exc: Exception) -> str:
    if spec.kind != "hub":
        return ""
    call = f"datasets.load_dataset({spec.dataset_id!r}, {spec.config!r}, split={spec.split or 'test'!r})"
    text = f"{type(exc).__name__}: {exc}"
    if "offline" in text.lower() or "couldn't reach" in text.lower() or isinstance(exc, ConnectionError):
        return (
            f". Load it once where the Hub is reachable, into the same HF_HOME / HF_DATASETS_CACHE: "
            f'python -c "import datasets; {call}"'
        )
    if "doesn't exist" in text or "not found" in text.lower():
        return f". Check the id at https://huggingface.co/datasets/{spec.dataset_id} (private or gated: hf auth login)"
    return ""


def hub_dataset_cached(spec: EvalSetSpec) -> Path | None:
    """The prepared copy of a Hub dataset in the datasets cache (what an offline load_dataset reads), or None."""
    import datasets.config
    from datasets.naming import camelcase_to_snakecase

    parts = spec.dataset_id.split("/")
    parts[-1] = camelcase_to_snakecase(parts[-1])
    root = Path(os.path.expanduser(str(datasets.config.HF_DATASETS_CACHE))) / "___".join(parts)
    found = sorted(glob.glob(str(root / (spec.config or "*") / "*" / "*" / "dataset_info.json")), key=os.path.getmtime)
    return Path(found[-1]).parent if found else None
