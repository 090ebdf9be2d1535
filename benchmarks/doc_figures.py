"""The measured figures of README.md and docs/*.md, read from the results files the benchmarks wrote.

    python benchmarks/doc_figures.py            # rewrite every figure of the pages from its results file
    python benchmarks/doc_figures.py --check    # list each figure that differs from its file, exit 1 if any

A figure sits between two HTML comments (invisible on a rendered page) that name its file, an expression over
the file's JSON and a format:

    ours <!-- fig results/real_model_training_idle.json: ours_s_per_step | .2f -->31.34<!-- /fig --> s a step

The expression names a value by its keys (`a.b`, `a['L5+_last']`, `a[0]`) and may combine values and numbers
with + - * / ** (`x * 100`, `x / 1024`) or compare two with == and != (True or False); after ` | ` comes a
Python format spec (`.1f`, `+.1f`, `,.0f`; none: the value as it is). A block a benchmark rendered as markdown
is included whole:

    <!-- include results/ablations.md -->
    (the file's text)
    <!-- /include -->

A benchmark's `--update-docs` calls `update_pages()` after writing its file into results/;
tests/test_doc_figures.py fails, naming the page, the line and both values, when a page and a file disagree.
"""

from __future__ import annotations

import argparse
import ast
import json
import operator
import re
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIGURE = re.compile(r"<!-- fig (?P<file>\S+): (?P<expr>.+?)(?: \| (?P<fmt>\S+))? -->(?P<shown>[^\n]*?)<!-- /fig -->")
INCLUDE = re.compile(r"<!-- include (?P<file>\S+) -->\n(?P<shown>.*?)<!-- /include -->", re.DOTALL)
OPENERS = re.compile(r"<!-- (?:fig|include) ")
OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}


def pages(root: Path = REPO) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def evaluate(data: object, expr: str) -> object:
    """The value `expr` names in `data`: keys by attribute or subscript, arithmetic (+ - * / **) and == or !=
    between values and numbers."""

    def walk(node: ast.AST) -> object:
        if isinstance(node, ast.Name):
            return data[node.id]
        if isinstance(node, ast.Attribute):
            return walk(node.value)[node.attr]
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            return walk(node.value)[node.slice.value]
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in OPS:
            return OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in OPS:
            return OPS[type(node.ops[0])](walk(node.left), walk(node.comparators[0]))
        raise ValueError(f"{expr!r}: only keys, numbers, + - * / ** and == != are allowed, not {ast.unparse(node)!r}")

    return walk(ast.parse(expr, mode="eval").body)


@dataclass
class Figure:
    page: Path
    line: int
    source: str  # the marker's file, expression and format, as written
    shown: str  # what the page says
    expected: str  # what the file gives

    def where(self, root: Path) -> str:
        return f"{self.page.relative_to(root)}:{self.line}"


class Results:
    """The results files a page names, each read once."""

    def __init__(self, root: Path):
        self.root, self.loaded = root, {}

    def read(self, name: str) -> object:
        if name not in self.loaded:
            path = self.root / name
            self.loaded[name] = json.loads(path.read_text()) if path.suffix == ".json" else path.read_text()
        return self.loaded[name]

    def render(self, m: re.Match) -> tuple[str, str]:
        """(the marker's source as written, what its file gives) for a FIGURE or INCLUDE match."""
        if "expr" not in m.groupdict():
            try:
                return m["file"], str(self.read(m["file"]))
            except OSError as exc:
                return m["file"], f"<error: {exc}>"
        source = f"{m['file']}: {m['expr']}" + (f" | {m['fmt']}" if m["fmt"] else "")
        try:
            return source, format(evaluate(self.read(m["file"]), m["expr"]), m["fmt"] or "")
        except (OSError, KeyError, IndexError, TypeError, ValueError, SyntaxError) as exc:
            return source, f"<error: {type(exc).__name__}: {exc}>"


def line_of(text: str, m: re.Match) -> int:
    return text.count("\n", 0, m.start()) + 1


def figures(page: Path, root: Path = REPO) -> list[Figure]:
    """Every figure and included block of a page, with what the page shows and what its file gives."""
    text = page.read_text(encoding="utf-8")
    results = Results(root)
    found = []
    for pattern in (FIGURE, INCLUDE):
        for m in pattern.finditer(text):
            source, expected = results.render(m)
            found.append(Figure(page, line_of(text, m), source, m["shown"], expected))
    return sorted(found, key=lambda f: f.line)


def unclosed(page: Path) -> list[int]:
    """Lines of markers that open a figure or a block without a well-formed close."""
    text = page.read_text(encoding="utf-8")
    matched = {m.start() for pattern in (FIGURE, INCLUDE) for m in pattern.finditer(text)}
    return [line_of(text, m) for m in OPENERS.finditer(text) if m.start() not in matched]


def line_starts(page: Path) -> list[int]:
    """Lines that begin with a figure marker."""
    text = page.read_text(encoding="utf-8")
    return [line_of(text, m) for m in FIGURE.finditer(text) if m.start() == 0 or text[m.start() - 1] == "\n"]


def check(root: Path = REPO) -> list[str]:
    """One line per figure that differs from its file (page:line, the source, both values) or marker left open."""
    problems = []
    for page in pages(root):
        for f in figures(page, root):
            if f.shown == f.expected:
                continue
            if "\n" in f.expected + f.shown:  # an included block: name it, not its whole text
                problems.append(f"{f.where(root)}: the block included from {f.source} differs from the file")
            else:
                problems.append(f"{f.where(root)}: {f.source}: the page says {f.shown!r}, the file {f.expected!r}")
        problems += [f"{page.relative_to(root)}:{n}: a figure marker without its close" for n in unclosed(page)]
        problems += [
            f"{page.relative_to(root)}:{n}: a figure marker starts the line (Markdown reads it as an HTML block "
            "and breaks the paragraph there): put a word before it"
            for n in line_starts(page)
        ]
    return problems


def rewrite(text: str, results: Results, name: str) -> str:
    """`text` with every figure and included block filled from its file (`name`: the page, for errors)."""

    def fill(m: re.Match) -> str:
        source, new = results.render(m)
        if new.startswith("<error"):
            raise SystemExit(f"{name}:{line_of(m.string, m)}: {source}: {new}")
        a, b = m.start("shown") - m.start(), m.end("shown") - m.start()
        return m.group(0)[:a] + new + m.group(0)[b:]

    return INCLUDE.sub(fill, FIGURE.sub(fill, text))


def update_pages(root: Path = REPO) -> list[Path]:
    """Rewrite every figure and included block of the pages from its file; the pages that changed."""
    results, changed = Results(root), []
    for page in pages(root):
        text = page.read_text(encoding="utf-8")
        new_text = rewrite(text, results, str(page.relative_to(root)))
        if new_text != text:
            page.write_text(new_text, encoding="utf-8")
            changed.append(page)
    return changed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="only list the figures that differ from their files")
    a = p.parse_args()
    if a.check:
        problems = check()
        print("\n".join(problems) or "every figure matches its results file")
        sys.exit(1 if problems else 0)
    for page in update_pages():
        print(f"updated {page.relative_to(REPO)}")


if __name__ == "__main__":
    main()
