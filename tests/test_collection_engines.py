"""Collection on engines: placement, in-order merge, worker death and hangs, and the real vLLM CPU engine
(2 engines against 1, SIGKILL and resume, Ray actors against local workers)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prosetting.collectors.backends import EngineSettings, Sampling, model_max_len, vllm_engine_kwargs
from prosetting.collectors.engine_pool import CollectionFailed, EnginePool, LocalEngine, Task
from prosetting.collectors.placement import EngineSpec, plan_engines
from prosetting.collectors.trajectory_collector import InOrderMerge, part_file, run_collection
from prosetting.core.config import Config, ConfigError, load_config
from prosetting.core.context import RunContext
from prosetting.core.io import atomic_write_json, read_json, read_jsonl, write_jsonl
from prosetting.core.state_manager import StateManager
from prosetting.core.text import solver_messages
from prosetting.processors.stages import check_settings
from tests.conftest import needs_ray, needs_vllm, write_questions


# ---------------------------------------------------------------- placement and settings
def test_one_engine_per_tensor_parallel_group():
    specs = plan_engines(list(range(8)), tensor_parallel_size=2)
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in specs] == ["0,1", "2,3", "4,5", "6,7"]
    assert all(s.num_gpus == 2 for s in specs)
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in plan_engines([3, 5], 1)] == ["3", "5"]
    with pytest.raises(ValueError, match="TENSOR_PARALLEL_SIZE: 3 does not divide the 8 GPUs"):
        plan_engines(list(range(8)), tensor_parallel_size=3)


def test_cpu_engines_get_disjoint_cores():
    specs = plan_engines([], 1, cpu_engines=2, cpu_cores=[0, 1, 2, 3])
    assert [s.env["VLLM_CPU_OMP_THREADS_BIND"] for s in specs] == ["0,1", "2,3"]
    assert all(s.env["CUDA_VISIBLE_DEVICES"] == "" for s in specs)
    with pytest.raises(ValueError, match="COLLECTION_CPU_ENGINES"):
        plan_engines([], 1, cpu_engines=3, cpu_cores=[0, 1])


def test_gpu_list_is_validated_before_anything_runs():
    with pytest.raises(ConfigError, match="TENSOR_PARALLEL_SIZE: 2 does not divide the 3 GPUs"):
        check_settings(
            load_config(None, environ={}, overrides={"PHYSICAL_SOLVER_GPU": "0,1,2", "TENSOR_PARALLEL_SIZE": "2"})[0]
        )
    with pytest.raises(ConfigError, match="PHYSICAL_SOLVER_GPU: expected comma-separated GPU ids"):
        check_settings(load_config(env_file=None, environ={}, overrides={"PHYSICAL_SOLVER_GPU": "0,a"})[0])


def test_max_model_len_comes_from_the_model(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 512}))
    assert model_max_len(str(tmp_path)) == 512
    kwargs = vllm_engine_kwargs(str(tmp_path), EngineSettings(), on_gpu=False)
    assert kwargs["max_model_len"] == 512 and kwargs["gpu_memory_utilization"] <= 0.3 and kwargs["dtype"] == "float32"
    with pytest.raises(ValueError, match="VLLM_MAX_MODEL_LEN: 4096 is above the model's max_position_embeddings"):
        vllm_engine_kwargs(str(tmp_path), EngineSettings(max_model_len=4096), on_gpu=True)
    gpu = vllm_engine_kwargs(str(tmp_path), EngineSettings(max_num_seqs=64, tensor_parallel_size=2), on_gpu=True)
    assert gpu["max_num_seqs"] == 64 and gpu["tensor_parallel_size"] == 2 and gpu["gpu_memory_utilization"] == 0.85


def test_batches_merge_in_pool_order_whatever_order_they_finish(tmp_path):
    batches = [[{"id": f"q{b}{i}"} for i in range(2)] for b in range(3)]
    paths = StateManager(tmp_path).paths
    out, parts = paths.trajectories(1), paths.trajectory_parts(1)
    parts.mkdir(parents=True)
    merge = InOrderMerge(paths, 1, batches)
    for b in (2, 0, 1):
        write_jsonl(part_file(parts, b), [{"question_id": q["id"]} for q in batches[b]])
        merge.flush()
        if b == 2:
            assert not out.exists()  # batch 2 waits for 0 and 1
    assert [r["question_id"] for r in read_jsonl(out)] == ["q00", "q01", "q10", "q11", "q20", "q21"]
    assert not list(parts.iterdir())
    # a kill during an append left half a batch in the file and its part file: only the rest is added
    write_jsonl(out, [{"question_id": "q00"}])
    write_jsonl(part_file(parts, 0), [{"question_id": q["id"]} for q in batches[0]])
    InOrderMerge(paths, 1, batches[:1]).flush()
    assert [r["question_id"] for r in read_jsonl(out)] == ["q00", "q01"]


# ------------------------------------------------------------ worker processes (transformers engines: seconds to start)
def _tasks(n: int, per: int = 2) -> list[Task]:
    return [
        Task(i, [solver_messages(f"{i}{j}+1=?") for j in range(per)], Sampling(n=2, max_new_tokens=8, seed=i))
        for i in range(n)
    ]


def _local_pool(model: Path, tmp_path: Path, engines: int = 1, **kwargs) -> EnginePool:
    handles = [
        LocalEngine(
            EngineSpec(k, {"CUDA_VISIBLE_DEVICES": ""}, label=f"engine {k}"),
            "transformers",
            str(model),
            EngineSettings(),
            tmp_path / f"engine{k}.log",
        )
        for k in range(engines)
    ]
    return EnginePool(handles, **kwargs)


@pytest.mark.slow
def test_a_killed_worker_is_reported_and_its_batch_retried(tiny_solver, tmp_path):
    pool = _local_pool(tiny_solver, tmp_path)
    done: dict[int, list] = {}

    def on_result(task, outs):
        done[task.id] = outs
        if len(done) == 1:
            os.kill(pool.engines[0].pid, signal.SIGKILL)  # dies between batches, as an OOM kill would

    try:
        pool.run(_tasks(4), on_result)
    finally:
        pool.close()
    assert sorted(done) == [0, 1, 2, 3] and all(len(o) == 2 for o in done.values())
    # found dead when the next batch is sent ("is gone": the kill already closed its pipe) or when its answer is
    # awaited ("exited"): which one depends on how fast the killed process goes
    reason = pool.failures[0]["reason"]
    assert len(pool.failures) == 1 and ("exited" in reason or "the worker is gone" in reason), reason
    assert pool.failures[0]["log"].endswith("engine0.log")


@pytest.mark.slow
def test_a_hung_worker_is_killed_and_its_batch_goes_to_a_fresh_one(tiny_solver, tmp_path, caplog):
    # The timeout is far above a working batch's time even on a loaded machine (a batch takes well under a
    # second idle): only the stopped worker can reach it.
    pool = _local_pool(tiny_solver, tmp_path, batch_timeout=20.0)
    done: dict[int, list] = {}
    stopped: list[int] = []

    def on_result(task, outs):
        done[task.id] = outs
        if not stopped:
            stopped.append(pool.engines[0].pid)
            os.kill(stopped[0], signal.SIGSTOP)  # the next batch never comes back

    try:
        pool.run(_tasks(3), on_result)
    finally:
        pool.close()
    assert sorted(done) == [0, 1, 2]
    assert "hung on batch 1 within 20s (COLLECTION_BATCH_TIMEOUT)" in pool.failures[0]["reason"]
    assert pool.engines[0].pid != stopped[0]
    with pytest.raises(ProcessLookupError):
        os.kill(stopped[0], 0)  # the hung worker is gone, not left stopped


@pytest.mark.slow
def test_an_engine_that_cannot_start_fails_the_stage_with_its_log(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    pool = _local_pool(broken, tmp_path, max_retries=1)
    with pytest.raises(CollectionFailed, match="every engine failed.*could not start") as err:
        try:
            pool.run(_tasks(1), lambda t, o: None)
        finally:
            pool.close()
    assert "engine0.log" in str(err.value) and "Traceback" in str(err.value)
    assert len(pool.failures) == 2


# ---------------------------------------------------------------- the real vLLM CPU engine
def _collect_cfg(ws: Path, model: Path, **overrides) -> Config:
    settings = {
        "WORKSPACE_DIR": str(ws),
        "COLLECTION_BACKEND": "vllm",
        "VLLM_ENFORCE_EAGER": "true",  # eager engines (tests/conftest.py): 3 s a start, not 38
        "COLLECTION_BATCH_SIZE": "4",
        "ATTEMPTS_PER_QUESTION": "3",
        "MAX_NEW_TOKENS": "24",
        "SEED": "5",
        **{k: str(v) for k, v in overrides.items()},
    }
    cfg, _ = load_config(env_file=None, environ={}, overrides=settings)
    return dataclasses.replace(cfg, SOLVER_MODEL_PATH=str(model))


def _collect(ws: Path, model: Path, questions: list[dict], **overrides) -> dict:
    cfg = _collect_cfg(ws, model, **overrides)
    sm = StateManager(cfg.workspace)
    if not sm.paths.questions(1).exists():
        atomic_write_json(sm.paths.questions(1), questions)
    return run_collection(RunContext(cfg=cfg, sm=sm), 1)


def _rows(ws: Path) -> list[dict]:
    return read_jsonl(ws / "data" / "round_01_trajectories.jsonl")


@pytest.fixture(scope="module")
def pool_questions(tmp_path_factory) -> list[dict]:
    path = write_questions(tmp_path_factory.mktemp("q") / "q.jsonl", 14, seed=3)
    return [json.loads(line) for line in path.read_text().splitlines()]


@needs_vllm
@pytest.mark.slow
def test_two_vllm_engines_collect_what_one_does(tiny_solver, pool_questions, tmp_path):
    one = _collect(tmp_path / "one", tiny_solver, pool_questions)
    two = _collect(tmp_path / "two", tiny_solver, pool_questions, COLLECTION_CPU_ENGINES=2)
    assert (one["engines"], two["engines"], one["batches"]) == (1, 2, 4)
    a, b = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    assert [r["question_id"] for r in a] == [q["id"] for q in pool_questions] == [r["question_id"] for r in b]
    assert all(len(r["attempts"]) == 3 for r in a + b)
    # per-batch seeds: which engine ran a batch does not change what it generated
    assert [[x["text"] for x in r["attempts"]] for r in a] == [[x["text"] for x in r["attempts"]] for r in b]
    attempt = a[0]["attempts"][0]
    assert attempt["finish_reason"] in ("stop", "length") and attempt["truncated"] == (
        attempt["finish_reason"] == "length"
    )
    assert not (tmp_path / "one" / "data" / "round_01_trajectories.parts").exists()
    assert list((tmp_path / "two" / "logs").glob("collect_r1_engine1.log"))


@needs_vllm
@pytest.mark.slow
def test_sigkill_mid_collection_resumes_without_regenerating_finished_batches(tiny_solver, pool_questions, tmp_path):
    ws = tmp_path / "ws"
    reference = _collect(tmp_path / "ref", tiny_solver, pool_questions, COLLECTION_BATCH_SIZE=2)
    cfg = _collect_cfg(ws, tiny_solver, COLLECTION_BATCH_SIZE=2)
    atomic_write_json(StateManager(cfg.workspace).paths.questions(1), pool_questions)
    keys = (
        "WORKSPACE_DIR",
        "COLLECTION_BACKEND",
        "COLLECTION_BATCH_SIZE",
        "ATTEMPTS_PER_QUESTION",
        "MAX_NEW_TOKENS",
        "SEED",
        "VLLM_ENFORCE_EAGER",
    )
    overrides = {k: str(v) for k, v in cfg.to_dict(redact=False).items() if k in keys}
    script = (
        "import dataclasses, sys\n"
        "from prosetting.core.config import load_config\n"
        "from prosetting.core.context import RunContext\n"
        "from prosetting.core.state_manager import StateManager\n"
        "from prosetting.collectors.trajectory_collector import run_collection\n"
        "if __name__ == '__main__':\n"
        f"    cfg, _ = load_config(env_file=None, environ={{}}, overrides={json.dumps(overrides)})\n"
        f"    cfg = dataclasses.replace(cfg, SOLVER_MODEL_PATH={str(tiny_solver)!r})\n"
        "    run_collection(RunContext(cfg=cfg, sm=StateManager(cfg.workspace)), 1)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    out = ws / "data" / "round_01_trajectories.jsonl"
    deadline = time.time() + 400
    while time.time() < deadline and len(read_jsonl(out)) < 4 and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # a kill between a batch's append to the file and the removal of its part leaves its rows in both: count ids
    saved = {row["question_id"] for row in read_jsonl(out)} | {
        row["question_id"]
        for p in (ws / "data" / "round_01_trajectories.parts").glob("*.jsonl")
        for row in read_jsonl(p)
    }
    assert 4 <= len(saved) < len(pool_questions), "the kill should land mid-collection"
    batches = [pool_questions[i : i + 2] for i in range(0, len(pool_questions), 2)]
    finished = sum(all(q["id"] in saved for q in batch) for batch in batches)
    stats = _collect(ws, tiny_solver, pool_questions, COLLECTION_BATCH_SIZE=2)
    assert stats["batches_reused"] == finished and stats["batches_generated"] == 7 - finished
    rows = _rows(ws)
    assert [r["question_id"] for r in rows] == [q["id"] for q in pool_questions]
    assert all(len(r["attempts"]) == 3 for r in rows)
    assert reference["questions"] == len(rows)
    # the resumed file is the uninterrupted one, byte for byte (batch seeds, not engine state, decide the samples)
    assert out.read_text() == (tmp_path / "ref" / "data" / "round_01_trajectories.jsonl").read_text()


@needs_vllm
@pytest.mark.slow
@needs_ray
def test_ray_actors_write_the_files_the_local_executor_writes(tiny_solver, pool_questions, tmp_path):
    local = _collect(tmp_path / "local", tiny_solver, pool_questions, COLLECTION_CPU_ENGINES=2)
    ray_stats = _collect(
        tmp_path / "ray", tiny_solver, pool_questions, COLLECTION_CPU_ENGINES=2, COLLECTION_EXECUTOR="ray"
    )
    assert local["engines"] == ray_stats["engines"] == 2
    a = (tmp_path / "local" / "data" / "round_01_trajectories.jsonl").read_text()
    b = (tmp_path / "ray" / "data" / "round_01_trajectories.jsonl").read_text()
    assert a == b
    import ray

    assert not ray.is_initialized()  # the local instance it started is stopped
    assert read_json(tmp_path / "ray" / "data" / "round_01_questions.json") == pool_questions


def test_engines_that_cannot_start_fail_before_any_stage(tmp_path):
    from prosetting.core.devices import GpuInfo

    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"max_position_embeddings": 4096, "torch_dtype": "bfloat16"}))
    with open(model / "model.safetensors", "wb") as f:
        f.truncate(16 * 2**30)  # a sparse 16 GiB file: an 8B solver in bf16
    gpus = [GpuInfo(i, "H100", 81559, 80000) for i in range(2)]
    cfg = dataclasses.replace(Config(), COLLECTION_BACKEND="vllm")
    from prosetting.collectors.placement import check_engines

    assert check_engines(cfg, model, gpus) == []
    small = [GpuInfo(i, "T4", 15360, 15000) for i in range(2)]
    ((problem, fix),) = check_engines(cfg, model, small)
    assert "16.0 GiB" in problem and "raise TENSOR_PARALLEL_SIZE" in fix
    assert check_engines(dataclasses.replace(cfg, TENSOR_PARALLEL_SIZE=2), model, small) == []
    ((problem, fix),) = check_engines(dataclasses.replace(cfg, PHYSICAL_SOLVER_GPU="0,7"), model, gpus)
    assert "names GPU(s) [7] that are not there" in problem
    busy = [GpuInfo(0, "H100", 81559, 20000)]
    ((problem, fix),) = check_engines(dataclasses.replace(cfg, PHYSICAL_SOLVER_GPU="0"), model, busy)
    assert "GPU 0 has 19.5 GiB free" in problem and "lower VLLM_GPU_MEMORY_UTILIZATION" in fix
    ((problem, _),) = check_engines(dataclasses.replace(cfg, VLLM_MAX_MODEL_LEN=8192), model, gpus)
    assert "VLLM_MAX_MODEL_LEN=8192" in problem


@pytest.mark.slow  # starts a subprocess
@needs_vllm  # the configuration check refuses COLLECTION_BACKEND=vllm before the GPUs where vLLM is absent
def test_the_health_check_names_the_absent_gpu(tmp_path):
    out = subprocess.run(
        [sys.executable, "utils/status_checker.py", "--quick", "--workspace", str(tmp_path / "ws")],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLLECTION_BACKEND": "vllm", "PHYSICAL_SOLVER_GPU": "3"},
    )
    assert out.returncode != 0
    assert "PHYSICAL_SOLVER_GPU='3' names GPU" in out.stdout or "names GPUs that are not visible" in out.stdout


def test_every_engine_kind_is_an_engine(tmp_path):
    """The pool's engine interface (engine_pool.Engine) is declared, and each kind of engine has it."""
    from prosetting.collectors.backends import EngineSettings
    from prosetting.collectors.engine_pool import Engine, InProcessEngine, LocalEngine, RayEngine

    spec = EngineSpec(0, {}, label="engine 0")
    for kind in (LocalEngine, InProcessEngine, RayEngine):  # built, not started
        engine = kind(spec, "transformers", str(tmp_path), EngineSettings(), tmp_path / "e.log")
        assert isinstance(engine, Engine), kind.__name__
