"""Evaluating a solver on every evaluation set of the run: the held-out set and the named EVAL_SETS.

    sets = eval_sets(cfg, paths)                         # what every evaluation measures, in order
    record = evaluate_model(ctx, "round_3", model_dir, sets)

The round loop calls it at the start ("baseline"), and the round's last stage, `evaluate` (run_evaluation), after
every trained round ("round_R"). One set of engines (the collection backend's) serves every set; each set's result
is saved in results/evaluations.json as soon as it is measured, so a stop costs at most the set in flight and a
resume measures only what is missing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from prosetting.collectors.engine_pool import solver_pool
from prosetting.core.config import Config, ConfigError
from prosetting.core.context import RunContext
from prosetting.core.eval_spec import EvalSpecError, parse_eval_sets
from prosetting.core.io import atomic_write_json, read_json, read_jsonl, write_jsonl
from prosetting.core.records import EvaluateStats, was_trained
from prosetting.core.state_manager import SHIPPED_HELDOUT, Paths
from prosetting.processors.eval_sets import load_eval_set
from prosetting.processors.evaluator import evaluate

log = logging.getLogger(__name__)


def check_evaluation_settings(cfg: Config) -> None:
    """The checks of "Evaluation" (Stage.checks of `evaluate`): every EVAL_SETS entry parses and its local files
    exist; raises ConfigError naming the key."""
    try:
        parse_eval_sets(cfg.EVAL_SETS)
    except EvalSpecError as exc:
        raise ConfigError(f"EVAL_SETS: {exc}") from None


def heldout_file(cfg: Config) -> Path | None:
    """HELDOUT_FILE, or the embedded default's shipped held-out set; None when the run has none."""
    if cfg.HELDOUT_FILE:
        return Path(cfg.HELDOUT_FILE)
    return SHIPPED_HELDOUT if cfg.embedded else None


@dataclass(frozen=True)
class EvalSet:
    name: str
    source: str  # the held-out file, or the EVAL_SETS entry it was read from
    file: Path  # its questions in the workspace


def eval_sets(cfg: Config, paths: Paths) -> list[EvalSet]:
    """The held-out set (HELDOUT_FILE, or the embedded one) first, named `heldout`, then the EVAL_SETS sets."""
    heldout = heldout_file(cfg)
    sets = [EvalSet("heldout", str(heldout), paths.heldout)] if heldout else []
    return sets + [
        EvalSet(s.name, s.text, paths.eval_set(s.name)) for s in parse_eval_sets(cfg.EVAL_SETS, check_paths=False)
    ]


def prepare_eval_sets(cfg: Config, paths: Paths) -> None:
    """Read each EVAL_SETS set once into data/eval/NAME.jsonl; the run and its resumes use that copy, offline too."""
    sources = read_json(paths.eval_sources) or {}
    for spec in parse_eval_sets(cfg.EVAL_SETS):
        path = paths.eval_set(spec.name)
        if path.exists() and sources.get(spec.name) == spec.text:
            continue
        write_jsonl(path, load_eval_set(spec))
        sources[spec.name] = spec.text
        atomic_write_json(paths.eval_sources, sources)


def eval_record(model_dir: Path, sets: dict[str, dict], order: list[str], seconds: float) -> dict:
    """One evaluation of a model: the first set's figures at the top (what the summary's heldout_* keys read), every
    set under `sets`, their mean under `average`."""
    names = [n for n in order if n in sets]
    first = sets[names[0]]
    average = {k: sum(sets[n][k] for n in names) / len(names) for k in ("greedy", "mean_at_k")}
    return {
        **{k: v for k, v in first.items() if k != "source"},
        "model": str(model_dir),
        "seconds": seconds,
        "primary": names[0],
        "sets": {n: sets[n] for n in names},
        "average": average,
    }


def evaluate_model(ctx: RunContext, label: str, model_dir: Path, sets: list[EvalSet]) -> dict | None:
    """Greedy and Mean@EVAL_K of a model on every set, cached under `label`; None when nothing is evaluated."""
    cfg, paths = ctx.cfg, ctx.paths
    sets = [s for s in sets if s.file.exists()]
    if not cfg.EVAL_K or not sets:
        return None
    cache = read_json(paths.evaluations) or {}
    record = cache.get(label) or {}
    # a record from before named sets holds the held-out set's figures at its top level
    done = dict(record.get("sets") or ({"heldout": record} if "greedy" in record else {}))
    if record.get("model") != str(model_dir):
        done = {}
    todo = [s for s in sets if s.name not in done or done[s.name].get("source", s.source) != s.source]
    if not todo:
        return record
    t0 = time.time() - record.get("seconds", 0.0) if done else time.time()
    # the engines stay open for round r+1's collection of the same model where the round loop shares them
    with solver_pool(ctx, model_dir, f"eval_{label}") as pool:
        for s in todo:
            result = evaluate(
                pool,
                read_jsonl(s.file),
                k=cfg.EVAL_K,
                temperature=cfg.EVAL_TEMPERATURE,
                seed=cfg.SEED,
                max_new_tokens=cfg.MAX_NEW_TOKENS,
                system_prompt=cfg.SOLVER_SYSTEM_PROMPT,
                answer_extraction=cfg.ANSWER_EXTRACTION,
            )
            done[s.name] = {**result, "source": s.source}
            record = eval_record(model_dir, done, [x.name for x in sets], round(time.time() - t0, 1))
            cache[label] = record
            atomic_write_json(paths.evaluations, cache)
            log.info(
                "%s %s: greedy %.3f, mean@%d %.3f (%d questions, %.1fs)",
                s.name,
                label,
                result["greedy"],
                cfg.EVAL_K,
                result["mean_at_k"],
                result["n"],
                result["seconds"],
            )
    return record


def run_evaluation(ctx: RunContext, r: int) -> EvaluateStats:
    """The round's last stage: round r's merged solver on every evaluation set, cached as "round_R" in
    results/evaluations.json. A round that did not train has nothing new to measure: its figures are the previous
    model's, carried in the reports."""
    if not was_trained(ctx.paths, r):
        return {"evaluated": False, "reason": "the solver was not trained this round"}
    record = evaluate_model(ctx, f"round_{r}", ctx.paths.merged_solver(r), eval_sets(ctx.cfg, ctx.paths))
    if record is None:
        return {"evaluated": False, "reason": "no evaluation set (or EVAL_K=0)"}
    return {
        "evaluated": True,
        "primary": record["primary"],
        "greedy": record["greedy"],
        "mean_at_k": record["mean_at_k"],
        "sets": {name: {k: s[k] for k in ("greedy", "mean_at_k", "n")} for name, s in record["sets"].items()},
    }


def forget_evaluation(paths: Paths, r: int) -> None:
    """A redo of round r's evaluation: its entry leaves results/evaluations.json (the other labels stay)."""
    cache = read_json(paths.evaluations)
    if cache and cache.pop(f"round_{r}", None) is not None:
        atomic_write_json(paths.evaluations, cache)
