"""Teacher grading throughput, cost per graded question, and repeated calls after a kill.

    python benchmarks/teacher.py                       # 640 questions x 4 attempts, 100 ms latency, 32 workers
    python benchmarks/teacher.py --questions 320 --latency 0.1 --workers 32

Runs the real grading stage (processors/grading.run_grading, the LLM Teacher, the openai client)
against the scripted OpenAI-compatible server on 127.0.0.1 with a fixed latency per request:
1. both grading units on the same data, each with an empty call cache: graded questions per second as a
   ratio to the ideal (workers / latency requests per second, in the unit graded by), requests and
   prompt/completion tokens per graded question;
2. a grading run in a child process killed with SIGKILL midway (the server holds its answers first, so
   none is lost in flight), then re-run: how many requests answered before the kill were asked again.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from prosetting.benchmarks.doc_figures import update_pages
from prosetting.core.config import load_config
from prosetting.core.context import RunContext
from prosetting.core.io import append_jsonl
from prosetting.core.records import write_pool
from prosetting.core.state_manager import StateManager
from prosetting.processors.grading import run_grading
from prosetting.teacher_model.llm_teacher import LLMTeacher
from prosetting.tests.teacher_server import TeacherServer, socratic_responder


def make_workspace(root: Path, server: TeacherServer, n: int, attempts: int, workers: int, unit: str) -> RunContext:
    cfg, _ = load_config(
        env_file=None,
        environ={},
        overrides={
            "WORKSPACE_DIR": str(root),
            "TEACHER_BACKEND": "llm",
            "TEACHER_BASE_URL": server.base_url,
            "TEACHER_MODEL_NAME": server.model,
            "TEACHER_CONCURRENT_WORKERS": str(workers),
            "GRADING_MODE": "llm",
            "TEACHER_GRADING_UNIT": unit,
            "LOG_LEVEL": "WARNING",
        },
    )
    ctx = RunContext(cfg=cfg, sm=StateManager(cfg.workspace))
    questions = [
        {
            "id": f"q{i:05d}",
            "question": f"{i}+{i + 7}=?",
            "answer": str(2 * i + 7),
            "solution": f"{i}+{i + 7}={2 * i + 7}; \\boxed{{{2 * i + 7}}}",
        }
        for i in range(n)
    ]
    write_pool(ctx.paths, 1, questions)
    rows = []
    for q in questions:
        right = int(q["answer"])
        atts = [
            {
                "attempt_id": f"{q['id']}#r1a{k}",
                "question_id": q["id"],
                "round": 1,
                "text": f"Attempt {k}: adding the units, then the tens, the total is \\boxed{{{right + k % 2}}}",
                "answer": str(right + k % 2),
                "truncated": False,
                "num_tokens": 20,
            }
            for k in range(attempts)
        ]
        rows.append({"question_id": q["id"], "round": 1, "attempts": atts})
    append_jsonl(ctx.paths.trajectories(1), rows)
    return ctx


class ServerProcess:
    """The scripted server in its own process, as a real endpoint would be (not sharing our GIL)."""

    def __init__(self, latency: float):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.model = "teacher-test"
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        server_py = Path(__file__).resolve().parent.parent / "tests" / "teacher_server.py"
        self.proc = subprocess.Popen(
            [sys.executable, str(server_py), "--port", str(self.port), "--socratic", "--delay", str(latency)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.proc.stdout.readline()  # "serving ..." once it listens

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def client_ceiling(args, n: int = 640) -> dict:
    """Requests per second of the bare openai client in `workers` threads against the same server: what this
    machine allows at all (on a 2-core machine the client's own CPU, not the latency, is the limit)."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx2
    from openai import OpenAI

    with ServerProcess(args.latency) as server:
        client = OpenAI(
            base_url=server.base_url,
            api_key="x",
            max_retries=0,
            http_client=httpx2.Client(
                limits=httpx2.Limits(max_connections=args.workers + 4, max_keepalive_connections=args.workers + 4)
            ),
        )
        messages = [{"role": "user", "content": "Problem:\n1+2=?\n\nReference answer:\n3"}]

        def one(_):
            client.chat.completions.create(model=server.model, messages=messages, temperature=0)

        with ThreadPoolExecutor(args.workers) as pool:
            list(pool.map(one, range(args.workers)))  # connections open
            t0 = time.perf_counter()
            list(pool.map(one, range(n)))
        rate = n / (time.perf_counter() - t0)
    ideal = args.workers / args.latency
    return {"requests_per_s": round(rate, 1), "ideal": round(ideal, 1), "ratio": round(rate / ideal, 3)}


def measure_unit(unit: str, args) -> dict:
    with ServerProcess(args.latency) as server, tempfile.TemporaryDirectory() as tmp:
        ctx = make_workspace(Path(tmp), server, args.questions, args.attempts, args.workers, unit)
        ctx.teacher = LLMTeacher.from_config(ctx.cfg)
        t0 = time.perf_counter()
        stats = run_grading(ctx, 1)
        wall = time.perf_counter() - t0
    usage = stats["teacher_usage"]
    per_request = 1 if unit == "question" else args.attempts  # requests per graded question
    ideal = args.workers / args.latency / per_request  # graded questions per second
    rate = stats["questions"] / wall
    return {
        "unit": unit,
        "questions": stats["questions"],
        "wall_s": round(wall, 2),
        "graded_per_s": round(rate, 1),
        "ideal_per_s": round(ideal, 1),
        "ratio": round(rate / ideal, 3),
        "requests_per_question": round(usage["calls"] / stats["questions"], 2),
        "prompt_tokens_per_question": round(usage["prompt_tokens"] / stats["questions"], 1),
        "completion_tokens_per_question": round(usage["completion_tokens"] / stats["questions"], 1),
    }


CHILD = """
import sys
from prosetting.benchmarks.teacher import child_grade
child_grade(sys.argv[1], sys.argv[2], sys.argv[3])
"""


def child_grade(workspace: str, base_url: str, unit: str) -> None:
    """The grading stage in a child process (killed by the parent)."""
    cfg, _ = load_config(
        env_file=None,
        environ={},
        overrides={
            "WORKSPACE_DIR": workspace,
            "TEACHER_BACKEND": "llm",
            "TEACHER_BASE_URL": base_url,
            "TEACHER_MODEL_NAME": "teacher-test",
            "TEACHER_CONCURRENT_WORKERS": "8",
            "GRADING_MODE": "llm",
            "TEACHER_GRADING_UNIT": unit,
        },
    )
    run_grading(RunContext(cfg=cfg, sm=StateManager(cfg.workspace)), 1)


def repeats_after_kill(args, unit: str = "attempt") -> dict:
    """SIGKILL a grading child once a third of the requests are answered, re-run it, count repeats."""
    n = max(24, args.questions // 8)
    with TeacherServer(responder=socratic_responder, delay_s=0.02) as server, tempfile.TemporaryDirectory() as tmp:
        make_workspace(Path(tmp), server, n, args.attempts, 8, unit)
        cmd = [sys.executable, "-c", CHILD, tmp, server.base_url, unit]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        target = n * args.attempts // 3
        while proc.poll() is None and sum(r.get("status") == 200 for r in server.chat_requests) < target:
            time.sleep(0.005)
        server.pause()
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_at = time.time()
        answered = {
            json.dumps(r["json"], sort_keys=True)
            for r in server.chat_requests
            if r.get("status") == 200 and r["answered"] < killed_at
        }
        server.resume()
        time.sleep(0.3)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        after = [r for r in server.chat_requests if r["time"] > killed_at + 0.3]
        repeated = sum(json.dumps(r["json"], sort_keys=True) in answered for r in after)
    return {
        "unit": unit,
        "answered_before_kill": len(answered),
        "requests_after_kill": len(after),
        "repeated_after_kill": repeated,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=640)
    parser.add_argument("--attempts", type=int, default=4)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument(
        "--update-docs",
        action="store_true",
        help="then rewrite the figures README.md and docs/ read from results/ (benchmarks/doc_figures.py)",
    )
    args = parser.parse_args()
    results = {
        "settings": vars(args),
        "client_ceiling": client_ceiling(args),
        "units": [measure_unit(u, args) for u in ("question", "attempt")],
        "kill": repeats_after_kill(args),
    }
    c = results["client_ceiling"]
    print(
        f"bare openai client, {args.workers} threads: {c['requests_per_s']} requests/s of an ideal {c['ideal']} "
        f"(ratio {c['ratio']:.2f}): this machine's ceiling"
    )
    for row in results["units"]:
        print(
            f"{row['unit']:>8}: {row['graded_per_s']:7.1f} graded questions/s of an ideal {row['ideal_per_s']:.1f} "
            f"(ratio {row['ratio']:.2f}); per graded question {row['requests_per_question']} requests, "
            f"{row['prompt_tokens_per_question']} prompt + {row['completion_tokens_per_question']} completion tokens"
        )
    k = results["kill"]
    print(
        f"kill: {k['answered_before_kill']} requests answered before SIGKILL, {k['requests_after_kill']} after the "
        f"re-run, {k['repeated_after_kill']} repeated"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if args.update_docs:
        update_pages()


if __name__ == "__main__":
    main()
