"""The README and the docs/ pages: every link and every named docs/ or presets/ file exists, every #anchor is a
heading of its page, and the README stays a page a newcomer reads (quick start, use and architecture first)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")  # [text](target)
NAMED = re.compile(r"(?<![\w./-])((?:docs|presets)/[\w.-]+\.(?:md|env))")  # docs/x.md or presets/x.env in text


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"(?ms)^```.*?^```", "", page.read_text(encoding="utf-8"))  # a '# comment' in code is no heading
    return {slug(h) for h in re.findall(r"(?m)^#+ (.+)$", text)}


def targets(page: Path) -> list[tuple[str, Path, str]]:
    """(as written, file it names, anchor) for each relative link and each docs/ or presets/ file named."""
    text = page.read_text(encoding="utf-8")
    found = []
    for written in LINK.findall(text):
        if re.match(r"[a-z]+:", written):  # https:, mailto:
            continue
        path, _, anchor = written.partition("#")
        found.append((written, (page.parent / path).resolve() if path else page, anchor))
    for written in NAMED.findall(text):  # named in prose or code: from the repository root
        found.append((written, REPO / written, ""))
    return found


def test_every_link_and_named_doc_or_preset_exists():
    broken = []
    for page in PAGES:
        for written, path, anchor in targets(page):
            where = f"{page.relative_to(REPO)}: {written}"
            if not path.is_file():
                broken.append(f"{where} (no file {path.relative_to(REPO) if path.is_relative_to(REPO) else path})")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                broken.append(f"{where} (no heading #{anchor} in {path.name})")
    assert not broken, "broken links:\n" + "\n".join(dict.fromkeys(broken))


def test_the_readme_is_short_and_starts_with_what_a_newcomer_needs():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 420, "README.md grew past ~400 lines: move the detail to a docs/ page"
    order = [text.index(f"\n## {title}\n") for title in ("Quick start", "Using it", "Architecture")]
    assert order == sorted(order) and order[-1] < text.index("\n## ", order[-1] + 1)
    # The set-up line and the test command CI and users run.
    assert (
        "pip install -r requirements.txt -c constraints.txt && pip install -e . && bash scripts/install_vllm.sh" in text
    )
    assert "\npython -m pytest\n" in text
    assert "docs/gpu_paper_recipe.md" in text.split("\n## Using it\n")[0], "the Quick start links the GPU page"
