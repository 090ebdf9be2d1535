"""Evaluate a solver on benchmarks: greedy accuracy and Mean@k, per set and per level, printed and saved as JSON.

    python scripts/evaluate.py --model workspace/checkpoints/merged_solver_r5 --data data/heldout.jsonl --k 32
    python scripts/evaluate.py --model Qwen/Qwen3-8B --data hub:openai/gsm8k:main:test --k 8 --backend vllm
    python scripts/evaluate.py --model MODEL \
        --sets "gsm8k=hub:openai/gsm8k:main:test,math500=hub:HuggingFaceH4/MATH-500"

    python scripts/evaluate.py --env-file presets/paper_qwen3_8b_8gpu.env --model MODEL --data aime24.jsonl

--model is a model folder or a Hugging Face Hub id (fetched through the Hub cache; HF_HUB_OFFLINE=1 reads
only the cache). --data is one source (a file, a dataset folder, or hub:ID[:CONFIG[:SPLIT]]); --sets takes
several named sets in the syntax of EVAL_SETS (docs/evaluation.md).

The generation settings (answer extraction, lengths, system prompt, k, temperature, seed, engines) are the
run's: `--env-file FILE` reads them from a run's settings file with the environment over it, exactly as
`scripts/run_training.py --env-file FILE` does (the embedded profile included when the file sets no
SOLVER_MODEL_PATH), so the figures compare with the run's own evaluations; without it they are the settings'
defaults (the paper's recipe) with the environment over them. A flag given on the command line wins.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import tempfile
from pathlib import Path

from prosetting.collectors.backends import resolve_backend, vllm_installed
from prosetting.collectors.engine_pool import open_pool
from prosetting.core.config import Config, ConfigError, load_config
from prosetting.core.eval_spec import EvalSpecError, parse_entry, parse_eval_sets
from prosetting.core.io import atomic_write_json
from prosetting.core.models import ModelNotFound, check_model_setting, resolve_model
from prosetting.processors.eval_sets import EvalSetError, load_eval_set
from prosetting.processors.evaluator import evaluate, format_table, load_benchmark


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="Model folder of the solver, or a Hugging Face Hub id.")
    p.add_argument("--revision", default="", help="Branch, tag or commit of a Hub id (default: main).")
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument(
        "--data",
        help="One benchmark: a JSON Lines/JSON/parquet/CSV file, a dataset folder, or "
        "hub:ID[:CONFIG[:SPLIT]] (`question`/`problem`, `answer`/`solution`).",
    )
    data.add_argument("--sets", help="Several named sets, as EVAL_SETS: NAME=SOURCE,NAME=SOURCE,...")
    p.add_argument(
        "--env-file",
        help="A run's settings file (.env or a preset): its generation and engine settings, the environment over "
        "them, are the defaults of the flags below.",
    )
    p.add_argument("--k", type=int, help="Samples per question for Mean@k (0: greedy only); default EVAL_K.")
    p.add_argument("--temperature", type=float, help="Sampling temperature for Mean@k; default EVAL_TEMPERATURE.")
    p.add_argument("--max-new-tokens", type=int, help="Longest generated solution; default MAX_NEW_TOKENS.")
    p.add_argument("--seed", type=int, help="Sampling seed; default SEED.")
    p.add_argument(
        "--backend",
        choices=("auto", "transformers", "vllm"),
        help="Generation engine; default COLLECTION_BACKEND (auto: vLLM when installed and a GPU is visible).",
    )
    p.add_argument("--gpus", help="GPU ids for vLLM engines; default PHYSICAL_SOLVER_GPU (empty: every visible GPU).")
    p.add_argument("--tensor-parallel-size", type=int, help="GPUs per vLLM engine; default TENSOR_PARALLEL_SIZE.")
    p.add_argument("--system-prompt", help="System message given to the solver; default SOLVER_SYSTEM_PROMPT.")
    p.add_argument(
        "--answer-extraction",
        choices=("boxed", "auto"),
        help="boxed: the last \\boxed{} only; auto: else the stated answer or the last number; default "
        "ANSWER_EXTRACTION.",
    )
    p.add_argument(
        "--out",
        help="Where to save the JSON result (default: <data stem>_eval.json, or sets_eval.json, "
        "next to the model folder; in the working folder for a Hub id).",
    )
    return p.parse_args(argv)


# flag -> the setting that is its default
FLAG_SETTINGS = {
    "k": "EVAL_K",
    "temperature": "EVAL_TEMPERATURE",
    "max_new_tokens": "MAX_NEW_TOKENS",
    "seed": "SEED",
    "backend": "COLLECTION_BACKEND",
    "gpus": "PHYSICAL_SOLVER_GPU",
    "tensor_parallel_size": "TENSOR_PARALLEL_SIZE",
    "system_prompt": "SOLVER_SYSTEM_PROMPT",
    "answer_extraction": "ANSWER_EXTRACTION",
}


def settings(args: argparse.Namespace) -> Config:
    """The run's settings (--env-file, the environment over it), each flag given on the command line over them.
    Without --env-file the model is a user's (--model), so the embedded solver's profile never applies."""
    overrides = {key: str(v) for flag, key in FLAG_SETTINGS.items() if (v := getattr(args, flag)) is not None}
    if not args.env_file:
        overrides.setdefault("SOLVER_MODEL_PATH", args.model)
    cfg, _ = load_config(env_file=args.env_file, overrides=overrides)
    for flag, key in FLAG_SETTINGS.items():
        setattr(args, flag, getattr(cfg, key))
    return cfg


def load_sets(args: argparse.Namespace) -> dict[str, list[dict]]:
    """{name: questions} for --data (one set) or --sets; raises ValueError/OSError with the source named."""
    if args.sets:
        return {spec.name: load_eval_set(spec) for spec in parse_eval_sets(args.sets)}
    path = Path(args.data)
    if path.suffix == ".jsonl" and not args.data.startswith("hub:"):
        return {path.stem: load_benchmark(path)}  # the plain file, with its file and line in any error
    name = args.data.split(":")[1].split("/")[-1] if args.data.startswith("hub:") else path.stem
    return {name: load_eval_set(parse_entry(f"{_safe(name)}={args.data}"))}


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_.-" else "_" for c in name)[:40] or "data"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run_cfg = settings(args)
    except ConfigError as exc:
        print(f"{'--env-file ' + args.env_file if args.env_file else 'settings'}: {exc}", file=sys.stderr)
        return 2
    problem = check_model_setting("--model", args.model, args.revision)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    try:
        sets = load_sets(args)
    except (OSError, ValueError, EvalSpecError, EvalSetError) as exc:
        print(f"--{'sets' if args.sets else 'data'}: {exc}", file=sys.stderr)
        return 2
    try:
        model = resolve_model(args.model, args.revision or None)
    except ModelNotFound as exc:
        print(f"--model: {exc}", file=sys.stderr)
        return 2

    backend_name = args.backend
    if backend_name == "vllm" and not vllm_installed():
        print("--backend vllm: the vllm package is not installed (bash scripts/install_vllm.sh)", file=sys.stderr)
        return 2
    backend_name = resolve_backend(backend_name)
    cfg = dataclasses.replace(run_cfg, COLLECTION_BACKEND=backend_name)
    pool = open_pool(cfg, model.path, Path(tempfile.mkdtemp(prefix="prosetting-evaluate-")), "evaluate")
    results = {}
    try:
        for name, questions in sets.items():  # one set of engines for every set
            results[name] = evaluate(
                pool,
                questions,
                k=args.k,
                temperature=args.temperature,
                seed=args.seed,
                max_new_tokens=args.max_new_tokens,
                system_prompt=args.system_prompt,
                answer_extraction=args.answer_extraction,
            )
    finally:
        pool.close()
    source = {
        "model": args.model,
        "model_path": model.path,
        "commit": model.commit,
        "backend": backend_name,
        "env_file": args.env_file,
        "settings": {key: getattr(cfg, key) for key in FLAG_SETTINGS.values()},
    }
    if args.data:
        result = {**next(iter(results.values())), **source, "data": args.data}
        default_name = f"{_safe(next(iter(sets)))}_eval.json"
    else:
        result = {
            **source,
            "sets": args.sets,
            "results": results,
            "average": {k: sum(r[k] for r in results.values()) / len(results) for k in ("greedy", "mean_at_k")},
        }
        default_name = "sets_eval.json"
    out = Path(args.out) if args.out else (Path(args.model) if not model.repo_id else Path.cwd()) / default_name
    atomic_write_json(out, result)
    for name, r in results.items():
        print(f"{name}:\n{format_table(r)}")
    if len(results) > 1:
        print(
            f"average over {len(results)} sets: greedy {100 * result['average']['greedy']:.1f}%, "
            f"Mean@{args.k} {100 * result['average']['mean_at_k']:.1f}%"
        )
    print(f"saved {out}")
    return 0


if __name__ == "__main__":  # the guard vLLM's engine process needs
    sys.exit(main())
