"""Evaluate a solver on a benchmark: greedy accuracy and Mean@k, per level, printed and saved as JSON.

    python scripts/evaluate.py --model workspace/checkpoints/merged_solver_r5 --data data/heldout.jsonl --k 32
    python scripts/evaluate.py --model MODEL --data gsm8k_test.jsonl --k 8 --backend vllm --out gsm8k.json
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
from prosetting.core.config import Config
from prosetting.core.io import atomic_write_json
from prosetting.processors.evaluator import evaluate, format_table, load_benchmark


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="Hugging Face model folder of the solver.")
    p.add_argument("--data", required=True, help="JSON Lines benchmark (`question`/`problem`, `answer`/`solution`).")
    p.add_argument("--k", type=int, default=32, help="Samples per question for Mean@k (0: greedy only).")
    p.add_argument("--temperature", type=float, default=0.7, help="Sampling temperature for Mean@k.")
    p.add_argument("--max-new-tokens", type=int, default=512, help="Longest generated solution.")
    p.add_argument("--seed", type=int, default=0, help="Sampling seed.")
    p.add_argument("--backend", choices=("auto", "transformers", "vllm"), default="auto",
                   help="Generation engine, as COLLECTION_BACKEND: auto is vLLM when installed and a GPU is visible.")
    p.add_argument("--gpus", default="", help="GPU ids for vLLM engines (PHYSICAL_SOLVER_GPU); empty: every visible GPU.")
    p.add_argument("--tensor-parallel-size", type=int, default=1, help="GPUs per vLLM engine (TENSOR_PARALLEL_SIZE).")
    p.add_argument("--system-prompt", default=Config.SOLVER_SYSTEM_PROMPT, help="System message given to the solver.")
    p.add_argument("--out", help="Where to save the JSON result (default: <data stem>_eval.json next to the model).")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not (Path(args.model) / "config.json").is_file():
        print(f"--model: expected a Hugging Face model folder with config.json, got {args.model!r}", file=sys.stderr)
        return 2
    try:
        questions = load_benchmark(args.data)
    except (OSError, ValueError) as exc:
        print(f"--data: {exc}", file=sys.stderr)
        return 2

    backend_name = args.backend
    if backend_name == "vllm" and not vllm_installed():
        print("--backend vllm: the vllm package is not installed (bash scripts/install_vllm.sh)", file=sys.stderr)
        return 2
    backend_name = resolve_backend(backend_name)
    cfg = dataclasses.replace(Config(), COLLECTION_BACKEND=backend_name, PHYSICAL_SOLVER_GPU=args.gpus,
                              TENSOR_PARALLEL_SIZE=args.tensor_parallel_size, SEED=args.seed)
    pool = open_pool(cfg, args.model, Path(tempfile.mkdtemp(prefix="prosetting-evaluate-")), "evaluate")
    try:
        result = evaluate(pool, questions, k=args.k, temperature=args.temperature, seed=args.seed,
                          max_new_tokens=args.max_new_tokens, system_prompt=args.system_prompt)
    finally:
        pool.close()
    result.update({"model": str(args.model), "data": str(args.data), "backend": backend_name})

    out = Path(args.out) if args.out else Path(args.model) / f"{Path(args.data).stem}_eval.json"
    atomic_write_json(out, result)
    print(format_table(result))
    print(f"saved {out}")
    return 0


if __name__ == "__main__":  # the guard vLLM's engine process needs
    sys.exit(main())
