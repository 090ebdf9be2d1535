"""Teachers: grade attempts and write new questions (see base.py for the interface).

`make_teacher` imports only the Teacher TEACHER_BACKEND names: the LLM Teacher pulls in openai and httpx2,
which a run with the rule or built-in Teacher never loads.
"""

from __future__ import annotations

from contextlib import nullcontext

from prosetting.teacher_model.base import Metered


def check_endpoint_settings(cfg) -> None:
    """The checks across the keys of "Teacher" (Stage.checks of the stages that call it); raises ConfigError naming
    the key. Whether the endpoint answers is the health check's (utils/health_endpoints.py)."""
    from prosetting.core.config import ConfigError

    if cfg.TEACHER_BACKEND != "llm":
        return
    for key in ("TEACHER_BASE_URL", "TEACHER_MODEL_NAME"):
        if not getattr(cfg, key):
            raise ConfigError(f"{key}: required when TEACHER_BACKEND=llm (set it in .env or the environment)")
    if not cfg.TEACHER_BASE_URL.startswith(("http://", "https://")):
        raise ConfigError(f"TEACHER_BASE_URL: expected an http(s) URL, got {cfg.TEACHER_BASE_URL!r}")
    if cfg.TEACHER_WRITER_BASE_URL and not cfg.TEACHER_WRITER_BASE_URL.startswith(("http://", "https://")):
        raise ConfigError(
            f"TEACHER_WRITER_BASE_URL: expected an http(s) URL (or empty for TEACHER_BASE_URL), "
            f"got {cfg.TEACHER_WRITER_BASE_URL!r}"
        )


def make_teacher(cfg):
    if cfg.TEACHER_BACKEND == "rule":
        from prosetting.teacher_model.rule_teacher import RuleTeacher

        return RuleTeacher()
    if cfg.TEACHER_BACKEND == "builtin" and cfg.BUILTIN_TASK == "word_problems":
        from prosetting.teacher_model.word_problems import WordProblemTeacher

        return WordProblemTeacher(harder=cfg.HARDER_VARIANT)
    if cfg.TEACHER_BACKEND == "builtin":
        from prosetting.teacher_model.arithmetic import BuiltinTeacher

        return BuiltinTeacher(harder=cfg.HARDER_VARIANT)
    if cfg.TEACHER_BACKEND == "llm":
        from prosetting.teacher_model.llm_teacher import LLMTeacher

        return LLMTeacher.from_config(cfg)
    raise ValueError(f"TEACHER_BACKEND: unknown teacher {cfg.TEACHER_BACKEND!r}")


def teacher_for(ctx):
    """The run's Teacher: `ctx.teacher` when given (RunContext(teacher=...)), else built from the configuration on
    first use and kept on the context, so every stage of a run shares its cache, limits and counters."""
    if ctx.teacher is None:
        ctx.teacher = make_teacher(ctx.cfg)
    return ctx.teacher


def watching(teacher, stage: str):
    """A context in which a Teacher that makes calls (Metered) counts `stage`'s replies on their own and stops the
    stage once too many are unusable; nothing for Teachers that make no calls."""
    return teacher.watching(stage) if isinstance(teacher, Metered) else nullcontext()


def teacher_stats(teacher) -> dict[str, int]:
    """The Teacher's counters now (calls, tokens, cache hits, ...); {} for teachers that make no calls."""
    return teacher.stats() if isinstance(teacher, Metered) else {}


def usage_since(teacher, before: dict[str, int], cfg) -> dict:
    """What the Teacher did since `before`: calls, cache hits, tokens, cost (when priced), grading counts."""
    now = teacher_stats(teacher)
    delta = {k: now.get(k, 0) - before.get(k, 0) for k in now if now.get(k, 0) - before.get(k, 0)}
    if not now:
        return {}
    for k in ("calls", "cache_hits", "prompt_tokens", "completion_tokens"):
        delta.setdefault(k, 0)
    if cfg.TEACHER_PRICE_PER_MTOK_IN or cfg.TEACHER_PRICE_PER_MTOK_OUT:
        delta["cost"] = round(
            delta["prompt_tokens"] / 1e6 * cfg.TEACHER_PRICE_PER_MTOK_IN
            + delta["completion_tokens"] / 1e6 * cfg.TEACHER_PRICE_PER_MTOK_OUT,
            6,
        )
    if delta.get("both_judged"):
        delta["agreement"] = round(delta.get("agreed", 0) / delta["both_judged"], 4)
    return delta
