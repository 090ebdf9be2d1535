"""benchmarks/same_run.py: two workspaces of the same work compare equal once times and paths are normalised, and any
other difference is found and named."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from prosetting.benchmarks import same_run


def workspace(root: Path, accuracy: float, rows: int = 3) -> Path:
    (root / "data").mkdir(parents=True)
    (root / "datasets" / "round_01").mkdir(parents=True)
    (root / "logs").mkdir()
    (root / "training_state.json").write_text(
        json.dumps({"version": 1, "status": "completed", "updated": "2026-12-02T08:00:00", "runs": [{"started": "x"}]})
    )
    progress = {"round": 1, "stages": {"grade": {"status": "done", "seconds": 1.5, "stats": {"accuracy": accuracy}}}}
    (root / "round_01_progress.json").write_text(json.dumps(progress))
    (root / "data" / "round_01_rewards.jsonl").write_text(
        json.dumps({"question_id": "q1", "model": str(root / "checkpoints" / "m")}) + "\n"
    )
    table = pa.table({"prompt": [f"p{i}" for i in range(rows)], "chosen": ["c"] * rows})
    pq.write_table(table, root / "datasets" / "round_01" / "train.parquet")
    (root / "logs" / "run.log").write_text(f"{root} took 3 s\n")
    return root


def test_the_same_work_compares_equal(tmp_path, capsys):
    a, b = workspace(tmp_path / "a", 0.5), workspace(tmp_path / "b", 0.5)
    (b / "round_01_progress.json").write_text(
        (b / "round_01_progress.json").read_text().replace('"seconds": 1.5', '"seconds": 9.0')
    )
    assert same_run.main([str(a), str(b)]) == 0
    assert "4 files the same, 0 different" in capsys.readouterr().out


def test_a_changed_figure_a_changed_parquet_and_a_missing_file_are_named(tmp_path, capsys):
    a, b = workspace(tmp_path / "a", 0.5), workspace(tmp_path / "b", 0.75, rows=4)
    (b / "data" / "round_01_rewards.jsonl").unlink()
    out_file = tmp_path / "cmp.json"
    assert same_run.main([str(a), str(b), "--json", str(out_file)]) == 1
    out = capsys.readouterr().out
    assert "differs   round_01_progress.json: /stages/grade/stats/accuracy: 0.5 != 0.75" in out
    assert "differs   datasets/round_01/train.parquet: bytes differ" in out
    assert "only before: data/round_01_rewards.jsonl" in out
    assert json.loads(out_file.read_text())["skipped"] == ["logs/run.log"]
