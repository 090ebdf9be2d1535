"""Data-parallel generation: one engine per group of TENSOR_PARALLEL_SIZE GPUs, each in a worker process
(COLLECTION_EXECUTOR=local) or a Ray actor (COLLECTION_EXECUTOR=ray), pulling fixed batches.

    pool = open_pool(cfg, "checkpoints/merged_solver_r2", log_dir=paths.logs, label="collect_r3")
    try:
        pool.run(tasks, on_result=save_batch)        # tasks: [Task(id, chats, sampling)], any order back
    finally:
        pool.close()                                  # every engine process exits: GPU memory is free

Between stages the round loop keeps one pool open while the next user samples the same model: held-out
evaluation of round r's merged solver and round r+1's collection share one start (`SharedEngines`, on the run's
context; `solver_pool` is how a stage asks for engines). The loop closes them before any other stage (training
needs the devices) and when the run ends, however it ends.

The engines are fully independent (no vLLM data-parallel coupling: its ranks hang when one finishes
early), each with only its own CUDA_VISIBLE_DEVICES, or on the CPU its own cores through
VLLM_CPU_OMP_THREADS_BIND. A worker that dies (OOM, CUDA error, killed) or hangs past
COLLECTION_BATCH_TIMEOUT is reported with the tail of its log, killed, and its batch goes to a fresh
worker; a batch that fails COLLECTION_MAX_BATCH_RETRIES + 1 times fails the stage, whose retry and
resume the round loop handles. The transformers backend runs in the stage's own process by default.
Where each engine runs, and whether it can start at all, is decided in `placement.py`.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import multiprocessing
import os
import signal
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from prosetting.collectors.backends import EngineSettings, Generation, Sampling, make_backend, resolve_backend
from prosetting.collectors.placement import EngineSpec, plan_engines, solver_gpus
from prosetting.core.context import RunContext
from prosetting.core.io import tail_text

log = logging.getLogger(__name__)


class CollectionFailed(RuntimeError):
    """A batch failed on every try, or no engine could start; the message carries the worker's log tail."""


class EngineDied(RuntimeError):
    pass


@dataclass(frozen=True)
class Task:
    id: int
    chats: list
    sampling: Sampling


