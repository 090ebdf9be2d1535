"""What our collection stage costs over vLLM itself, and over the transformers backend, on the same prompts.

    python benchmarks/collection.py --out /tmp/bench_collection [--questions 256 --attempts 4 --max-new-tokens 64]

In one run, on one random-weight Qwen2 built here (about 30 M parameters, head size 64, the embedded
solver's character tokenizer) and the same prompts:
  (a) our collection stage (`run_collection`) on the vLLM backend, one engine in a worker process;
  (b) a plain script: `vllm.LLM(...)` then one `LLM.generate` call on every prompt at once (on the CPU with
      the engine core in its process, as our workers run it: the CPU build's default engine process hung here
      once under load);
  (c) our collection stage on the transformers backend;
  (d) our collection stage on vLLM with 2 engines (COLLECTION_CPU_ENGINES=2: on the CPU each engine gets
      half the cores, so this shows the orchestration's overhead, not a speed-up).
Generated tokens per second over generation time (engine start excluded: it is paid once per stage and
listed apart), and the ratios a/b (goal >= 0.9), a/c and d/a. Saved as <out>/collection.json.
Each side imports what it runs inside its own function, so the plain vLLM side loads none of our stage.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import random
import sys
import time
from pathlib import Path


def build_model(out: Path) -> Path:
    from prosetting.trainers.tiny_solver import build_tiny_solver

    if not (out / "config.json").exists():
        build_tiny_solver(out, seed=0, layers=10, hidden=512, heads=8, kv_heads=2, intermediate=1536, max_positions=512)
    return out


def make_questions(n: int) -> list[dict]:
    rng = random.Random(0)
    return [
        {"id": f"b{i:04d}", "question": f"{rng.randint(10, 999)} + {rng.randint(10, 999)} = ?", "answer": "0"}
        for i in range(n)
    ]


def our_stage(ws: Path, model: Path, questions: list[dict], args, **settings) -> dict:
    from prosetting.collectors.trajectory_collector import run_collection
    from prosetting.core.config import load_config
    from prosetting.core.context import RunContext
    from prosetting.core.io import atomic_write_json
    from prosetting.core.state_manager import StateManager

    overrides = {
        "WORKSPACE_DIR": str(ws),
        "ATTEMPTS_PER_QUESTION": str(args.attempts),
        "MAX_NEW_TOKENS": str(args.max_new_tokens),
        "COLLECTION_BATCH_SIZE": str(args.batch),
        "SOLVER_SYSTEM_PROMPT": "",
        **{k: str(v) for k, v in settings.items()},
    }
    cfg, _ = load_config(env_file=None, environ={}, overrides=overrides)
    cfg = dataclasses.replace(cfg, SOLVER_MODEL_PATH=str(model))
    sm = StateManager(cfg.workspace)
    atomic_write_json(sm.paths.questions(1), questions)
    t0 = time.time()
    stats = run_collection(RunContext(cfg=cfg, sm=sm), 1)
    stats["wall_seconds"] = round(time.time() - t0, 2)
    stats["tokens_per_second"] = round(stats["generated_tokens"] / stats["generation_seconds"], 1)
    return stats


def _plain_vllm(model: str, prompts: list[str], n: int, max_tokens: int, queue) -> None:
    import os

    import torch

    from prosetting.core.config import Config

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{Config.VLLM_CPU_KVCACHE_SPACE:g}")  # as our engines get it
    if not torch.cuda.is_available():  # as our CPU workers run it (see VllmBackend); on a GPU vLLM's default
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    from vllm import LLM, SamplingParams

    t0 = time.time()
    llm = LLM(model=model, seed=0, gpu_memory_utilization=0.3, max_model_len=512, dtype="float32")
    ready = time.time()
    outs = llm.generate(prompts, SamplingParams(n=n, temperature=1.0, max_tokens=max_tokens), use_tqdm=False)
    done = time.time()
    tokens = sum(len(o.token_ids) for out in outs for o in out.outputs)
    queue.put(
        {
            "engine_start_seconds": round(ready - t0, 2),
            "generation_seconds": round(done - ready, 2),
            "generated_tokens": tokens,
            "tokens_per_second": round(tokens / (done - ready), 1),
        }
    )


def plain_vllm(model: Path, questions: list[dict], args) -> dict:
    from transformers import AutoTokenizer

    from prosetting.core.text import solver_messages

    tok = AutoTokenizer.from_pretrained(model)
    prompts = [
        tok.apply_chat_template(solver_messages(q["question"]), tokenize=False, add_generation_prompt=True)
        for q in questions
    ]
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_plain_vllm, args=(str(model), prompts, args.attempts, args.max_new_tokens, queue))
    proc.start()
    result = queue.get(timeout=1800)
    proc.join()
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="/tmp/bench_collection")
    p.add_argument("--questions", type=int, default=256)
    p.add_argument("--attempts", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--batch", type=int, default=64, help="COLLECTION_BATCH_SIZE of our stage")
    p.add_argument(
        "--model",
        help="an existing model folder instead of the 30 M one built here (e.g. the embedded "
        "solver, workspace/checkpoints/base_solver); with it only (a) and (c) run, for COLLECTION_BACKEND=auto",
    )
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = Path(args.model) if args.model else build_model(out / "model")
    questions = make_questions(args.questions)
    results = {}
    if not args.model:
        results["plain_vllm"] = plain_vllm(model, questions, args)
        print("b plain vLLM:", results["plain_vllm"], flush=True)
    results["ours_vllm"] = our_stage(out / "ws_vllm", model, questions, args, COLLECTION_BACKEND="vllm")
    print("a ours, vLLM:", results["ours_vllm"], flush=True)
    results["ours_transformers"] = our_stage(out / "ws_tf", model, questions, args, COLLECTION_BACKEND="transformers")
    print("c ours, transformers:", results["ours_transformers"], flush=True)
    if args.model:
        a, c = results["ours_vllm"], results["ours_transformers"]
        print(
            f"stage wall time: vLLM {a['wall_seconds']:.1f}s (engine start {a['engine_start_seconds']:.1f}s), "
            f"transformers {c['wall_seconds']:.1f}s (model load {c['engine_start_seconds']:.1f}s)"
        )
        (out / "collection_model.json").write_text(json.dumps(results, indent=2))
        return 0
    results["ours_vllm_2_engines"] = our_stage(
        out / "ws_vllm2", model, questions, args, COLLECTION_BACKEND="vllm", COLLECTION_CPU_ENGINES=2
    )
    print("d ours, vLLM, 2 engines:", results["ours_vllm_2_engines"], flush=True)
    a, b = results["ours_vllm"]["tokens_per_second"], results["plain_vllm"]["tokens_per_second"]
    c, d = results["ours_transformers"]["tokens_per_second"], results["ours_vllm_2_engines"]["tokens_per_second"]
    results["ratios"] = {
        "a_over_b": round(a / b, 3),
        "a_over_c": round(a / c, 3),
        "d_over_a": round(d / a, 3),
        "stage_wall_2_engines_over_1": round(
            results["ours_vllm_2_engines"]["wall_seconds"] / results["ours_vllm"]["wall_seconds"], 3
        ),
    }
    results["setup"] = {
        "questions": args.questions,
        "attempts": args.attempts,
        "max_new_tokens": args.max_new_tokens,
        "batch": args.batch,
        "model_parameters": "about 30 M (10 layers, hidden 512, head size 64)",
    }
    (out / "collection.json").write_text(json.dumps(results, indent=2))
    print(f"\n{'':28}{'tokens/s':>10}{'start s':>9}{'gen s':>8}")
    for name in ("plain_vllm", "ours_vllm", "ours_transformers", "ours_vllm_2_engines"):
        r = results[name]
        print(
            f"{name:28}{r['tokens_per_second']:>10.0f}{r['engine_start_seconds']:>9.1f}{r['generation_seconds']:>8.1f}"
        )
    print("ratios:", results["ratios"])
    return 0


if __name__ == "__main__":  # the guard vLLM's engine processes need
    sys.exit(main())
