"""Questions files: every problem named with file and line; the next pool's composition."""

from __future__ import annotations

import json
import re

import pytest

from prosetting.core.questions import QuestionFileError, load_questions_file
from prosetting.processors.question_pool import build_blind_pool, build_next_pool, stratified_cut


def test_loads_json_lines_and_json_lists(tmp_path):
    rows = [{"id": "a", "question": "1+1=?", "answer": "2"}, {"question": "2+2=?", "answer": 4}]
    (tmp_path / "q.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "q.json").write_text(json.dumps(rows, indent=2))
    for name in ("q.jsonl", "q.json"):
        qs = load_questions_file(tmp_path / name)
        assert [q["id"] for q in qs] == ["a", "q-0002"]
        assert qs[1]["answer"] == "4" and qs[0]["origin"] == "seed" and qs[0]["round"] == 1


@pytest.mark.parametrize(
    "content,message",
    [
        ("", "the file is empty"),
        ('{"question": "1+1=?", "answer": "2"}\n{"question": "x", "answer": \n', "line 2: not valid JSON"),
        ('{"question": "1+1=?", "answer": "2"}\n{"answer": "3"}\n', "line 2: missing or empty `question`"),
        ('{"question": "  ", "answer": "3"}\n', "line 1: missing or empty `question`"),
        ('{"question": "1+1=?"}\n', "line 1: missing `answer`"),
        (
            '{"id": "a", "question": "1", "answer": "1"}\n\n{"id": "a", "question": "2", "answer": "2"}\n',
            "line 3: duplicate id 'a' (first seen on line 1)",
        ),
        ("[1, 2]\n", "expected an object"),
    ],
)
def test_bad_files_fail_with_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(QuestionFileError, match=re.escape(message)) as err:
        load_questions_file(path)
    assert str(path) in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(QuestionFileError, match="questions file not found"):
        load_questions_file(tmp_path / "nope.json")


def _q(i, **kw):
    return {
        "id": f"q{i}",
        "question": f"question {i}",
        "answer": "1",
        "parent_id": None,
        "origin": "seed",
        "round": 1,
        **kw,
    }


def test_next_pool_is_new_plus_failed_plus_replayed_share_of_mastered():
    qs = [_q(i) for i in range(10)]
    zones = ["too_difficult", "learning"] + ["mastered"] * 8
    rewards = {q["id"]: {"zone": z} for q, z in zip(qs, zones, strict=True)}
    # q101 repeats the text of q0: the pool keeps one of them
    new = [_q(100, parent_id="q1", origin="teacher_error_variant", round=2), _q(101, question="Question  0 ")]
    pool, counts = build_next_pool(qs, rewards, new, replay_ratio=0.25, seed=1, round_=1)
    ids = [q["id"] for q in pool]
    assert ids[:3] == ["q100", "q101", "q1"] and "q0" not in ids
    assert counts == {"new": 2, "failed_replay": 1, "mastered_replay": 2, "duplicates_dropped": 1, "cut_by_max_size": 0}
    again, _ = build_next_pool(qs, rewards, new, replay_ratio=0.25, seed=1, round_=1)
    assert again == pool  # seeded
    capped, c2 = build_next_pool(qs, rewards, new, replay_ratio=0.25, seed=1, round_=1, max_size=2, cap="new_first")
    assert [q["id"] for q in capped] == ["q100", "q101"] and c2["cut_by_max_size"] == 3
    # REPLAY_FAILED=false (an ablation): the failed question stays out, an ungraded one still comes back
    no_failed, c3 = build_next_pool(
        qs + [_q(50)], rewards, new, replay_ratio=0.25, seed=1, round_=1, replay_failed=False
    )
    assert "q1" not in [q["id"] for q in no_failed] and "q50" in [q["id"] for q in no_failed]
    assert c3["failed_replay"] == 1 and c3["mastered_replay"] == 2


def test_stratified_cap_keeps_the_frontier_when_easy_questions_flood_in():
    """Over MAX_POOL_SIZE, levels share the cap by how far the Solver is from mastering them, unmastered questions
    first: forty new level-1 questions cannot push out the unmastered level-4 ones."""
    lv = lambda i, level, **kw: _q(i, meta={"level": level}, **kw)  # noqa: E731
    hard = [lv(i, 4) for i in range(30)]  # level 4, solved 1 time in 10
    mid = [lv(100 + i, 3) for i in range(30)]  # level 3, solved 7 times in 10
    rewards = {q["id"]: {"zone": "learning", "success_rate": 0.1} for q in hard}
    rewards |= {q["id"]: {"zone": "learning", "success_rate": 0.7} for q in mid}
    easy = [lv(200 + i, 1, origin="teacher_stepping_stone") for i in range(40)]  # new, never graded: weight 1
    top = [lv(300 + i, 5, origin="teacher_harder_variant") for i in range(3)]
    new_first, _ = build_next_pool(
        hard + mid, rewards, easy + top, replay_ratio=1.0, seed=0, round_=2, max_size=43, cap="new_first"
    )
    assert sum(q["meta"]["level"] == 4 for q in new_first) == 0  # the old cut: the frontier is gone
    pool, counts = build_next_pool(hard + mid, rewards, easy + top, replay_ratio=1.0, seed=0, round_=2, max_size=43)
    levels = [q["meta"]["level"] for q in pool]
    assert len(pool) == 43 and counts["cut_by_max_size"] == 103 - 43
    # level 5 has fewer than its share: all 3; the other 40 go 1.0 : 0.9 : 0.3 to levels 1, 4 and 3
    assert (levels.count(5), levels.count(1), levels.count(4), levels.count(3)) == (3, 18, 16, 6)
    assert [q["id"] for q in pool] == [q["id"] for q in easy + top + hard + mid if q in pool]  # order kept
    # a mastered stratum keeps a floor share, as replays do
    done = {q["id"]: {"zone": "mastered", "success_rate": 1.0} for q in mid}
    kept = stratified_cut([hard, mid], 20, rewards | done)
    assert sum(i.startswith("q1") and len(i) == 4 for i in kept) == 2  # 20 * 0.1 / (0.9 + 0.1)
    # without levels, lineages share the cap: one seed's family cannot fill the pool
    fam = [_q(400 + i, root_id="q0") for i in range(10)] + [_q(500, root_id="q1")]
    cut = stratified_cut([fam], 4)
    assert "q500" in cut and len(cut) == 4


def test_blind_pool_ignores_results():
    qs = [_q(i) for i in range(10)]
    new = [_q(100 + i) for i in range(5)]
    pool, counts = build_blind_pool(qs, new, seed=0, round_=1, max_size=8)
    again, _ = build_blind_pool(qs, new, seed=0, round_=1, max_size=8)
    assert pool == again and len(pool) == 8 and counts["new"] + counts["replay"] == 8 and counts["cut_by_max_size"] == 7
    assert build_blind_pool(qs, new, seed=0, round_=1)[0] == new + qs


def test_static_curriculum_replays_the_seed_pool_and_writes_nothing(tmp_path):
    """CURRICULUM=static (the ablation of the Teacher's questions): round r+1's pool is round 1's, no writer is
    asked."""
    import threading

    from prosetting.core.config import Config
    from prosetting.core.io import atomic_write_json, write_jsonl
    from prosetting.core.state_manager import Paths
    from prosetting.processors.question_enhancer import run_enhancement

    class NoWriting:
        name = "none"

        def write_questions(self, request):
            raise AssertionError("CURRICULUM=static must not ask for questions")

    paths = Paths(tmp_path)
    paths.data.mkdir(parents=True)
    seeds = [_q(i) for i in range(5)]
    atomic_write_json(paths.questions(1), seeds)
    atomic_write_json(paths.questions(3), [_q(9)])  # round 3's pool, after round 2's written questions
    write_jsonl(paths.rewards(3), [{"question_id": "q9", "zone": "learning", "success_rate": 0.5, "verdicts": []}])
    write_jsonl(paths.trajectories(3), [{"question_id": "q9", "attempts": []}])
    ctx = type(
        "Ctx",
        (),
        {"cfg": Config(CURRICULUM="static"), "paths": paths, "teacher": NoWriting(), "stop_event": threading.Event()},
    )()
    stats = run_enhancement(ctx, 3)
    assert json.loads(paths.questions(4).read_text()) == seeds
    assert stats["written"] == 0 and stats["curriculum"] == "static" and not paths.enhanced_questions(3).exists()