# ---------------------------------------------------------------- the worker (one engine)
def _die_with_parent() -> None:
    """Linux: this process gets SIGKILL when its parent dies, so a killed run leaves no engine behind."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _worker_main(conn, env: dict, log_path: str, kind: str, model_dir: str, settings: EngineSettings) -> None:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the whole process group: the stage decides
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.environ.update(env)  # before torch or vLLM is imported: this engine sees only its own devices
    try:
        backend = make_backend(kind, model_dir, settings)
    except BaseException:
        traceback.print_exc()
        conn.send(("failed", None, traceback.format_exc()))
        return
    conn.send(("ready", None, None))
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            break
        if msg[0] == "stop":
            break
        _, task_id, chats, sampling = msg
        try:
            conn.send(("done", task_id, backend.generate(chats, sampling)))
        except BaseException:
            traceback.print_exc()
            conn.send(("error", task_id, traceback.format_exc()))
            break  # an engine that raised mid-batch is not trusted with the next one
    backend.close()


@runtime_checkable
class Engine(Protocol):
    """What the pool asks of one engine, wherever it runs (a worker process, this process, a Ray actor).

    `start` begins loading the model and returns at once; `poll(timeout)` then answers ("ready", None, None) once
    it can take a batch. `send(task)` hands it one task; `poll` answers ("done", task id, generations) or
    ("error", task id, message), None while it is still at work, and raises EngineDied when the engine is gone.
    `stop` lets it finish and free its memory; `kill` ends it now. `pid` names its process in logs and errors."""

    spec: EngineSpec
    pid: int | None

    def start(self) -> None: ...

    def send(self, task: Task) -> None: ...

    def poll(self, timeout: float) -> tuple | None: ...

    def kill(self) -> None: ...

    def stop(self) -> None: ...


class LocalEngine:
    """One engine in a spawned worker process, spoken to over a pipe."""

    def __init__(self, spec: EngineSpec, kind: str, model_dir: str, settings: EngineSettings, log_path: Path):
        self.spec, self.kind, self.model_dir, self.settings, self.log_path = spec, kind, model_dir, settings, log_path
        self.proc = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=_worker_main,
            name=f"prosetting-engine-{self.spec.index}",
            args=(child, self.spec.env, str(self.log_path), self.kind, self.model_dir, self.settings),
        )
        self.proc.start()
        child.close()

    def send(self, task: Task) -> None:
        try:
            self.conn.send(("task", task.id, task.chats, task.sampling))
        except (BrokenPipeError, OSError) as exc:
            raise EngineDied(f"{self.spec.label}: the worker is gone ({exc})") from None

    def poll(self, timeout: float) -> tuple | None:
        try:
            if self.conn.poll(timeout):
                return self.conn.recv()
        except (EOFError, OSError):
            pass
        else:
            if self.proc.is_alive():
                return None
        self.proc.join(timeout=5)
        raise EngineDied(f"{self.spec.label}: the worker process exited (exit code {self.proc.exitcode})")

    def kill(self) -> None:
        if self.proc and self.proc.is_alive():
            self.proc.kill()
        if self.proc:
            self.proc.join(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.is_alive():
            try:
                self.conn.send(("stop", None, None, None))
            except OSError:
                pass
            self.proc.join(timeout=60)
        self.kill()


class InProcessEngine:
    """The engine in the stage's own process: the transformers default, with no start-up to pay twice."""

    def __init__(self, spec: EngineSpec, kind: str, model_dir: str, settings: EngineSettings, log_path: Path | None):
        self.spec, self.kind, self.model_dir, self.settings, self.log_path = spec, kind, model_dir, settings, None
        self.backend, self._out = None, None
        self.pid = os.getpid()

    def start(self) -> None:
        self.backend = make_backend(self.kind, self.model_dir, self.settings)
        self._out = ("ready", None, None)

    def send(self, task: Task) -> None:
        self._out = ("done", task.id, self.backend.generate(task.chats, task.sampling))

    def poll(self, timeout: float) -> tuple | None:
        out, self._out = self._out, None
        return out

    def kill(self) -> None:
        self.stop()

    def stop(self) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None


class RayEngine:
    """One engine as a Ray actor with its GPU resources (or one CPU and its core binding)."""

    _actor_class = None

    def __init__(self, spec: EngineSpec, kind: str, model_dir: str, settings: EngineSettings, log_path: Path):
        self.spec, self.kind, self.model_dir, self.settings, self.log_path = spec, kind, model_dir, settings, log_path
        self.actor, self.ref, self.task_id, self.pid = None, None, None, None

    @classmethod
    def actor_class(cls):
        if cls._actor_class is None:
            import ray

            @ray.remote
            class EngineActor:
                def __init__(self, env, log_path, kind, model_dir, settings):
                    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                    os.dup2(fd, 1)
                    os.dup2(fd, 2)
                    os.environ.update({k: v for k, v in env.items() if k != "CUDA_VISIBLE_DEVICES"})  # Ray assigns GPUs
                    self.backend = make_backend(kind, model_dir, settings)

                def pid(self):
                    return os.getpid()

                def generate(self, chats, sampling):
                    return self.backend.generate(chats, sampling)

            cls._actor_class = EngineActor
        return cls._actor_class

    def start(self) -> None:

        opts = {
            "num_gpus": self.spec.num_gpus,
            "num_cpus": 1,
            "max_restarts": 0,
            "runtime_env": {"env_vars": {k: v for k, v in self.spec.env.items() if k != "CUDA_VISIBLE_DEVICES"}},
        }
        self.actor = (
            self.actor_class()
            .options(**opts)
            .remote(self.spec.env, str(self.log_path), self.kind, self.model_dir, self.settings)
        )
        self.ref, self.task_id = self.actor.pid.remote(), "ready"

    def send(self, task: Task) -> None:
        self.ref, self.task_id = self.actor.generate.remote(task.chats, task.sampling), task.id

    def poll(self, timeout: float) -> tuple | None:
        import ray

        ready, _ = ray.wait([self.ref], timeout=timeout)
        if not ready:
            return None
        try:
            value = ray.get(ready[0])
        except ray.exceptions.RayActorError as exc:
            raise EngineDied(f"{self.spec.label}: the Ray actor died ({type(exc).__name__})") from None
        except ray.exceptions.RayTaskError as exc:
            return ("error", self.task_id, str(exc))
        if self.task_id == "ready":
            self.pid = value
            return ("ready", None, None)
        return ("done", self.task_id, value)

    def kill(self) -> None:
        import ray

        if self.actor is not None:
            ray.kill(self.actor, no_restart=True)
            self.actor = None

    stop = kill


