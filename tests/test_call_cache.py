"""The Teacher call cache on real SQLite: shared between connections and processes, a SIGKILL during writes,
and the JSON Lines cache of earlier versions carried over."""

from __future__ import annotations

import json
import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pytest

from prosetting.benchmarks.teacher_cache import key_of, kill_during_writes, open_race, shared_runs, text_of
from prosetting.teacher_model.call_cache import CACHE_DB, LEGACY_FILE, CallCache, filesystem_type


def test_two_caches_on_one_folder_see_each_others_answers_without_reopening(tmp_path):
    first, second = CallCache(tmp_path), CallCache(tmp_path)  # two runs: two connections to one database
    assert second.get(key_of(1)) is None
    first.put(key_of(1), "answer one", {"prompt_tokens": 3, "completion_tokens": 2})
    assert second.get(key_of(1)) == {
        "key": key_of(1),
        "text": "answer one",
        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
    }
    second.put(key_of(1), "a later answer to the same call")  # the first answer stays
    assert first.get(key_of(1))["text"] == "answer one" and len(first) == 1
    conn = sqlite3.connect(tmp_path / CACHE_DB)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_stores_from_many_threads_all_land(tmp_path):
    cache = CallCache(tmp_path)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: cache.put(key_of(i), text_of(i)), range(400)))
    assert len(cache) == 400 and all(cache.get(key_of(i))["text"] == text_of(i) for i in range(0, 400, 7))
    assert cache.put_many([(key_of(i), "x", None) for i in range(395, 405)]) == 5  # five new, five kept


def legacy_line(i: int) -> str:
    return json.dumps({"key": key_of(i), "text": f"old answer {i}", "usage": {"prompt_tokens": i}}) + "\n"


def test_a_jsonl_cache_is_carried_over_once_a_cut_line_tolerated(tmp_path, caplog):
    legacy = tmp_path / LEGACY_FILE
    cut = legacy_line(3)[:30]  # a SIGKILL in the middle of the old cache's last write
    legacy.write_text(legacy_line(0) + legacy_line(1) + "not json\n" + legacy_line(2) + cut)
    with caplog.at_level(logging.INFO):
        cache = CallCache(tmp_path)
    assert len(cache) == 3 and cache.get(key_of(2)) == {
        "key": key_of(2),
        "text": "old answer 2",
        "usage": {"prompt_tokens": 2},
    }
    assert "carried over 3 call(s)" in caplog.text and "skipped 1 unreadable line" in caplog.text
    cache.close()

    caplog.clear()
    with caplog.at_level(logging.INFO):
        cache = CallCache(tmp_path)  # nothing new in the file: nothing read again
    assert len(cache) == 3 and "carried over" not in caplog.text
    cache.close()

    # An older version still appending: it truncates the cut line and appends whole ones.
    legacy.write_text(legacy.read_text()[: -len(cut)] + legacy_line(3) + legacy_line(4))
    cache = CallCache(tmp_path)
    assert len(cache) == 5 and cache.get(key_of(4))["text"] == "old answer 4"
    assert legacy.exists()  # left in place for the older version


def test_a_carried_over_call_is_not_paid_for_again(tmp_path):
    from tests.teacher_server import TeacherServer
    from tests.test_teacher_calls import QUESTION, attempt, make_teacher, verdicts_reply

    with TeacherServer(responder=lambda req: verdicts_reply((1, False, "no"))) as server:
        make_teacher(server, tmp_path).grade(QUESTION, [attempt(1, "7")])
        assert len(server.chat_requests) == 1
        # The same answer as an older version would have kept it: one line of JSON Lines, no database.
        db = CallCache(tmp_path / "cache")
        [(key, text, usage)] = db._read.execute("SELECT key, text, usage FROM calls").fetchall()
        db.close()
        old = tmp_path / "old"
        (old / "cache").mkdir(parents=True)
        (old / "cache" / LEGACY_FILE).write_text(
            json.dumps({"key": key, "text": text, "usage": json.loads(usage)}) + "\n"
        )
        teacher = make_teacher(server, old)
        teacher.grade(QUESTION, [attempt(1, "7")])
        assert len(server.chat_requests) == 1 and teacher.stats()["cache_hits"] == 1


def test_the_filesystem_type_is_read_from_the_mount_table(tmp_path):
    if filesystem_type(tmp_path) is None:
        pytest.skip("no /proc/self/mountinfo here")
    assert filesystem_type(tmp_path.parent.parent) is not None
    assert filesystem_type(__import__("pathlib").Path("/proc/self")) == "proc"


@pytest.mark.slow
def test_two_processes_sharing_a_cache_lose_nothing_and_repeat_nothing_already_stored(tmp_path):
    result = shared_runs(tmp_path / "cache", n=600, threads=4, latency=0.002)
    assert result["answers_lost"] == 0 and result["repeated_after_stored"] == 0
    assert result["used_the_others"] > 100  # each used the other's answers while both ran, without a restart
    assert result["paid_a"] + result["paid_b"] - result["paid_by_both"] == 600


@pytest.mark.slow
def test_processes_opening_creating_and_upgrading_one_cache_at_once_all_succeed(tmp_path):
    # Found by a race in CI: two processes opening one new cache, the second's switch to WAL refused with
    # "database is locked". Six at once here, with an older JSON Lines cache to carry over.
    result = open_race(tmp_path / "cache", processes=6, n=50, legacy=200)
    assert result["failed"] == 0, result["errors"]
    assert result["answers_lost"] == 0 and result["legacy_lost"] == 0 and result["integrity"] == "ok"
    assert result["legacy_seen_by_each"] == [200] * 6  # every run found the carried-over calls on opening


@pytest.mark.slow
def test_sigkill_during_writes_loses_only_the_calls_in_flight(tmp_path):
    result = kill_during_writes(tmp_path / "cache", after=200, threads=4)
    assert result["signal"] == 9 and result["reported_stored"] >= 200
    assert result["reported_but_missing"] == 0 and result["texts_intact"]
    assert 0 <= result["stored_not_reported"] <= 4  # stored by a thread killed before it could say so
    assert result["integrity"] == "ok" and result["new_writer_ok"]
