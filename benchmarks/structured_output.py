"""Structured output against a real Teacher model: the share of unusable replies with and without response_format.

    python benchmarks/structured_output.py --serve /work/models/smollm2-135m-instruct --n 20 \
        --json results/structured_output.json
    python benchmarks/structured_output.py --base-url http://127.0.0.1:8000/v1 --model smollm2-135m-instruct --n 20

N grading requests (one per question with its attempts numbered, as TEACHER_GRADING_UNIT=question sends them)
and N writing requests (the three writing policies in turn) are built by the LLM Teacher itself
(`grading_requests`, `writing_request`) on word problems with right and wrong natural-language attempts, then
sent once with structured output and once without, with no cache, through the Teacher's own transport; each
reply is read by the Teacher's own parser. Unusable: the parser refuses it (the Teacher would re-ask). Also
counted: verdicts that match the truth, written questions that pass the parser's checks. --serve starts vLLM's
server on a model folder (tests/vllm_server.py, as scripts/serve_teacher.py does) once for both arms.

Measured (results/structured_output.json; SmolLM2-135M-Instruct on vLLM 0.32 CPU, --n 20, max_tokens 400, 2 cores
under a load of about 18): unusable grading replies 0 of 20 with structured output, 20 of 20 without; unusable
writing replies 6 of 20 with (all cut at max_tokens inside a looping string), 13 of 20 without.
"""

from __future__ import annotations

import argparse
import random
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

from openai import OpenAI

from prosetting.benchmarks.doc_figures import update_pages
from prosetting.core.io import atomic_write_json
from prosetting.teacher_model.base import WriteRequest
from prosetting.teacher_model.llm_teacher import LLMTeacher
from prosetting.teacher_model.reply_parsing import BadAnswer, parse_question_verdicts, parse_questions
from prosetting.teacher_model.serve import served_name
from prosetting.teacher_model.transport import TeacherError, TeacherTransport
from prosetting.tests.vllm_server import vllm_teacher_server

NAMES = ["Gus", "Maya", "Tom", "Lena", "Ravi", "Ana", "Omar", "Jill"]
THINGS = ["pencils", "apples", "stickers", "marbles", "cookies", "books", "shells", "cards"]


