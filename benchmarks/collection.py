"""What our collection stage costs over vLLM itself, and over the transformers backend, on the same prompts.

    python benchmarks/collection.py --out /tmp/bench_collection [--questions 256 --attempts 4 --max-new-tokens 64]
    python benchmarks/collection.py --model fetched:smollm2-135m-instruct \
        --questions-file data/word_problems/seeds.jsonl --questions 16 --attempts 4 --max-new-tokens 128 \
        --batch 16 --cpu-kvcache-gib 2 --sides plain,vllm --repeats 2 --json results/real_model_collection.json

In one run, on one model and the same prompts:
  (a) `vllm`: our collection stage (`run_collection`) on the vLLM backend, one engine in a worker process;
  (b) `plain`: a plain script: `vllm.LLM(...)` then one `LLM.generate` call on every prompt at once (on the CPU
      with the engine core in its process and the same cores bound, as our workers run it: the CPU build's
      default engine process hung here once under load, and its default binding keeps one of two cores free);
  (c) `transformers`: our collection stage on the transformers backend;
  (d) `vllm2`: our collection stage on vLLM with 2 engines (COLLECTION_CPU_ENGINES=2: on the CPU each engine
      gets half the cores, so this shows the orchestration's overhead, not a speed-up).
The model is a random-weight Qwen2 built here (about 30 M parameters, head size 64, the embedded solver's
character tokenizer; no system prompt, sums as questions) or `--model` (a folder, `fetched:NAME` or a Hub id:
its own tokenizer and chat template, SOLVER_SYSTEM_PROMPT's default, questions from `--questions-file` cycled
to `--questions`). Every side gets the same token ids: the chats rendered with the model's chat template and
tokenized without added special tokens (collectors/backends.chat_token_prompts, checked equal to the plain
side's own rendering), the same sampling (n, temperature, top-p, max tokens, stop strings) and the same engine
settings (dtype, max model length, KV cache, cores). With a chat model the attempts end at EOS, so the sides
generate different numbers of tokens: generated tokens per second over generation time is the figure (engine
start excluded: it is paid once per stage and listed apart), with the ratios a/b (goal >= 0.9), a/c and d/a.
`--repeats` runs (b) and (a) that many times each, alternating, and keeps each one's best rate. The CPU time of
each side (its processes, engine start included) is listed too: it moves less with other users' load. Saved as
<out>/collection.json (<out>/collection_model.json with --model) or `--json`, with the load average before and
after. Each side imports what it runs inside its own function, so the plain vLLM process loads none of our stage.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import random
import resource
import shutil
import sys
import time
from pathlib import Path

from prosetting.benchmarks.doc_figures import update_pages

SIDES = ("plain", "vllm", "transformers", "vllm2")
NAMES = {
    "plain": "plain_vllm",
    "vllm": "ours_vllm",
    "transformers": "ours_transformers",
    "vllm2": "ours_vllm_2_engines",
}


def build_model(out: Path) -> Path:
    from prosetting.trainers.tiny_solver import build_tiny_solver

    if not (out / "config.json").exists():
        build_tiny_solver(out, seed=0, layers=10, hidden=512, heads=8, kv_heads=2, intermediate=1536, max_positions=512)
    return out


def make_questions(n: int, questions_file: str | None = None) -> list[dict]:
    """`n` questions: random sums, or the file's questions in order, cycled (ids made unique)."""
    if not questions_file:
        rng = random.Random(0)
        return [
            {"id": f"b{i:04d}", "question": f"{rng.randint(10, 999)} + {rng.randint(10, 999)} = ?", "answer": "0"}
            for i in range(n)
        ]
    from prosetting.core.questions import load_questions_file

    rows = load_questions_file(questions_file)
    return [
        {"id": f"b{i:04d}", "question": rows[i % len(rows)]["question"], "answer": rows[i % len(rows)]["answer"]}
        for i in range(n)
    ]


