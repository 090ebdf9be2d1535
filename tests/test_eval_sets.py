"""Evaluation sets: the EVAL_SETS syntax, and every kind of source read for real through `datasets` (a parquet
file, folders written by save_to_disk and to_parquet, a Hub id from the datasets cache offline) and the one
GSM8K/MATH reader."""

from __future__ import annotations

import json
import re

import pytest

from prosetting.core.config import ConfigError, load_config
from prosetting.core.eval_spec import EvalSpecError, parse_entry, parse_eval_sets
from prosetting.processors.eval_sets import EvalSetError, hub_dataset_cached, load_eval_set
from prosetting.processors.stages import check_settings
from tests.hub_cache import add_dataset

MATH_ROWS = [
    {
        "problem": f"What is ${i}+{i}$?",
        "solution": f"It is $\\boxed{{{2 * i}}}$.",
        "answer": str(2 * i),
        "level": 1 + i % 5,
        "unique_id": f"test/algebra/{i}.json",
    }
    for i in range(12)
]
GSM_ROWS = [
    {
        "question": f"Sam has {i} apples and buys 1,000 more. How many?",
        "answer": f"{i}+1000={i + 1000}\n#### {i + 1000:,}",
    }
    for i in range(7)
]


def test_the_syntax_names_sources_and_options(tmp_path):
    data = tmp_path / "aime.jsonl"
    data.write_text("")
    specs = parse_eval_sets(
        f" gsm8k=hub:openai/gsm8k:main:test, math500=hub:HuggingFaceH4/MATH-500 ,"
        f"aime24={data}?limit=5&answer=final , ob=hub:math-ai/olympiadbench::train?revision=v1"
    )
    assert [s.name for s in specs] == ["gsm8k", "math500", "aime24", "ob"]
    gsm, math, aime, ob = specs
    assert (gsm.kind, gsm.dataset_id, gsm.config, gsm.split) == ("hub", "openai/gsm8k", "main", "test")
    assert (math.config, math.split) == (None, None) and math.text == "hub:HuggingFaceH4/MATH-500"
    assert (aime.kind, aime.path, aime.limit, aime.columns) == ("file", str(data), 5, {"answer": "final"})
    assert (ob.config, ob.split, ob.revision) == (None, "train", "v1")
    assert parse_eval_sets("") == []


@pytest.mark.parametrize(
    "text,message",
    [
        ("gsm8k", "expected NAME=SOURCE"),
        ("a b=hub:x/y", "a set name is letters"),
        ("heldout=hub:x/y", "the name is reserved"),
        ("a=hub:x/y?colour=red", "unknown option(s) colour"),
        ("a=hub:x/y?limit=ten", "limit='ten': expected a whole number"),
        ("a=hub:x/y:c:s:extra", "expected hub:ID[:CONFIG[:SPLIT]]"),
        ("a=/no/such/file.jsonl", "no such file or folder (a Hugging Face dataset is written hub:ID)"),
        ("a=hub:x/y,a=hub:x/z", "set name(s) used twice: a"),
    ],
)
def test_bad_entries_say_what_was_expected(text, message):
    with pytest.raises(EvalSpecError, match=re.escape(message)):
        parse_eval_sets(text)
    with pytest.raises(ConfigError, match=re.escape("EVAL_SETS: ")):
        check_settings(load_config(env_file=None, environ={}, overrides={"EVAL_SETS": text})[0])


def test_heldout_k_is_read_as_eval_k():
    cfg, sources = load_config(env_file=None, environ={"HELDOUT_K": "3"})
    assert cfg.EVAL_K == 3 and sources["EVAL_K"] == "environment"
    cfg, _ = load_config(env_file=None, environ={"HELDOUT_K": "3"}, overrides={"EVAL_K": "5"})
    assert cfg.EVAL_K == 5
    assert load_config(env_file=None, environ={})[0].EVAL_K == 4  # the embedded profile
    assert load_config(env_file=None, environ={}, overrides={"SOLVER_MODEL_PATH": "org/x"})[0].EVAL_K == 32


def test_files_and_local_dataset_folders(tmp_path):
    import datasets

    math = datasets.Dataset.from_list(MATH_ROWS)
    gsm = tmp_path / "gsm.jsonl"
    gsm.write_text("".join(json.dumps(r) + "\n" for r in GSM_ROWS))
    math.to_parquet(str(tmp_path / "math.parquet"))
    datasets.DatasetDict({"train": math.select(range(3)), "test": math}).save_to_disk(str(tmp_path / "saved"))
    (tmp_path / "files").mkdir()
    math.to_parquet(str(tmp_path / "files" / "test-00000-of-00001.parquet"))
    math.select(range(2)).to_parquet(str(tmp_path / "files" / "train-00000-of-00001.parquet"))

    qs = load_eval_set(parse_entry(f"gsm={gsm}"))
    assert [q["answer"] for q in qs][:2] == ["1000", "1001"] and qs[0]["id"] == "gsm-00001"
    for source in (tmp_path / "math.parquet", tmp_path / "saved", tmp_path / "files"):
        qs = load_eval_set(parse_entry(f"m={source}"))
        assert len(qs) == 12 and qs[3] == {
            "id": "test/algebra/3.json",
            "question": "What is $3+3$?",
            "answer": "6",
            "meta": {"level": 4},
        }
    assert len(load_eval_set(parse_entry(f"m={tmp_path / 'saved'}?split=train"))) == 3
    assert len(load_eval_set(parse_entry(f"m={tmp_path / 'files'}?split=train&limit=1"))) == 1
    with pytest.raises(EvalSetError, match=r"no split 'dev'; it has train, test: add \?split=NAME"):
        load_eval_set(parse_entry(f"m={tmp_path / 'saved'}?split=dev"))


