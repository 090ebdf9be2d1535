"""One engine start for consecutive users of one model: the evaluation of round r's merged solver leaves its engines
open and round r+1's collection samples on them; the round loop closes them before any other stage and at the end.

The fast tests drive the real pool and the real round loop with engines that start no process; the slow test checks
on the vLLM CPU engine that a collection on engines an evaluation used writes what a fresh engine writes."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import pytest

from prosetting.collectors import engine_pool
from prosetting.collectors.backends import Generation, Sampling
from prosetting.collectors.engine_pool import EnginePool, SharedEngines, Task, engine_key, solver_pool
from prosetting.collectors.placement import EngineSpec
from prosetting.collectors.trajectory_collector import run_collection
from prosetting.core.config import Config, load_config
from prosetting.core.context import RunContext, StageInterrupted
from prosetting.core.io import atomic_write_json, read_jsonl
from prosetting.core.state_manager import StateManager
from prosetting.managers import round_controller
from prosetting.processors.evaluation import EvalSet, evaluate_model
from prosetting.processors.stages import stage_named
from tests.conftest import needs_vllm, write_questions


class FakeEngine:
    """An engine that starts no process: ready at once, every answer "x"."""

    def __init__(self) -> None:
        self.spec, self.log_path, self.pid = EngineSpec(0, {}, label="fake engine"), None, os.getpid()
        self.starts, self.stopped, self._out = 0, False, None

    def start(self) -> None:
        self.starts += 1
        self._out = ("ready", None, None)

    def send(self, task: Task) -> None:
        self._out = ("done", task.id, [[Generation("x", 1, False)] * task.sampling.n for _ in task.chats])

    def poll(self, timeout: float):
        out, self._out = self._out, None
        return out

    def kill(self) -> None:
        self.stopped = True

    stop = kill


def fake_pool() -> EnginePool:
    return EnginePool([FakeEngine()])


def run_one(pool: EnginePool) -> None:
    pool.run([Task(0, [[{"role": "user", "content": "1+1=?"}]], Sampling())], lambda *_: None)


def model(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text("{}")
    return folder


# ---------------------------------------------------------------- the decision: reuse, replace, close
def test_the_same_key_reuses_the_open_pool_and_another_key_closes_it(tmp_path):
    cfg, shared = Config(), SharedEngines()
    a, b = engine_key(cfg, model(tmp_path, "a")), engine_key(cfg, model(tmp_path, "b"))
    first = shared.acquire(a, "eval_round_1", fake_pool)
    run_one(first)  # starts its engine
    assert shared.acquire(a, "collect_r2", fake_pool) is first  # no new pool, no new start
    assert (shared.opened, shared.reused, first.engines[0].starts) == (1, 1, 1)
    assert first.timings()["engine_start_seconds"] == 0.0  # the reusing stage paid no start
    second = shared.acquire(b, "eval_round_2", fake_pool)
    assert second is not first and first.closed and first.engines[0].stopped
    shared.close("before training")
    assert second.closed and shared.pool is None
    third = shared.acquire(b, "collect_r3", fake_pool)  # after a close, a fresh pool even for the same key
    assert third is not second and shared.opened == 3


def test_a_pool_mid_batch_or_with_a_dead_engine_is_not_handed_on(tmp_path):
    cfg, shared = Config(), SharedEngines()
    key = engine_key(cfg, model(tmp_path, "a"))
    pool = shared.acquire(key, "eval_round_1", fake_pool)
    run_one(pool)
    pool.slots[0].state = "dead"
    assert shared.acquire(key, "collect_r2", fake_pool) is not pool and pool.closed


def test_the_key_holds_the_model_and_engine_settings_not_the_sampling(tmp_path):
    folder = model(tmp_path, "m")
    cfg = Config()
    key = engine_key(cfg, folder)
    assert engine_key(cfg, str(folder) + "/") == key  # one folder, however it is spelled
    # sampling is per request: evaluation's and collection's temperatures, seeds and lengths share one engine
    sampling = dataclasses.replace(cfg, SAMPLING_TEMPERATURE=0.3, EVAL_TEMPERATURE=1.3, MAX_NEW_TOKENS=7, EVAL_K=9)
    assert engine_key(sampling, folder) == key
    for change in ({"VLLM_MAX_MODEL_LEN": 128}, {"VLLM_GPU_MEMORY_UTILIZATION": 0.5}, {"COLLECTION_CPU_ENGINES": 2}):
        assert engine_key(dataclasses.replace(cfg, **change), folder) != key, change
    assert engine_key(cfg, folder, kind="transformers") != engine_key(cfg, folder, kind="vllm")
    time.sleep(0.01)
    (folder / "model.safetensors").write_bytes(b"retrained")  # the same folder written again is another model
    assert engine_key(cfg, folder) != key


# ---------------------------------------------------------------- a stage's engines
def ctx_with_fake_engines(tmp_path: Path, monkeypatch, share: bool) -> RunContext:
    opened: list[EnginePool] = []

    def open_pool(*args, **kwargs):
        opened.append(fake_pool())
        return opened[-1]

    monkeypatch.setattr(engine_pool, "open_pool", open_pool)
    ctx = RunContext(cfg=Config(WORKSPACE_DIR=str(tmp_path / "ws")), sm=StateManager(tmp_path / "ws"))
    ctx.share_engines = share
    ctx.opened = opened
    return ctx


def test_a_stage_on_its_own_closes_its_engines_the_round_loop_keeps_them(tmp_path, monkeypatch):
    folder = model(tmp_path, "m")
    alone = ctx_with_fake_engines(tmp_path, monkeypatch, share=False)
    with solver_pool(alone, folder, "collect_r1") as pool:
        run_one(pool)
    assert pool.closed  # as before: a stage run by itself (a test, a benchmark) leaves no engine behind

    loop = ctx_with_fake_engines(tmp_path, monkeypatch, share=True)
    with solver_pool(loop, folder, "eval_round_1") as pool:
        run_one(pool)
    assert not pool.closed
    with solver_pool(loop, folder, "collect_r2") as again:
        assert again is pool and again.started
    with pytest.raises(StageInterrupted), solver_pool(loop, folder, "collect_r2") as pool:
        raise StageInterrupted("stop requested")
    assert pool.closed  # a stage that did not finish hands nothing on
    assert len(loop.opened) == 1
    loop.close_engines("the run ends")


def test_the_evaluation_leaves_its_engines_to_the_next_collection(tmp_path, monkeypatch):
    folder = model(tmp_path, "m")
    ctx = ctx_with_fake_engines(tmp_path, monkeypatch, share=True)
    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text(json.dumps({"question": "1+1=?", "answer": "2"}) + "\n")
    assert evaluate_model(ctx, "round_1", folder, [EvalSet("heldout", str(heldout), heldout)])["greedy"] == 0.0
    atomic_write_json(ctx.paths.questions(2), [{"id": "q1", "question": "1+2=?", "answer": "3"}])
    monkeypatch.setattr(ctx, "solver_for_round", lambda r: folder)
    stats = run_collection(ctx, 2)
    assert stats["engines_reused"] and stats["engine_start_seconds"] == 0.0 and len(ctx.opened) == 1
    ctx.close_engines()
    assert ctx.opened[0].closed


def test_the_round_loop_closes_the_engines_before_every_stage_that_does_not_sample(tmp_path, monkeypatch):
    """Collection may sample on the evaluation's engines; grading (the Generator's training), export, training and
    enhancement find them closed, and so does everything after the run, however it ends."""
    cfg = Config(WORKSPACE_DIR=str(tmp_path / "ws"), TOTAL_ROUNDS=1)
    controller = round_controller.RoundController(cfg)
    shared = engine_pool.shared_engines(controller.ctx)
    key = engine_key(cfg, model(tmp_path, "m"))
    seen: dict[str, bool] = {}

    def stage(name: str):
        def run(ctx, r):
            seen[name] = shared.pool is not None
            return {}

        return dataclasses.replace(stage_named(name), run=run)

    monkeypatch.setattr(round_controller, "STAGES", tuple(stage(s.name) for s in round_controller.STAGES))
    shared.acquire(key, "eval_baseline", fake_pool)  # what the baseline evaluation leaves open
    controller.run_round(1)
    # the round's evaluation opens its own (the next round's collection then shares them)
    assert seen == {
        "collect": True,
        "grade": False,
        "generator": False,
        "export": False,
        "train": False,
        "enhance": False,
        "evaluate": False,
    }

    pool = shared.acquire(key, "eval_round_1", fake_pool)
    monkeypatch.setattr(controller, "prepare", lambda: (_ for _ in ()).throw(KeyboardInterrupt))
    monkeypatch.setattr(round_controller.report, "write_summary", lambda cfg, sm, status, t0: {"status": status})
    assert controller.run()["status"] == "interrupted" and pool.closed  # Ctrl+C: closed on the way out


# ---------------------------------------------------------------- the real vLLM CPU engine
@needs_vllm
@pytest.mark.slow
def test_collection_on_the_evaluations_engine_writes_what_a_fresh_engine_writes(tiny_solver, tmp_path):
    """Resume determinism: a resumed run starts fresh engines, so a collection on engines the evaluation used must
    write the same attempts as one on a fresh engine (each batch's sampling is seeded by its own batch seed)."""
    questions = [json.loads(line) for line in write_questions(tmp_path / "q.jsonl", 8, seed=4).read_text().splitlines()]
    heldout = write_questions(tmp_path / "heldout.jsonl", 6, seed=8)

    def context(ws: Path, share: bool) -> RunContext:
        overrides = {
            "WORKSPACE_DIR": str(ws),
            "COLLECTION_BACKEND": "vllm",
            "VLLM_ENFORCE_EAGER": "true",  # eager engines (tests/conftest.py)
            "COLLECTION_BATCH_SIZE": "4",
            "ATTEMPTS_PER_QUESTION": "3",
            "MAX_NEW_TOKENS": "24",
            "EVAL_K": "2",
            "SEED": "5",
        }
        cfg, _ = load_config(env_file=None, environ={}, overrides=overrides)
        ctx = RunContext(cfg=dataclasses.replace(cfg, SOLVER_MODEL_PATH=str(tiny_solver)), sm=StateManager(ws))
        ctx.share_engines = share
        atomic_write_json(ctx.paths.questions(1), questions)
        return ctx

    fresh = run_collection(context(tmp_path / "fresh", share=False), 1)
    shared = context(tmp_path / "shared", share=True)
    try:
        evaluate_model(shared, "baseline", tiny_solver, [EvalSet("heldout", str(heldout), heldout)])
        reused = run_collection(shared, 1)
        pids = [e.pid for e in engine_pool.shared_engines(shared).pool.engines]
    finally:
        shared.close_engines()
    assert not fresh["engines_reused"] and reused["engines_reused"]
    a, b = (read_jsonl(tmp_path / ws / "data" / "round_01_trajectories.jsonl") for ws in ("fresh", "shared"))
    assert [[x["text"] for x in r["attempts"]] for r in a] == [[x["text"] for x in r["attempts"]] for r in b]
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