def our_stage(ws: Path, model: Path, questions: list[dict], args, **settings) -> dict:
    from prosetting.collectors.placement import check_engine_settings
    from prosetting.collectors.trajectory_collector import run_collection
    from prosetting.core.config import load_config
    from prosetting.core.context import RunContext
    from prosetting.core.records import write_pool
    from prosetting.core.state_manager import StateManager

    overrides = {
        "WORKSPACE_DIR": str(ws),
        "ATTEMPTS_PER_QUESTION": str(args.attempts),
        "MAX_NEW_TOKENS": str(args.max_new_tokens),
        "COLLECTION_BATCH_SIZE": str(args.batch),
        "SAMPLING_TEMPERATURE": str(args.temperature),
        "VLLM_MAX_MODEL_LEN": str(args.max_model_len),
        "VLLM_DTYPE": args.dtype,
        "VLLM_CPU_KVCACHE_SPACE": str(args.cpu_kvcache_gib),
        **{k: str(v) for k, v in settings.items()},
    }
    cfg, _ = load_config(env_file=None, environ={}, overrides=overrides)
    check_engine_settings(cfg)
    cfg = dataclasses.replace(cfg, SOLVER_MODEL_PATH=str(model), SOLVER_SYSTEM_PROMPT=args.system_prompt)
    shutil.rmtree(ws, ignore_errors=True)  # a fresh workspace: a re-run generates again, reusing no batch
    sm = StateManager(cfg.workspace)
    write_pool(sm.paths, 1, questions)
    t0 = time.time()
    stats = run_collection(RunContext(cfg=cfg, sm=sm), 1)
    stats["wall_seconds"] = round(time.time() - t0, 2)
    stats["tokens_per_second"] = round(stats["generated_tokens"] / stats["generation_seconds"], 1)
    return stats


def _plain_vllm(engine: dict, env: dict, prompts: list[dict], sampling: dict, queue) -> None:
    """The user's script: the engine, then one generate call on every prompt (run in a fresh process)."""
    os.environ.update(env)  # before vLLM is imported
    from vllm import LLM, SamplingParams

    t0 = time.time()
    llm = LLM(**engine)
    ready = time.time()
    outs = llm.generate(prompts, SamplingParams(**sampling), use_tqdm=False)
    done = time.time()
    tokens = sum(len(o.token_ids) for out in outs for o in out.outputs)
    queue.put(
        {
            "engine_start_seconds": round(ready - t0, 2),
            "generation_seconds": round(done - ready, 2),
            "wall_seconds": round(done - t0, 2),
            "generated_tokens": tokens,
            "num_attempts": sum(len(out.outputs) for out in outs),
            "truncated": sum(o.finish_reason == "length" for out in outs for o in out.outputs),
            "mean_tokens": round(tokens / max(1, sum(len(out.outputs) for out in outs)), 1),
            "tokens_per_second": round(tokens / (done - ready), 1),
        }
    )


def plain_inputs(model: Path, questions: list[dict], args) -> tuple[list[dict], dict, dict, dict]:
    """The plain script's token prompts, engine arguments, sampling and environment: those of our one engine."""
    import torch
    from transformers import AutoTokenizer

    from prosetting.collectors.backends import chat_token_prompts
    from prosetting.core.config import Config
    from prosetting.core.text import solver_messages

    tok = AutoTokenizer.from_pretrained(model)
    system = [{"role": "system", "content": args.system_prompt}] if args.system_prompt else []
    texts = [
        tok.apply_chat_template(
            [*system, {"role": "user", "content": q["question"]}], tokenize=False, add_generation_prompt=True
        )
        for q in questions
    ]
    prompts = [{"prompt_token_ids": tok(t, add_special_tokens=False)["input_ids"]} for t in texts]
    ours = chat_token_prompts(tok, [solver_messages(q["question"], args.system_prompt) for q in questions])
    if prompts != ours:  # both sides must do the same work
        raise RuntimeError("the plain script's token prompts differ from our stage's (chat_token_prompts)")
    on_gpu = torch.cuda.is_available()
    engine = {
        "model": str(model),
        "seed": 0,
        "gpu_memory_utilization": Config.VLLM_GPU_MEMORY_UTILIZATION if on_gpu else 0.3,
        "max_model_len": args.max_model_len,
        "dtype": args.dtype,
    }
    sampling = {
        "n": args.attempts,
        "temperature": args.temperature,
        "top_p": Config.SAMPLING_TOP_P,
        "max_tokens": args.max_new_tokens,
    }
    stop = [s for s in Config.SAMPLING_STOP.split("||") if s]
    if stop:
        sampling["stop"] = stop
    env = {}
    if not on_gpu:  # what our worker sets (collectors/placement.py, VllmBackend) for one engine on every core
        cores = ",".join(map(str, sorted(os.sched_getaffinity(0))))
        env = {
            "VLLM_CPU_KVCACHE_SPACE": f"{args.cpu_kvcache_gib:g}",
            "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
            "VLLM_CPU_OMP_THREADS_BIND": cores,
            "OMP_NUM_THREADS": str(len(os.sched_getaffinity(0))),
            "CUDA_VISIBLE_DEVICES": "",
        }
    return prompts, engine, sampling, env


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the plain script's process, our engine workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def plain_vllm(inputs: tuple) -> dict:
    prompts, engine, sampling, env = inputs
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_plain_vllm, args=(engine, env, prompts, sampling, queue))
    proc.start()
    result = queue.get(timeout=3600)
    proc.join()
    return result


