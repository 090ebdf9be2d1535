"""The trained Generator as a question writer: same requests as the Teacher, served by the collection backend.

    writer = GeneratorWriter(model_dir, cfg)      # transformers (or vLLM) backend, per COLLECTION_BACKEND
    written = writer.write_questions(request)     # [{"question", "answer", "solution", "meta"}], unparsable dropped

Every question it writes is then checked by `teacher_model.question_check.check_question` exactly as
the Teacher's are; the caller counts rejections with their reason.
"""

from __future__ import annotations

import random
from pathlib import Path

from prosetting.collectors.backends import EngineSettings, Sampling, make_backend
from prosetting.processors.generator_data import generator_prompt, parse_completion
from prosetting.teacher_model.base import WriteRequest
from prosetting.teacher_model.question_check import check_written


class GeneratorWriter:
    name = "generator"

    def __init__(
        self,
        model_dir: str | Path,
        backend: str = "transformers",
        temperature: float = 0.7,
        max_new_tokens: int = 160,
        seed: int = 0,
        settings: EngineSettings | None = None,
    ):
        self.model_dir = str(model_dir)
        self.backend = make_backend(backend, self.model_dir, settings)  # vLLM: the collection engines' VLLM_* settings
        self.temperature, self.max_new_tokens, self.seed = temperature, max_new_tokens, seed
        self.unparsable = 0

    def prompts(self, request: WriteRequest) -> list[list[dict]]:
        prompt = generator_prompt(request.question, request.policy, request.failed_attempt)
        return [[{"role": "user", "content": prompt}]]

    def write_questions(self, request: WriteRequest) -> list[dict]:
        if request.count <= 0:
            return []
        sampling = Sampling(
            n=request.count,
            temperature=self.temperature,
            max_new_tokens=self.max_new_tokens,
            seed=request.rng.randrange(2**31),
        )
        out = []
        for gen in self.backend.generate(self.prompts(request), sampling)[0]:
            parsed = parse_completion(gen.text)
            if parsed is None:
                self.unparsable += 1
                out.append(
                    {
                        "question": "",
                        "answer": "",
                        "solution": None,
                        "meta": {"writer": "generator", "raw": gen.text[:200]},
                    }
                )
                continue
            out.append({**parsed, "meta": {"writer": "generator", "generator": self.model_dir}})
        return out

    def close(self) -> None:
        self.backend.close()


def generate_question_set(writer: GeneratorWriter, teacher, sources: list[dict], n: int, seed: int = 0) -> dict:
    """Up to n checked questions written from `sources` (cycled), as harder variants; rejections by reason."""
    rng = random.Random(seed)
    accepted: list[dict] = []
    reasons: dict[str, int] = {}
    written, seen = 0, {q["question"] for q in sources}
    for i in range(max(n * 4, len(sources))):  # bounded: at most four tries per wanted question
        if len(accepted) >= n:
            break
        source = sources[i % len(sources)]
        req = WriteRequest(question=source, zone="mastered", success_rate=1.0, count=1, rng=rng)
        new = writer.write_questions(req)
        ok, rejected = check_written(teacher, new, source, seen)
        written += len(new)
        for w in ok:
            accepted.append(
                {
                    "id": f"gen-{len(accepted):05d}",
                    **w,
                    "parent_id": source.get("id"),
                    "origin": "generator",
                    "writer": "generator",
                }
            )
        for x in rejected:
            reasons[x["reason"]] = reasons.get(x["reason"], 0) + 1
    return {
        "questions": accepted,
        "written": written,
        "accepted": len(accepted),
        "acceptance_rate": round(len(accepted) / written, 4) if written else None,
        "rejected": reasons,
    }
