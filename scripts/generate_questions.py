"""Write a question set with a trained Generator, every question checked as in the round (the paper's use:
synthetic data for other students).

    python scripts/generate_questions.py --generator workspace/checkpoints/generator_r3 \
        --from data/seed_questions.jsonl --n 200 --out new.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys

from prosetting.core.config import load_config
from prosetting.core.io import write_jsonl
from prosetting.core.questions import load_questions_file
from prosetting.processors.generator_writer import GeneratorWriter, generate_question_set
from prosetting.teacher_model import check_endpoint_settings, make_teacher


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--generator", required=True, help="Folder of a trained Generator (checkpoints/generator_rX).")
    p.add_argument("--from", dest="source", required=True, help="Questions file to write from (JSON or JSON Lines).")
    p.add_argument("--n", type=int, required=True, help="How many accepted questions to write.")
    p.add_argument("--out", default="generated_questions.jsonl", help="Where the accepted questions go.")
    p.add_argument("--backend", choices=("transformers", "vllm"), default="transformers", help="Generation engine.")
    p.add_argument("--seed", type=int, default=0, help="Sampling seed.")
    args = p.parse_args(argv)
    cfg = load_config()[0]  # TEACHER_* (the checker) and GENERATOR_* sampling from .env and the environment
    check_endpoint_settings(cfg)
    teacher = make_teacher(cfg)
    writer = GeneratorWriter(
        args.generator,
        backend=args.backend,
        seed=args.seed,
        temperature=cfg.GENERATOR_TEMPERATURE,
        top_p=cfg.GENERATOR_TOP_P,
        max_new_tokens=cfg.GENERATOR_MAX_NEW_TOKENS,
    )
    try:
        result = generate_question_set(writer, teacher, load_questions_file(args.source), args.n, args.seed)
    finally:
        writer.close()
    write_jsonl(args.out, result.pop("questions"))
    print(json.dumps({**result, "out": args.out}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
