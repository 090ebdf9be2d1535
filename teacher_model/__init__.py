"""Teachers: grade attempts and write new questions (see base.py for the interface)."""

from __future__ import annotations


def make_teacher(cfg):
    if cfg.TEACHER_BACKEND == "rule":
        from prosetting.teacher_model.rule_teacher import RuleTeacher

        return RuleTeacher()
    if cfg.TEACHER_BACKEND == "builtin":
        from prosetting.teacher_model.arithmetic import BuiltinTeacher

        return BuiltinTeacher()
    if cfg.TEACHER_BACKEND == "llm":
        from prosetting.teacher_model.llm_teacher import LLMTeacher

        return LLMTeacher.from_config(cfg)
    raise ValueError(f"TEACHER_BACKEND: unknown teacher {cfg.TEACHER_BACKEND!r}")
