"""Shared fixtures: a tiny warm-started solver built once per test session, small question files."""

from __future__ import annotations

import importlib.util
import json
import multiprocessing.process
import os
import random
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# The optional engines (scripts/install_vllm.sh): their tests skip where vLLM or Ray is not installed, except
# where the environment promises they are: .ci/run sets PROSETTING_REQUIRE_ENGINES=1 for its full tier, after
# install_vllm.sh, so that a broken engine install fails there instead of skipping. Its first tier
# (requirements.txt alone) leaves it unset: a missing engine is expected there.
ENGINES_REQUIRED = os.environ.get("PROSETTING_REQUIRE_ENGINES") == "1"


def needs(module: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        importlib.util.find_spec(module) is None and not ENGINES_REQUIRED,
        reason=f"{module} is not installed (bash scripts/install_vllm.sh adds it)",
    )


needs_vllm = needs("vllm")

# Eager engines: vLLM's CPU build compiles the model at every engine start, 38 s of a tiny solver's start here
# against 3 s eager (generation is slower eager, by seconds on the suite's few dozen sequences). The suite's engines
# run eager (VLLM_ENFORCE_EAGER=true, the server's --enforce-eager), except tests/test_e2e_vllm.py, which keeps the
# compiled path that a run takes by default.
needs_ray = needs("ray")


# The heavy tier: end-to-end runs whose every component is also covered by a lighter test of the default suite
# (the real model, vLLM, Ray, FSDP shards, the LLM Teacher endpoint each keep one there), kept for what only a
# longer run shows (several rounds, every stage killed and resumed, a real model's round with its served Teacher).
# `python -m pytest` (the README's command, CI's) leaves them out; `python -m pytest --heavy` runs everything and
# `python -m pytest -m heavy` only them (docs/tests.md).
HEAVY_HELP = "also run the heavy tier: the longest end-to-end runs (docs/tests.md)"


def pytest_addoption(parser):
    parser.addoption("--heavy", action="store_true", default=False, help=HEAVY_HELP)


def pytest_collection_modifyitems(config, items):
    if config.getoption("--heavy") or "heavy" in (config.getoption("-m") or ""):
        return
    heavy = [item for item in items if item.get_closest_marker("heavy")]
    if heavy:
        config.hook.pytest_deselected(items=heavy)
        items[:] = [item for item in items if not item.get_closest_marker("heavy")]


# A test that starts a process (a subprocess, `accelerate launch`, a vLLM engine, Ray, the command line) carries
# the `slow` marker, so that `pytest -m "not slow"` runs only in-process tests. Every process start goes through
# one of these audit events (Python's own hooks, sys.addaudithook) or through multiprocessing's Process.start; a
# fast test that starts one fails at teardown with what it started.
# System probes a library runs for a moment (platform.processor() runs `uname -p`, core/devices.py:query_gpus
# runs `nvidia-smi` where a driver is installed) start no work of the test's own and are let through.
_SPAWN_EVENTS = frozenset({"subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.system"})
_PROBES = frozenset({"uname", "nvidia-smi"})
_started: list[str] | None = None  # processes the running fast test started; None outside a fast test


def _record_spawn(event: str, args: tuple) -> None:
    if _started is None or event not in _SPAWN_EVENTS:
        return
    if event == "subprocess.Popen" and os.path.basename(str(args[0])) in _PROBES:
        return
    _started.append(f"{event} {str(args[:2])[:200]}")


sys.addaudithook(_record_spawn)


@pytest.fixture(autouse=True)
def _fast_tests_start_no_process(request, monkeypatch):
    global _started
    if request.node.get_closest_marker("slow"):
        yield
        return
    started: list[str] = []
    start = multiprocessing.process.BaseProcess.start

    def recorded_start(process):
        started.append(f"multiprocessing {process!r}")
        return start(process)

    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", recorded_start)
    _started = started
    try:
        yield started
    finally:
        _started = None
    if started:
        pytest.fail(
            f"a test without @pytest.mark.slow started {len(started)} process(es), first: {started[0]}; "
            "mark it slow (pytest -m 'not slow' runs in-process tests only)",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def tiny_solver(tmp_path_factory) -> Path:
    """A 4-layer character-level Qwen2 with a short warm start (seconds), shared by the slow tests."""
    from prosetting.trainers.tiny_solver import build_tiny_solver
    from prosetting.trainers.warm_start import warm_start

    root = tmp_path_factory.mktemp("solver")
    init = build_tiny_solver(root / "init", seed=0)
    warm_start(init, root / "warm", steps=40, seed=0)
    return root / "warm"


def write_questions(path: Path, n: int, seed: int = 0, levels=(1, 2)) -> Path:
    from prosetting.teacher_model import arithmetic

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        q = arithmetic.make_problem(levels[i % len(levels)], rng)
        rows.append({"id": f"t-{i:03d}", **{k: q[k] for k in ("question", "answer", "solution", "meta")}})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