# ---------------------------------------------------------------- the dispatcher
@dataclass
class _Slot:
    engine: Engine
    state: str = "starting"  # starting | idle | busy | dead
    since: float = field(default_factory=time.monotonic)
    task: Task | None = None
    start_failures: int = 0


class EnginePool:
    """Engines that pull tasks until none is left; also a GenerationBackend (`generate`) for evaluation."""

    def __init__(
        self,
        engines: list[Engine],
        *,
        batch_timeout: float = 1800.0,
        start_timeout: float = 1800.0,
        max_retries: int = 2,
        check_stop: Callable[[], None] | None = None,
        chunk_size: int = 64,
        on_close: Callable[[], None] | None = None,
    ):
        self.slots = [_Slot(e) for e in engines]
        self.batch_timeout, self.start_timeout, self.max_retries = batch_timeout, start_timeout, max_retries
        self.check_stop = check_stop or (lambda: None)
        self.chunk_size = chunk_size
        self.on_close = on_close
        self.failures: list[dict] = []
        self.started = False
        self.closed = False
        self.created = time.monotonic()
        self.first_ready: float | None = None  # monotonic time the first engine could take a batch

    @property
    def engines(self) -> list[Engine]:
        return [s.engine for s in self.slots]

    def _start(self, slot: _Slot) -> None:
        slot.state, slot.since, slot.task = "starting", time.monotonic(), None
        slot.engine.start()

    def _fail(self, slot: _Slot, reason: str, queue: deque, tries: dict) -> None:
        engine = slot.engine
        tail = tail_text(engine.log_path, 30)
        task = slot.task
        log.error("%s: %s; its log (%s) ends with:\n%s", engine.spec.label, reason, engine.log_path, tail)
        self.failures.append(
            {
                "engine": engine.spec.label,
                "reason": reason,
                "task": task.id if task else None,
                "log": str(engine.log_path),
            }
        )
        engine.kill()
        if task is not None:
            tries[task.id] = tries.get(task.id, 0) + 1
            if tries[task.id] > self.max_retries:
                raise CollectionFailed(
                    f"batch {task.id} failed {tries[task.id]} times; last: {engine.spec.label}: "
                    f"{reason}. Log {engine.log_path}:\n{tail}"
                )
            queue.appendleft(task)
        else:
            slot.start_failures += 1
        if slot.start_failures > self.max_retries:
            slot.state = "dead"
            if all(s.state == "dead" for s in self.slots):
                raise CollectionFailed(
                    f"every engine failed; last: {engine.spec.label}: {reason}. Log {engine.log_path}:\n{tail}"
                )
            return
        log.warning("%s: starting a fresh worker%s", engine.spec.label, f" for batch {task.id}" if task else "")
        self._start(slot)

    def run(self, tasks: list[Task], on_result: Callable[[Task, list[list[Generation]]], None]) -> None:
        """Every task generated once, on whichever engine is free; `on_result` is called in this thread as
        each one finishes (in completion order)."""
        queue, tries = deque(tasks), {}
        if not self.started:
            for slot in self.slots:
                self._start(slot)
            self.started = True
        while queue or any(s.state == "busy" for s in self.slots):
            self.check_stop()
            progressed = False
            for slot in self.slots:
                if slot.state == "dead":
                    continue
                if slot.state == "idle" and queue:
                    slot.task, slot.state, slot.since = queue.popleft(), "busy", time.monotonic()
                    try:
                        slot.engine.send(slot.task)
                    except EngineDied as exc:
                        self._fail(slot, str(exc), queue, tries)
                        continue
                if slot.state not in ("starting", "busy"):
                    continue
                try:
                    msg = slot.engine.poll(0.05)
                except EngineDied as exc:
                    self._fail(slot, str(exc), queue, tries)
                    continue
                if msg is None:
                    limit = self.start_timeout if slot.state == "starting" else self.batch_timeout
                    if time.monotonic() - slot.since > limit:
                        what = "did not start" if slot.state == "starting" else f"hung on batch {slot.task.id}"
                        self._fail(
                            slot,
                            f"{what} within {limit:.0f}s (COLLECTION_"
                            f"{'ENGINE_START' if slot.state == 'starting' else 'BATCH'}_TIMEOUT)",
                            queue,
                            tries,
                        )
                    continue
                progressed = True
                kind, task_id, payload = msg
                if kind == "ready":
                    log.info(
                        "%s ready (pid %s) after %.0fs",
                        slot.engine.spec.label,
                        slot.engine.pid,
                        time.monotonic() - slot.since,
                    )
                    slot.state, slot.task, slot.start_failures = "idle", None, 0
                    self.first_ready = self.first_ready or time.monotonic()
                elif kind == "done":
                    task, slot.state, slot.task = slot.task, "idle", None
                    on_result(task, payload)
                else:  # "failed" at start or "error" in a batch: the traceback is in the payload and the log
                    reason = payload.strip().splitlines()[-1] if payload else kind
                    self._fail(slot, f"{'could not start' if kind == 'failed' else 'raised'}: {reason}", queue, tries)
            if not progressed:
                time.sleep(0.02)

    def generate(self, chats: list[list[dict]], sampling: Sampling) -> list[list[Generation]]:
        """GenerationBackend: chats cut into fixed chunks (seeded by index, so the result does not depend on
        how many engines there are), spread over the engines, reassembled in order."""
        size = self.chunk_size
        tasks = [
            Task(i, chats[s : s + size], dataclasses.replace(sampling, seed=_chunk_seed(sampling.seed, i)))
            for i, s in enumerate(range(0, len(chats), size))
        ]
        results: dict[int, list] = {}
        self.run(tasks, lambda task, outs: results.__setitem__(task.id, outs))
        return [row for i in range(len(tasks)) for row in results[i]]

    def reusable(self) -> bool:
        """Open, and every engine idle or still starting (none mid-batch, none given up on): safe to hand to the next
        stage as it is."""
        return not self.closed and all(s.state in ("starting", "idle") for s in self.slots)

    def mark_use(self) -> None:
        """A new user of already started engines: its timings count from now, with no start to pay."""
        self.created = time.monotonic()
        if self.first_ready is not None:
            self.first_ready = self.created

    def timings(self) -> dict:
        """Seconds until the first engine was ready, and from then to now (generation, with later engines' starts)."""
        now, ready = time.monotonic(), self.first_ready or time.monotonic()
        return {"engine_start_seconds": round(ready - self.created, 2), "generation_seconds": round(now - ready, 2)}

    def close(self) -> None:
        """Idle engines stop cleanly; one still loading or mid-batch (a stop request, a failure) is killed."""
        if self.closed:
            return
        self.closed = True
        for slot in self.slots:
            try:
                if slot.state in ("starting", "busy"):
                    slot.engine.kill()
                else:
                    slot.engine.stop()
            except Exception as exc:  # closing must reach every engine
                log.warning("%s: stop failed: %s", slot.engine.spec.label, exc)
        if self.on_close:
            self.on_close()