def word_problem(i: int, rng: random.Random) -> tuple[dict, list[dict]]:
    """A one- or two-step word problem, its reference, and two attempts in words: one right, one wrong (in
    random order)."""
    name, things = NAMES[i % len(NAMES)], THINGS[(i // len(NAMES) + i) % len(THINGS)]
    a, b, c = rng.randint(12, 40), rng.randint(2, 11), rng.randint(2, 9)
    kind = i % 3
    if kind == 0:
        text = f"{name} had {a} {things} and gave away {b}. How many {things} are left?"
        answer, work = a - b, f"{a} - {b} = {a - b}"
        right = (
            f"{name} starts with {a} {things} and gives away {b}, so {a} - {b} = {a - b}. {a - b} {things} are left."
        )
        wrong_answer = a + b
        wrong = f"{name} has {a} {things} and {b} more, so {a} + {b} = {a + b}. The answer is {a + b}."
    elif kind == 1:
        text = f"{name} buys {c} bags with {b} {things} in each bag. How many {things} does {name} have?"
        answer, work = b * c, f"{c} * {b} = {b * c}"
        right = f"There are {c} bags and each has {b} {things}. {c} times {b} is {b * c}, so {name} has {b * c}."
        wrong_answer = b + c
        wrong = f"{c} bags and {b} {things}: {c} + {b} = {b + c}. {name} has {b + c} {things}."
    else:
        text = f"{name} had {a} {things}, found {b} more, then lost {c}. How many {things} does {name} have now?"
        answer, work = a + b - c, f"{a} + {b} = {a + b}; {a + b} - {c} = {a + b - c}"
        right = f"First {a} + {b} = {a + b}. Then {a + b} - {c} = {a + b - c}. {name} has {a + b - c} {things} now."
        wrong_answer = a + b
        wrong = f"{name} had {a} and found {b}, so {a} + {b} = {a + b}. {name} has {a + b} {things}."
    question = {
        "id": f"wp{i:03d}",
        "question": text,
        "answer": str(answer),
        "solution": f"{work}. \\boxed{{{answer}}}",
        "meta": {"level": 1 + kind // 2},
    }
    attempts = [
        {"attempt_id": f"wp{i:03d}#a0", "text": right, "answer": str(answer), "truncated": False, "truth": True},
        {"attempt_id": f"wp{i:03d}#a1", "text": wrong, "answer": str(wrong_answer), "truncated": False, "truth": False},
    ]
    rng.shuffle(attempts)
    return question, attempts


def build_requests(n: int, seed: int) -> tuple[list[dict], list[dict]]:
    """n grading and n writing requests, each as the LLM Teacher builds it (messages, temperature, seed,
    response_format), with what is needed to read and score its reply."""
    rng = random.Random(seed)
    teacher = LLMTeacher(transport=None, grading_mode="llm", grading_unit="question")  # builds, never sends
    grading, writing = [], []
    policies = [("learning", 0.5), ("too_difficult", 0.0), ("mastered", 1.0)]
    for i in range(n):
        question, attempts = word_problem(i, rng)
        (request,) = teacher.grading_requests(question, attempts)
        grading.append({"request": request, "of": len(attempts), "truth": [a["truth"] for a in attempts]})
        zone, rate = policies[i % len(policies)]
        wrong = next(a for a in attempts if not a["truth"])
        write = WriteRequest(
            question=question,
            zone=zone,
            success_rate=rate,
            failed_attempt=None if zone == "mastered" else wrong,
            count=1,
            rng=random.Random(f"{seed}:{i}"),
        )
        writing.append({"request": teacher.writing_request(write), "parent": question["question"], "of": 1})
    return grading, writing


def read_grading(item: dict, text: str) -> int:
    """Verdicts that match the truth (BadAnswer: unusable)."""
    verdicts = parse_question_verdicts(text, item["of"])
    return sum(c == t for (c, _), t in zip(verdicts, item["truth"], strict=True))


def read_writing(item: dict, text: str) -> int:
    """Written questions that pass the parser's checks (BadAnswer: unusable)."""
    good, _problems = parse_questions(text, item["parent"])
    return min(len(good), item["of"])


def run_arm(transport: TeacherTransport, items: list[dict], read, kind: str, workers: int) -> dict:
    """Send every request once (no cache, no re-ask) and read each reply with the Teacher's parser."""

    def one(item: dict) -> dict:
        messages, temperature, seed, response_format = item["request"]
        t0 = time.time()
        try:
            text = transport.complete(messages, kind, temperature, seed, response_format).text
        except TeacherError as exc:
            return {"error": str(exc)[:200], "seconds": time.time() - t0}
        out = {"seconds": time.time() - t0, "reply": text, "of": item["of"]}
        try:
            out.update(right=read(item, text), usable=True)
        except BadAnswer as exc:
            out.update(usable=False, why=str(exc)[:160])
        return out

    before = transport.stats()
    t0 = time.time()
    with ThreadPoolExecutor(workers) as pool:
        rows = list(pool.map(one, items))
    stats = transport.stats()
    answered = [r for r in rows if "error" not in r]
    usable = [r for r in answered if r["usable"]]
    bad = [r for r in answered if not r["usable"]]
    return {
        "requests": len(rows),
        "failed_requests": len(rows) - len(answered),
        "unusable": len(bad),
        "unusable_share": round(len(bad) / len(answered), 3) if answered else None,
        "right": sum(r["right"] for r in usable),  # verdicts matching the truth / questions passing the checks
        "of": sum(r["of"] for r in answered),
        "completion_tokens": stats.get("completion_tokens", 0) - before.get("completion_tokens", 0),
        "seconds": round(time.time() - t0, 1),
        "unusable_examples": [{"why": r["why"], "reply": r["reply"][:300]} for r in bad[:3]],
        "errors": [r["error"] for r in rows if "error" in r][:3],
    }


def transport_for(base_url: str, model: str, structured: bool, max_tokens: int, timeout: float) -> TeacherTransport:
    client = OpenAI(base_url=base_url, api_key="EMPTY", timeout=timeout, max_retries=0)
    return TeacherTransport(
        client, model, base_url, max_retries=1, timeout=timeout, max_tokens=max_tokens, structured_output=structured
    )


def table(results: dict) -> str:
    lines = [
        "| kind | structured output | replies | unusable | share | right / of | completion tokens | seconds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for kind, right in (("grading", "verdicts right"), ("writing", "questions passing")):
        for arm in ("structured", "plain"):
            r = results[arm][kind]
            lines.append(
                f"| {kind} | {'on' if arm == 'structured' else 'off'} | {r['requests'] - r['failed_requests']} | "
                f"{r['unusable']} | {r['unusable_share']:.0%} | {r['right']} / {r['of']} ({right}) | "
                f"{r['completion_tokens']} | {r['seconds']} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--base-url", help="A running Teacher endpoint (http://host:port/v1); needs --model.")
    where.add_argument("--serve", help="A model folder: start vLLM's server on it for the run, then stop it.")
    p.add_argument("--model", help="Served model name (with --base-url; --serve uses the folder's name).")
    p.add_argument("--n", type=int, default=20, help="Grading requests, and writing requests, per arm.")
    p.add_argument("--max-tokens", type=int, default=400, help="max_tokens of every request (TEACHER_MAX_TOKENS).")
    p.add_argument("--workers", type=int, default=4, help="Requests in flight (the server batches them).")
    p.add_argument("--timeout", type=float, default=600.0, help="Seconds per request (a loaded CPU server is slow).")
    p.add_argument("--seed", type=int, default=0, help="Seed of the word problems and the writing seeds.")
    p.add_argument("--ready-timeout", type=float, default=900.0, help="--serve: seconds to wait for the server.")
    p.add_argument("--json", help="Write the results here as JSON.")
    p.add_argument(
        "--update-docs",
        action="store_true",
        help="then rewrite the figures README.md and docs/ read from results/ (benchmarks/doc_figures.py)",
    )
    args = p.parse_args(argv)
    if args.base_url and not args.model:
        p.error("--base-url needs --model")
    model = args.model or served_name(args.serve)
    grading, writing = build_requests(args.n, args.seed)
    t0 = time.time()
    serving = (
        vllm_teacher_server(args.serve, name=model, timeout_s=args.ready_timeout)
        if args.serve
        else nullcontext(args.base_url)
    )
    results: dict = {"model": model, "n": args.n, "max_tokens": args.max_tokens, "workers": args.workers}
    with serving as base_url:
        results["server_ready_seconds"] = round(time.time() - t0, 1)
        for arm, structured in (("structured", True), ("plain", False)):
            transport = transport_for(base_url, model, structured, args.max_tokens, args.timeout)
            results[arm] = {
                "grading": run_arm(transport, grading, read_grading, "grading", args.workers),
                "writing": run_arm(transport, writing, read_writing, "writing", args.workers),
                "structured_output_kept": transport.structured_output,  # False: the endpoint refused it
            }
    results["seconds"] = round(time.time() - t0, 1)
    print(table(results))
    if args.json:
        atomic_write_json(Path(args.json), results)
        print(f"wrote {args.json}")
    if args.update_docs:
        update_pages()
    return results


if __name__ == "__main__":
    main()
