"""Every measured figure of README.md and docs/*.md is the one its results file holds
(`benchmarks/doc_figures.py`): each marker is rendered again from its file and compared with the page.

    python benchmarks/doc_figures.py            # after a benchmark wrote results/: rewrite the pages' figures
"""

from __future__ import annotations

import json
from pathlib import Path

from prosetting.benchmarks import ablations, doc_figures

REPO = Path(__file__).resolve().parent.parent


def test_every_figure_in_the_pages_is_what_its_results_file_holds():
    problems = doc_figures.check()
    assert not problems, "figures that differ from their results file (python benchmarks/doc_figures.py):\n" + (
        "\n".join(problems)
    )


def test_every_results_file_is_read_by_a_page_and_every_file_read_is_in_results():
    named = {f.source.split(":")[0] for page in doc_figures.pages() for f in doc_figures.figures(page)}
    kept = {f"results/{p.name}" for p in (REPO / "results").iterdir() if p.is_file()}
    assert named <= kept, f"pages read files that are not in results/: {sorted(named - kept)}"
    assert kept <= named, f"results files no page reads (mark their figures in the pages): {sorted(kept - named)}"


def test_the_included_ablation_table_is_rendered_from_its_json():
    summary = json.loads((REPO / "results" / "ablations.json").read_text())
    assert ablations.markdown(summary) == (REPO / "results" / "ablations.md").read_text()


def make_repo(tmp_path: Path, page: str) -> Path:
    (tmp_path / "docs").mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "run.json").write_text(
        json.dumps({"peak_mib": [8861.3], "steps": {"ours": 31.344, "plain": 29.319}, "levels": {"L5+": 0.062}})
    )
    (tmp_path / "results" / "table.md").write_text("| a |\n|---|\n| 1 |\n")
    (tmp_path / "README.md").write_text("# r\n")
    (tmp_path / "docs" / "page.md").write_text(page)
    return tmp_path


def test_a_figure_that_differs_is_named_with_its_page_line_and_both_values(tmp_path):
    page = (
        "# p\n\n"
        "peak <!-- fig results/run.json: peak_mib[0] / 1024 | .1f -->8.7<!-- /fig --> GiB,\n"
        "ratio <!-- fig results/run.json: steps.ours / steps.plain | .2f -->1.05<!-- /fig -->x,\n"
        "share <!-- fig results/run.json: levels['L5+'] * 100 | .1f -->6.2<!-- /fig --> %\n"
    )
    root = make_repo(tmp_path, page)
    assert doc_figures.check(root) == [
        "docs/page.md:4: results/run.json: steps.ours / steps.plain | .2f: the page says '1.05', the file '1.07'"
    ]
    assert doc_figures.update_pages(root) == [root / "docs" / "page.md"]
    assert doc_figures.check(root) == []
    assert "ratio <!-- fig results/run.json: steps.ours / steps.plain | .2f -->1.07<!-- /fig -->x," in (
        (root / "docs" / "page.md").read_text()
    )


def test_an_included_block_a_missing_key_and_an_open_marker_are_reported(tmp_path):
    page = (
        "# p\n\n<!-- include results/table.md -->\n| a |\n|---|\n| 2 |\n<!-- /include -->\n\n"
        "other <!-- fig results/run.json: steps.other | .1f -->3.0<!-- /fig -->\n"
        "<!-- fig results/run.json: steps.ours | .1f -->31.3\n"
        "<!-- fig results/run.json: steps.ours | .1f -->31.3<!-- /fig --> s at the start of a line\n"
    )
    root = make_repo(tmp_path, page)
    problems = doc_figures.check(root)
    assert problems[0] == "docs/page.md:3: the block included from results/table.md differs from the file"
    assert problems[1].startswith("docs/page.md:9: results/run.json: steps.other | .1f: the page says '3.0', the file")
    assert "KeyError" in problems[1]
    assert problems[2] == "docs/page.md:10: a figure marker without its close"
    assert problems[3].startswith("docs/page.md:11: a figure marker starts the line")
    assert len(problems) == 4


def test_an_expression_may_only_name_keys_and_do_arithmetic():
    data = {"a": {"b": [2, 4]}, "c": 0.5}
    assert doc_figures.evaluate(data, "a.b[1] * c - 1") == 1.0
    assert doc_figures.evaluate(data, "-(a.b[0] + a['b'][1]) / 2") == -3.0
    assert doc_figures.evaluate(data, "a.b[1] ** 0.5 == a.b[0]") is True
    for bad in ("__import__('os')", "a.b[0:1]", "c < 2", "[c][0]"):
        try:
            doc_figures.evaluate(data, bad)
        except ValueError as exc:
            assert "only keys, numbers, + - * / ** and == != are allowed" in str(exc)
        else:
            raise AssertionError(f"{bad} was evaluated")