def _chunk_seed(seed: int, index: int) -> int:
    return (seed * 1_000_003 + index * 7_919) % (2**31 - 1)


# ---------------------------------------------------------------- building a pool from the configuration
def ray_gpus(cfg) -> list[int]:
    """GPU slots on the Ray cluster: every GPU it has, or as many as PHYSICAL_SOLVER_GPU lists (the ids stand
    for GPUs anywhere in the cluster; Ray places each actor and sets its CUDA_VISIBLE_DEVICES)."""
    import ray

    total = int(ray.cluster_resources().get("GPU", 0))
    wanted = len(solver_gpus(cfg)) if cfg.PHYSICAL_SOLVER_GPU else total
    if wanted > total:
        raise CollectionFailed(
            f"PHYSICAL_SOLVER_GPU lists {wanted} GPUs but the Ray cluster has {total}: list at most "
            f"{total}, or leave it empty to use them all"
        )
    return list(range(wanted))


def _ray_init(address: str, num_cpus: int):
    try:
        import ray
    except ImportError:
        raise CollectionFailed(
            "COLLECTION_EXECUTOR=ray: ray is not installed; `pip install -r requirements-ray.txt`"
        ) from None
    if ray.is_initialized():
        return None
    if address:
        ray.init(address=address, log_to_driver=False)
        log.info("joined the Ray cluster at %s", address)
        return None
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    log.info("started a local Ray instance (%d CPUs)", num_cpus)
    return ray.shutdown  # ours to stop


