"""Imports point one way: the import-linter contracts in pyproject.toml ([tool.importlinter]) hold.

    lint-imports          # the same check by hand, from the repository root

The layers (README, "Architecture"): core < teacher_model | collectors | datasets < trainers < processors < utils
< managers < scripts | benchmarks, and no import cycle between the modules of a package, function-level imports
included. The graph is built from the package Python imports (here: this checkout, which the second test checks).

`datasets/` and `benchmarks/` are namespace subpackages (no `__init__.py`: a `datasets/__init__.py` would shadow
Hugging Face `datasets` for anything run from the repository root). grimp names a namespace package from its
place under a `sys.path` entry, which is right only when the checkout directory is itself named `prosetting`;
an editable install of a clone named anything else (CI's) would make it `.tmp.ci.benchmarks`. So the graph is
built through `prosetting_on_path()`: a temporary directory whose `prosetting` links to this checkout, first on
`sys.path`, with the package imported from there for the check and the session's modules put back after. By
hand, from any checkout: `mkdir -p /tmp/pp && ln -sfn "$PWD" /tmp/pp/prosetting && PYTHONPATH=/tmp/pp lint-imports`.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import re
import sys
import tempfile
from pathlib import Path

import grimp
from importlinter.api import read_configuration
from importlinter.cli import lint_imports

import prosetting

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "pyproject.toml"


@contextlib.contextmanager
def prosetting_on_path():
    """`prosetting` importable from a directory named `prosetting` (a link to this checkout) while the graph is
    built; the session's own `prosetting` modules are set aside and restored, untouched, afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "prosetting").symlink_to(REPO, target_is_directory=True)
        saved = {
            name: mod for name, mod in sys.modules.items() if name == "prosetting" or name.startswith("prosetting.")
        }
        for name in saved:
            del sys.modules[name]
        sys.path.insert(0, tmp)
        importlib.invalidate_caches()
        try:
            yield
        finally:
            sys.path.remove(tmp)
            for name in [n for n in sys.modules if n == "prosetting" or n.startswith("prosetting.")]:
                del sys.modules[name]
            sys.modules.update(saved)
            importlib.invalidate_caches()


def contracts() -> dict[str, dict]:
    return {c["type"]: c for c in read_configuration(str(CONFIG))["contracts_options"]}


def layers() -> list[set[str]]:
    return [{m.strip() for m in layer.split("|")} for layer in contracts()["layers"]["layers"]]


@contextlib.contextmanager
def loggers_kept():
    """import-linter's command line configures logging with dictConfig, which disables every logger that exists;
    the project's loggers are put back as they were, so later tests still see their records."""
    loggers = [lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    disabled = {lg: lg.disabled for lg in loggers}
    try:
        yield
    finally:
        for lg, was in disabled.items():
            lg.disabled = was


def test_the_contracts_hold():
    out = io.StringIO()
    with contextlib.redirect_stdout(out), loggers_kept(), prosetting_on_path():
        code = lint_imports(config_filename=str(CONFIG), no_cache=True, no_logo=True)
    assert code == 0, out.getvalue()
    assert "Contracts: 2 kept, 0 broken." in out.getvalue(), out.getvalue()


def test_the_check_reads_this_checkout_and_every_folder_has_a_layer():
    assert Path(prosetting.__file__).resolve().parent == REPO
    roots = read_configuration(str(CONFIG))["session_options"]["root_packages"]
    with prosetting_on_path():
        graph = grimp.build_graph(*roots, cache_dir=None)
    seen = {m.split(".")[1] for m in graph.modules if m.count(".") >= 1}
    folders = {p.name for p in REPO.iterdir() if p.is_dir() and any(p.glob("*.py"))}
    # datasets/ and benchmarks/ are namespace subpackages: without their own root the graph would miss them
    assert {"datasets", "benchmarks", "core", "managers"} <= seen and folders <= seen, folders - seen
    layered = {m.split(".")[1] for layer in layers() for m in layer}
    assert folders - layered == {"tests"}, f"folders with no layer in pyproject.toml: {folders - layered - {'tests'}}"


def test_an_upward_or_sideways_import_breaks_the_layers():
    """The contract is not vacuous: one import from core up to managers, or between independent siblings, is an
    illegal dependency on the real graph."""
    roots = read_configuration(str(CONFIG))["session_options"]["root_packages"]
    spec = [grimp.Layer(*sorted(layer), independent=True) for layer in layers()]
    for importer, imported in [
        ("prosetting.core.io", "prosetting.managers.round_controller"),
        ("prosetting.collectors.backends", "prosetting.teacher_model.base"),
        ("prosetting.datasets.data_saver", "prosetting.trainers.launch"),
    ]:
        with prosetting_on_path():
            graph = grimp.build_graph(*roots, cache_dir=None)
        assert not graph.find_illegal_dependencies_for_layers(layers=spec)
        graph.add_import(importer=importer, imported=imported)
        illegal = graph.find_illegal_dependencies_for_layers(layers=spec)
        assert {(d.importer, d.imported) for d in illegal} == {
            (".".join(importer.split(".")[:2]), ".".join(imported.split(".")[:2]))
        }


def test_the_readme_states_the_layers_and_names_every_module_in_its_layer():
    """README, "Architecture": the numbered layers, from the bottom, are the contract's, and each layer's item names
    every module of its folders (entry points and benchmarks excepted: they are listed in their own sections)."""
    section = (REPO / "README.md").read_text().split("\n## Architecture\n", 1)[1].split("\n## ", 1)[0]
    items = re.findall(r"(?ms)^(\d+)\. (.*?)(?=^\d+\. |^\S)", section)
    assert [int(n) for n, _ in items] == list(range(1, len(layers()) + 1)), "one numbered item per layer"
    for (_, text), layer in zip(items, reversed(layers()), strict=True):
        heads = text.split(":", 1)[0]
        folders = set(re.findall(r"`(\w+)/`", heads))
        assert folders == {m.split(".")[1] for m in layer}, f"README layer {heads!r} is not {sorted(layer)}"
        for folder in folders - {"scripts", "benchmarks"}:
            missing = [p.name for p in sorted((REPO / folder).glob("*.py")) if p.name != "__init__.py"]
            missing = [name for name in missing if f"`{name}`" not in text]
            assert not missing, f"README, Architecture, layer of {folder}/ does not name {missing}"


def test_long_signatures_are_keyword_only():
    """A call of more than a handful of arguments names them: no function of the package takes more than six
    positional parameters (the rest go after `*`)."""
    import ast

    long = []
    for path in sorted(REPO.glob("*/*.py")):
        if path.parts[-2] in ("tests", ".venv", "benchmarks"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                positional = [a for a in node.args.posonlyargs + node.args.args if a.arg not in ("self", "cls")]
                if len(positional) > 6:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({len(positional)})")
    assert not long, f"more than six positional parameters: {long}"