def describe_model(model: Path) -> str:
    config = json.loads((model / "config.json").read_text())
    kind = (config.get("architectures") or ["?"])[0]
    return f"{kind}: {config.get('num_hidden_layers')} layers, hidden {config.get('hidden_size')}"


def main(argv: list[str] | None = None) -> int:
    from prosetting.core.config import Config

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="/tmp/bench_collection", help="Folder for the model built here and workspaces.")
    p.add_argument(
        "--json",
        help="Where to write the figures (default: <out>/collection.json, or "
        "<out>/collection_model.json with --model).",
    )
    p.add_argument(
        "--model",
        help="A model folder, `fetched:NAME` or a Hub id instead of the 30 M one built here "
        "(e.g. fetched:smollm2-135m-instruct, or the embedded solver, workspace/checkpoints/base_solver).",
    )
    p.add_argument(
        "--questions-file", help="Questions (JSON list or JSON Lines) instead of random sums, cycled to --questions."
    )
    p.add_argument("--questions", type=int, default=256)
    p.add_argument("--attempts", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=Config.SAMPLING_TEMPERATURE)
    p.add_argument(
        "--system-prompt",
        help="The solver's system prompt (default: SOLVER_SYSTEM_PROMPT's default "
        "with --model, none for the model built here).",
    )
    p.add_argument(
        "--max-model-len",
        type=int,
        default=0,
        help="vLLM max_model_len of every engine (0: 512 for "
        "the model built here, else the model's max_position_embeddings).",
    )
    p.add_argument("--dtype", default="float32", help="vLLM dtype of every engine.")
    p.add_argument(
        "--cpu-kvcache-gib",
        type=float,
        default=Config.VLLM_CPU_KVCACHE_SPACE,
        help="VLLM_CPU_KVCACHE_SPACE of every engine on the CPU (room for every sequence at once avoids preemption).",
    )
    p.add_argument("--batch", type=int, default=64, help="COLLECTION_BATCH_SIZE of our stage")
    p.add_argument(
        "--sides",
        help=f"Comma list of {', '.join(SIDES)} (default: all of them, or plain,vllm,transformers with --model).",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="Runs of plain and vllm each, alternating; the best rate of each is kept.",
    )
    p.add_argument(
        "--update-docs",
        action="store_true",
        help="then rewrite the figures README.md and docs/ read from results/ (benchmarks/doc_figures.py)",
    )
    args = p.parse_args(argv)
    sides = [s.strip() for s in (args.sides or ",".join(SIDES[:3] if args.model else SIDES)).split(",") if s.strip()]
    if unknown := set(sides) - set(SIDES):
        p.error(f"--sides: unknown {', '.join(sorted(unknown))}; expected a comma list of {', '.join(SIDES)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.model:
        from prosetting.collectors.backends import model_max_len
        from prosetting.core.models import resolve_model

        model = Path(resolve_model(args.model).path)
        args.max_model_len = args.max_model_len or model_max_len(model) or 2048
        args.system_prompt = Config.SOLVER_SYSTEM_PROMPT if args.system_prompt is None else args.system_prompt
    else:
        model = build_model(out / "model")
        args.max_model_len = args.max_model_len or 512
        args.system_prompt = args.system_prompt or ""
    questions = make_questions(args.questions, args.questions_file)
    load_before = os.getloadavg()
    results: dict = {}
    runs: dict[str, list] = {"plain": [], "vllm": []}
    inputs = plain_inputs(model, questions, args) if "plain" in sides else None

    def run(side: str) -> dict:
        c0 = cpu_seconds()
        if side == "plain":
            return {**plain_vllm(inputs), "cpu_seconds": round(cpu_seconds() - c0, 1)}
        settings = {
            "vllm": {"COLLECTION_BACKEND": "vllm"},
            "transformers": {"COLLECTION_BACKEND": "transformers"},
            "vllm2": {"COLLECTION_BACKEND": "vllm", "COLLECTION_CPU_ENGINES": 2},
        }[side]
        stats = our_stage(out / f"ws_{side}", model, questions, args, **settings)
        return {**stats, "cpu_seconds": round(cpu_seconds() - c0, 1)}

    for i in range(max(1, args.repeats)):  # plain, ours, then ours, plain, ...: the load drifts
        for side in [s for s in ("plain", "vllm") if s in sides][:: 1 if i % 2 == 0 else -1]:
            runs[side].append(run(side))
            print(f"{NAMES[side]} (run {i + 1}):", runs[side][-1], flush=True)
    for side, done in runs.items():
        if done:
            results[NAMES[side]] = max(done, key=lambda r: r["tokens_per_second"])
            if len(done) > 1:
                results[NAMES[side]]["all_tokens_per_second"] = [r["tokens_per_second"] for r in done]
    for side in [s for s in ("transformers", "vllm2") if s in sides]:
        results[NAMES[side]] = run(side)
        print(f"{NAMES[side]}:", results[NAMES[side]], flush=True)
    rate = {s: results[NAMES[s]]["tokens_per_second"] for s in sides}
    pairs = {"a_over_b": ("vllm", "plain"), "a_over_c": ("vllm", "transformers"), "d_over_a": ("vllm2", "vllm")}
    results["ratios"] = {k: round(rate[x] / rate[y], 3) for k, (x, y) in pairs.items() if x in rate and y in rate}
    if "vllm" in rate and "vllm2" in rate:
        results["ratios"]["stage_wall_2_engines_over_1"] = round(
            results[NAMES["vllm2"]]["wall_seconds"] / results[NAMES["vllm"]]["wall_seconds"], 3
        )
    results["setup"] = {
        "model": str(model),
        "model_shape": describe_model(model),
        "questions_file": args.questions_file,
        "questions": args.questions,
        "attempts": args.attempts,
        "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
        "system_prompt": args.system_prompt,
        "batch": args.batch,
        "max_model_len": args.max_model_len,
        "dtype": args.dtype,
        "cpu_kvcache_gib": args.cpu_kvcache_gib,
        "repeats": args.repeats,
        "mean_prompt_tokens": round(sum(len(p["prompt_token_ids"]) for p in inputs[0]) / len(questions), 1)
        if inputs
        else None,
        "plain_env": inputs[3] if inputs else None,
        "same_token_prompts_checked": bool(inputs),
    }
    results["machine"] = {
        "cpus": len(os.sched_getaffinity(0)),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    dest = Path(args.json) if args.json else out / ("collection_model.json" if args.model else "collection.json")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(results, indent=2) + "\n")
    if args.update_docs:
        update_pages()
    print(f"\n{'':28}{'tokens/s':>10}{'start s':>9}{'gen s':>8}{'wall s':>8}{'CPU s':>8}{'tokens':>8}")
    for side in sides:
        r = results[NAMES[side]]
        print(
            f"{NAMES[side]:28}{r['tokens_per_second']:>10.0f}{r['engine_start_seconds']:>9.1f}"
            f"{r['generation_seconds']:>8.1f}{r['wall_seconds']:>8.1f}{r['cpu_seconds']:>8.1f}{r['generated_tokens']:>8}"
        )
    print("ratios:", results["ratios"], "(goal a_over_b >= 0.9)")
    print(
        "load average before",
        results["machine"]["load_average_before"],
        "after",
        results["machine"]["load_average_after"],
        "; written to",
        dest,
    )
    return 0


if __name__ == "__main__":  # the guard vLLM's engine processes need
    sys.exit(main())