def open_pool(
    cfg,
    model_dir: str | Path,
    log_dir: Path,
    label: str,
    check_stop: Callable[[], None] | None = None,
    kind: str | None = None,
) -> EnginePool:
    """The engines this configuration asks for, not yet started (they start on the first `run`)."""
    kind = resolve_backend(kind or cfg.COLLECTION_BACKEND)
    settings = EngineSettings.from_config(cfg)
    log_dir.mkdir(parents=True, exist_ok=True)
    if kind == "transformers" and cfg.COLLECTION_EXECUTOR == "local":
        engines = [
            InProcessEngine(EngineSpec(0, {}, label="engine 0 (in process)"), kind, str(model_dir), settings, None)
        ]
        return EnginePool(engines, check_stop=check_stop, chunk_size=cfg.COLLECTION_BATCH_SIZE)
    on_close = None
    if cfg.COLLECTION_EXECUTOR == "ray":
        on_close = _ray_init(cfg.RAY_ADDRESS, num_cpus=max(cfg.COLLECTION_CPU_ENGINES, os.cpu_count() or 1))
        gpus = ray_gpus(cfg)
        make = RayEngine
    else:
        gpus = solver_gpus(cfg)
        make = LocalEngine
    specs = plan_engines(gpus, cfg.TENSOR_PARALLEL_SIZE if gpus else 1, cfg.COLLECTION_CPU_ENGINES)
    engines = [make(s, kind, str(model_dir), settings, log_dir / f"{label}_engine{s.index}.log") for s in specs]
    log.info(
        "%s: %d %s engine(s) via %s: %s",
        label,
        len(engines),
        kind,
        cfg.COLLECTION_EXECUTOR,
        "; ".join(s.label for s in specs),
    )
    return EnginePool(
        engines,
        batch_timeout=cfg.COLLECTION_BATCH_TIMEOUT,
        start_timeout=cfg.COLLECTION_ENGINE_START_TIMEOUT,
        max_retries=cfg.COLLECTION_MAX_BATCH_RETRIES,
        check_stop=check_stop,
        chunk_size=cfg.COLLECTION_BATCH_SIZE,
        on_close=on_close,
    )


