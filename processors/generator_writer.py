"""The trained Generator as a question writer: same requests as the Teacher, served by the collection backend.

    writer = GeneratorWriter.from_config(model_dir, cfg)  # COLLECTION_BACKEND's engine, GENERATOR_* sampling
    written = writer.write_questions(request)     # [{"question", "answer", "solution", "meta"}], unparsable dropped

Its sampling is GENERATOR_TEMPERATURE, GENERATOR_TOP_P and GENERATOR_MAX_NEW_TOKENS (Config's defaults where a
caller gives none).

Every question it writes is then checked by `teacher_model.question_check.check_question` exactly as
the Teacher's are; the caller counts rejections with their reason.
"""

from __future__ import annotations

import random
from pathlib import Path

from prosetting.collectors.backends import EngineSettings, Sampling, make_backend
from prosetting.core.config import Config, default_of
from prosetting.processors.generator_data import generator_prompt, parse_completion
from prosetting.teacher_model.base import WriteRequest
from prosetting.teacher_model.question_check import check_written


class GeneratorWriter:
    name = "generator"

    def __init__(
        self,
        model_dir: str | Path,
        *,
        backend: str = "transformers",
        temperature: float | None = None,
        max_new_tokens: int | None = None,
        seed: int = 0,
        settings: EngineSettings | None = None,
        top_p: float | None = None,
    ):
        self.model_dir = str(model_dir)
        self.backend = make_backend(backend, self.model_dir, settings)  # vLLM: the collection engines' VLLM_* settings
        self.temperature = default_of("GENERATOR_TEMPERATURE") if temperature is None else temperature
        self.top_p = default_of("GENERATOR_TOP_P") if top_p is None else top_p
        self.max_new_tokens = default_of("GENERATOR_MAX_NEW_TOKENS") if max_new_tokens is None else max_new_tokens
        self.seed = seed
        self.unparsable = 0

    @classmethod
    def from_config(cls, model_dir: str | Path, cfg: Config, backend: str | None = None) -> GeneratorWriter:
        """The round's writer: the collection backend (or `backend`), its engine settings, GENERATOR_* sampling."""
        return cls(
            model_dir,
            backend=backend or cfg.COLLECTION_BACKEND,
            temperature=cfg.GENERATOR_TEMPERATURE,
            top_p=cfg.GENERATOR_TOP_P,
            max_new_tokens=cfg.GENERATOR_MAX_NEW_TOKENS,
            seed=cfg.SEED,
            settings=EngineSettings.from_config(cfg),
        )

    def prompts(self, request: WriteRequest) -> list[list[dict]]:
        prompt = generator_prompt(request.question, request.policy, request.failed_attempt)
        return [[{"role": "user", "content": prompt}]]

    def write_questions(self, request: WriteRequest) -> list[dict]:
        if request.count <= 0:
            return []
        sampling = Sampling(
            n=request.count,
            temperature=self.temperature,
            top_p=self.top_p,
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