def test_rows_without_a_reference_fail_naming_the_row_and_the_column_option(tmp_path):
    import datasets

    rows = [{"question": "1+1?", "final_answer": ["$2$"]}, {"question": "2+2?", "final_answer": ["$4$", "$-4$"]}]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "ob.parquet"))
    with pytest.raises(
        EvalSetError, match=r"EVAL_SETS ob \(file .*ob.parquet\): row 1: no reference answer.*\?answer=COLUMN"
    ):
        load_eval_set(parse_entry(f"ob={tmp_path / 'ob.parquet'}"))
    qs = load_eval_set(parse_entry(f"ob={tmp_path / 'ob.parquet'}?answer=final_answer"))
    assert [q["answer"] for q in qs] == ["$2$", "$4$, $-4$"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "a", "answer": "1"}\n\n{"prompt_text": "b", "answer": "2"}\n')
    with pytest.raises(EvalSetError, match=r"line 3: no `question` or `problem` text \(columns prompt_text, answer\)"):
        load_eval_set(parse_entry(f"b={bad}"))


def test_a_hub_dataset_offline_from_the_datasets_cache(tmp_path, monkeypatch):
    import datasets
    import datasets.config
    from huggingface_hub import constants

    cache = tmp_path / "datasets-cache"
    for module, key in ((datasets.config, "HF_HUB_OFFLINE"), (constants, "HF_HUB_OFFLINE")):
        monkeypatch.setattr(module, key, True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    prepared = add_dataset(cache, "OrgX/MATH-500", {"test": datasets.Dataset.from_list(MATH_ROWS)})
    spec = parse_entry("math500=hub:OrgX/MATH-500")
    assert hub_dataset_cached(spec) == prepared
    qs = load_eval_set(spec)
    assert len(qs) == 12 and qs[0]["answer"] == "0" and qs[0]["meta"] == {"level": 1}
    assert len(load_eval_set(parse_entry("m=hub:OrgX/MATH-500:default:test?limit=4"))) == 4
    missing = parse_entry("gsm8k=hub:openai/gsm8k:main:test")
    assert hub_dataset_cached(missing) is None
    with pytest.raises(
        EvalSetError,
        match=r"EVAL_SETS gsm8k \(Hub dataset openai/gsm8k, config main, split test\): cannot "
        r"be read: .*Load it once where the Hub is reachable.*datasets.load_dataset",
    ):
        load_eval_set(missing)


@pytest.mark.slow
def test_evaluate_cli_with_a_hub_id_and_several_sets(tmp_path):
    """scripts/evaluate.py --model ORG/NAME (offline, from a Hub cache) --sets a=FILE,b=FOLDER."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import datasets

    from prosetting.trainers.tiny_solver import build_tiny_solver
    from tests.hub_cache import add_model

    repo = Path(__file__).resolve().parent.parent
    snapshot = add_model(tmp_path / "hub", "org/tiny", build_tiny_solver(tmp_path / "tiny", seed=0, layers=2))
    gsm = tmp_path / "gsm.jsonl"
    gsm.write_text("".join(json.dumps(r) + "\n" for r in GSM_ROWS[:3]))
    (tmp_path / "math").mkdir()
    datasets.Dataset.from_list(MATH_ROWS[:4]).to_parquet(str(tmp_path / "math" / "test-00000-of-00001.parquet"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    out = tmp_path / "res.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(repo / "scripts" / "evaluate.py"),
            "--model",
            "org/tiny",
            "--sets",
            f"gsm={gsm},math={tmp_path / 'math'}",
            "--k",
            "2",
            "--max-new-tokens",
            "8",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["commit"] == snapshot.name and result["model_path"] == str(snapshot)
    assert {n: r["n"] for n, r in result["results"].items()} == {"gsm": 3, "math": 4} and "average" in result
    assert "gsm:" in proc.stdout and "average over 2 sets" in proc.stdout
    missing = subprocess.run(
        [sys.executable, str(repo / "scripts" / "evaluate.py"), "--model", "org/absent", "--data", str(gsm)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert missing.returncode == 2 and "--model: org/absent: not in the local Hugging Face cache" in missing.stderr