# ---------------------------------------------------------------- one start for consecutive users of one model
@dataclass(frozen=True)
class EngineKey:
    """What makes open engines fit the next user: the same model folder (its files unchanged) on the same engines
    with the same engine settings. Sampling (n, temperature, seeds) travels with each request, not in the key."""

    kind: str
    model_dir: str
    model_files: tuple  # (name, size, mtime_ns) of each file in the folder: a rewritten folder is another model
    executor: str
    devices: tuple  # PHYSICAL_SOLVER_GPU, TENSOR_PARALLEL_SIZE, COLLECTION_CPU_ENGINES
    settings: EngineSettings


def _folder_files(model_dir: Path) -> tuple:
    try:
        return tuple(
            sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in model_dir.iterdir() if p.is_file())
        )
    except OSError:
        return ()


def engine_key(cfg, model_dir: str | Path, kind: str | None = None) -> EngineKey:
    model_dir = Path(model_dir).resolve()
    return EngineKey(
        kind=resolve_backend(kind or cfg.COLLECTION_BACKEND),
        model_dir=str(model_dir),
        model_files=_folder_files(model_dir),
        executor=cfg.COLLECTION_EXECUTOR,
        devices=(cfg.PHYSICAL_SOLVER_GPU, cfg.TENSOR_PARALLEL_SIZE, cfg.COLLECTION_CPU_ENGINES),
        settings=EngineSettings.from_config(cfg),
    )


class SharedEngines:
    """At most one open pool, kept from one user to the next while they sample the same model.

    `acquire` hands back the open pool when the key matches and its engines are idle (no start), else closes it
    and opens a new one; `close` stops it. The round loop closes it before every stage that does not sample the
    solver (training needs the devices, the Generator is another model) and when the run ends.
    """

    def __init__(self) -> None:
        self.pool: EnginePool | None = None
        self.key: EngineKey | None = None
        self.label = ""
        self.opened = 0  # pools opened (each starts its engines on first use)
        self.reused = 0  # times an open pool served the next user

    def acquire(self, key: EngineKey, label: str, open_fn: Callable[[], EnginePool]) -> EnginePool:
        if self.pool is not None and self.key == key and self.pool.reusable():
            self.reused += 1
            self.pool.mark_use()
            log.info(
                "%s: reusing the engines started for %s (same model %s, no new start)", label, self.label, key.model_dir
            )
            return self.pool
        if self.pool is not None:
            self.close(f"{label} needs {key.model_dir}" if self.key != key else f"{label} needs idle engines")
        self.pool = open_fn()
        self.key, self.label = key, label
        self.opened += 1
        return self.pool

    def close(self, reason: str = "") -> None:
        if self.pool is None:
            return
        pool, self.pool, self.key = self.pool, None, None
        log.info("closing the engines started for %s%s", self.label, f" ({reason})" if reason else "")
        pool.close()


def shared_engines(ctx: RunContext) -> SharedEngines:
    """The run's shared engines, made on first use (RunContext.close_engines stops them)."""
    if ctx._engines is None:
        ctx._engines = SharedEngines()
    return ctx._engines


@contextmanager
def solver_pool(ctx: RunContext, model_dir: str | Path, label: str, kind: str | None = None) -> Iterator[EnginePool]:
    """Engines sampling `model_dir` for one stage: the open ones when they hold that model, else fresh ones.

    Where the round loop shares engines (`ctx.share_engines`) they stay open after the stage for the next user of
    the same model; elsewhere (a stage run on its own, a benchmark) they close with the stage, as a stage that
    fails or is stopped always closes them: a pool that raised is not handed to the next stage."""
    cfg, shared = ctx.cfg, shared_engines(ctx)
    pool = shared.acquire(
        engine_key(cfg, model_dir, kind),
        label,
        lambda: open_pool(cfg, model_dir, ctx.paths.logs, label, check_stop=ctx.check_stop, kind=kind),
    )
    try:
        yield pool
    except BaseException:
        shared.close(f"{label} did not finish")
        raise
    if not ctx.share_engines:
        shared.close()
