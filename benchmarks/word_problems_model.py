"""How a real chat model starts on the word-problem ladder: greedy accuracy per level, graded by WordProblemTeacher.

    OMP_NUM_THREADS=1 python benchmarks/word_problems_model.py --model /work/models/smollm2-135m-instruct \
        --groups 1,2,3,4,5 6,7,8,9,10,11 --per-group 40 --max-new-tokens 160 --out /tmp/wp_check.jsonl

Each group gets --per-group fresh questions spread over its levels (drawn like the seeds, from a fixed seed),
decoded greedily in one left-padded batch with the model's chat template and the solver's system prompt, read as
collection reads it with ANSWER_EXTRACTION=auto (the last \\boxed{}, else 'the answer is N', else the last number
of a solution that was not cut off) and graded by WordProblemTeacher. On a shared 2-core machine keep one thread:
two threads ran 20x slower there.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a Hugging Face model folder with a chat template")
    ap.add_argument("--groups", nargs="+", default=["1,2,3,4,5", "6,7,8,9,10,11"], help="levels, comma-separated")
    ap.add_argument("--per-group", type=int, default=40)
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="", help="JSON Lines of every question, generation and verdict")
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prosetting.core.config import Config
    from prosetting.core.text import make_attempt, solver_messages
    from prosetting.teacher_model import word_problems as wp

    torch.set_num_threads(args.threads)
    tok = AutoTokenizer.from_pretrained(args.model, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    teacher = wp.WordProblemTeacher(exclude=set())
    system = Config().SOLVER_SYSTEM_PROMPT
    rows = []
    for group in args.groups:
        levels = [int(x) for x in group.split(",")]
        per_level = {
            lv: args.per_group // len(levels) + (i < args.per_group % len(levels)) for i, lv in enumerate(levels)
        }
        questions = wp.question_set("check", per_level, seed=777 + levels[0])
        prompts = [
            tok.apply_chat_template(solver_messages(q["question"], system), tokenize=False, add_generation_prompt=True)
            for q in questions
        ]
        start = time.time()
        batch = tok(prompts, return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model.generate(
                **batch, max_new_tokens=args.max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id
            )
        generated = out[:, batch["input_ids"].shape[1] :]
        texts = tok.batch_decode(generated, skip_special_tokens=True)
        for q, text, ids in zip(questions, texts, generated, strict=True):
            cut = tok.eos_token_id not in ids.tolist()
            attempt = make_attempt(q["id"], 1, 0, text, num_tokens=len(ids), truncated=cut, answer_extraction="auto")
            verdict = teacher.grade(q, [attempt])[0]
            rows.append(
                {
                    "level": q["meta"]["level"],
                    "question": q["question"],
                    "answer": q["answer"],
                    "text": text,
                    "correct": verdict["correct"],
                }
            )
        right = sum(r["correct"] for r in rows[-len(questions) :])
        print(f"levels {group}: {right}/{len(questions)} ({right / len(questions):.0%}) in {time.time() - start:.0f} s")
    right, total = Counter(), Counter()
    for r in rows:
        right[r["level"]] += r["correct"]
        total[r["level"]] += 1
    print("per level: " + ", ".join(f"{lv}: {right[lv]}/{total[lv]}" for lv in sorted(total)))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


if __name__ == "__main__":
    main()
