"""The persistent Teacher call cache: no paid call is made twice, across resumes, redos and runs.

    cache = CallCache(workspace / "cache")          # or TEACHER_CACHE_DIR, shared by several runs
    key = call_key(model, prompts.PROMPT_VERSION, messages, temperature, seed, params)
    cache.get(key) or cache.put(key, text, usage)

One SQLite database, `teacher_calls.sqlite3`, in WAL mode (standard library `sqlite3`): opening it reads
nothing, a lookup is one indexed read of the database as it is now, so runs sharing the folder use each
other's answers at once, and memory does not grow with the cache. Each answered call is one committed
transaction with `synchronous=FULL`: in WAL mode a commit is then fsync'd to the WAL before `put` returns, so
an answer survives a power cut as well as a SIGKILL (NORMAL would survive a kill, since the WAL is in the OS
page cache, but may drop the last commits on a power cut; an fsync is milliseconds against a paid call of
seconds). A kill in the middle of a transaction loses that transaction only: the calls in flight.
Concurrent writers queue on SQLite's write lock (`busy_timeout`), readers never wait for them. Opening is
serialized between processes by an advisory lock on `teacher_calls.sqlite3.lock` (flock): creating the
database, the switch to WAL (which takes an exclusive lock that SQLite's busy timeout does not wait for) and
the carry-over of an older cache happen in one process at a time, so any number of runs can open, create
or upgrade one cache at the same moment.

WAL needs memory shared by every process that opens the database (the `-shm` file), so they must run on one
host: a folder on a network filesystem serves the runs of one host, but must not be shared by runs on
several hosts (give each host its own TEACHER_CACHE_DIR on local disk). An older cache, the JSON Lines file
`teacher_calls.jsonl`, is carried over on the first open (streamed, a line cut by a kill skipped) and left
in place; lines appended to it later are carried over on the next open. Records hold the key, the answer
text and its token usage: never the API key, which is not part of the key either.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CACHE_DB = "teacher_calls.sqlite3"
OPEN_LOCK = CACHE_DB + ".lock"
LEGACY_FILE = "teacher_calls.jsonl"
BUSY_TIMEOUT_MS = 60_000  # how long a write waits for another process's write before it fails
NETWORK_FS = {
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "fuse.sshfs",
    "9p",
    "lustre",
    "gpfs",
    "ceph",
    "glusterfs",
    "fuse.glusterfs",
    "beegfs",
    "afs",
}
SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, text TEXT NOT NULL, usage TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS carried_over (path TEXT PRIMARY KEY, offset INTEGER NOT NULL);
"""


def call_key(
    model: str,
    prompt_version: str,
    messages: list[dict],
    temperature: float,
    seed: int | None,
    params: dict[str, Any] | None = None,
) -> str:
    """A hash of everything that changes the answer: endpoint model, prompt version, the exact messages,
    temperature, seed and the other sampling parameters."""
    blob = json.dumps(
        {
            "model": model,
            "prompt_version": prompt_version,
            "messages": messages,
            "temperature": float(temperature),
            "seed": seed,
            "params": params or {},
        },
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@contextlib.contextmanager
def _held(lock_file: Path) -> Iterator[None]:
    """An exclusive advisory lock (flock) on `lock_file` between processes, held for the block."""
    with open(lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _retry_locked(op, path: Path, timeout: float = BUSY_TIMEOUT_MS / 1000):
    """op(), retried while SQLite answers "database is locked" / "busy", for at most `timeout` seconds."""
    deadline, pause = time.monotonic() + timeout, 0.01
    while True:
        try:
            return op()
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            if not ("locked" in text or "busy" in text) or time.monotonic() > deadline:
                raise sqlite3.OperationalError(f"teacher cache {path}: {exc}") from exc
            time.sleep(pause)
            pause = min(pause * 2, 0.5)


def filesystem_type(path: Path) -> str | None:
    """The type of the filesystem holding `path` (Linux: /proc/self/mountinfo), or None where unknown."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    best, fstype = "", None
    target = str(path.resolve())
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split()
        mount = fields[4].replace("\\040", " ") if len(fields) > 4 else ""
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best) and right:
            best, fstype = mount, right.split()[0]
    return fstype


class CallCache:
    """Answered calls by key in SQLite (WAL); thread-safe: one connection for lookups, one for writes."""

    def __init__(self, directory: str | os.PathLike):
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / CACHE_DB
        fstype = filesystem_type(folder)
        if fstype in NETWORK_FS:
            log.warning(
                "teacher cache %s is on a %s filesystem: fine for runs on this host, but runs on other "
                "hosts must not share it (SQLite's WAL needs memory shared on one host); give each host "
                "its own TEACHER_CACHE_DIR on local disk",
                folder,
                fstype,
            )
        with _held(folder / OPEN_LOCK):
            self._write = self._connect()
            self._switch_to_wal(self._write)
            _retry_locked(lambda: self._write.executescript(SCHEMA), self.path)
            self._read = self._connect()
            self._read_lock = threading.Lock()
            self._write_lock = threading.Lock()
            self._carry_over(folder / LEGACY_FILE)

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: autocommit, so every lookup reads the database as committed now (no snapshot
        # held between lookups) and writes open their transactions explicitly.
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def _switch_to_wal(self, conn: sqlite3.Connection) -> None:
        """WAL mode, once per database (it is kept in the file). The switch needs an exclusive lock, for which
        SQLite returns "database is locked" at once, busy timeout or not, while another connection reads: the
        open lock keeps other openers out, and a retry waits out a run already using the database."""
        mode = _retry_locked(lambda: conn.execute("PRAGMA journal_mode").fetchone()[0], self.path)
        if mode.lower() != "wal":
            mode = _retry_locked(lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone()[0], self.path)
        if mode.lower() != "wal":
            raise RuntimeError(
                f"teacher cache {self.path}: SQLite refused WAL mode (journal_mode={mode}); put "
                "TEACHER_CACHE_DIR on a local disk"
            )

    # --- lookups and writes -------------------------------------------------------------------
    def __len__(self) -> int:
        with self._read_lock:
            return self._read.execute("SELECT COUNT(*) FROM calls").fetchone()[0]

    def get(self, key: str) -> dict | None:
        """The stored record ({"key", "text", "usage"}) or None."""
        with self._read_lock:
            row = self._read.execute("SELECT text, usage FROM calls WHERE key = ?", (key,)).fetchone()
        return None if row is None else {"key": key, "text": row[0], "usage": json.loads(row[1])}

    def put(self, key: str, text: str, usage: dict | None = None) -> None:
        """Store one answered call; returns once it is committed (and fsync'd). A key already present keeps
        its first answer: two runs that asked the same call at once store one of the two."""
        self.put_many([(key, text, usage)])

    def put_many(self, records: Iterable[tuple[str, str, dict | None]]) -> int:
        """Store answered calls in one transaction (a batch's answers); returns how many were new."""
        rows = [(key, text, json.dumps(usage or {})) for key, text, usage in records]
        with self._write_lock:
            self._write.execute("BEGIN IMMEDIATE")
            try:
                before = self._write.total_changes
                self._write.executemany("INSERT OR IGNORE INTO calls (key, text, usage) VALUES (?, ?, ?)", rows)
                added = self._write.total_changes - before
                self._write.execute("COMMIT")
            except BaseException:
                self._write.execute("ROLLBACK")
                raise
        return added

    def discard(self, key: str) -> None:
        """Forget one call (an answer that turned out unusable), so that the next run asks it again."""
        with self._write_lock:
            self._write.execute("DELETE FROM calls WHERE key = ?", (key,))

    def close(self) -> None:
        with self._write_lock, self._read_lock:
            self._read.close()
            self._write.close()

    # --- the JSON Lines cache of earlier versions ---------------------------------------------
    def _carry_over(self, legacy: Path) -> None:
        """Copy what `teacher_calls.jsonl` holds beyond what was copied before, in one transaction (a second
        process opening the cache at the same time waits for it, then finds nothing left to copy)."""
        if not legacy.is_file():
            return
        with self._write_lock:
            row = self._write.execute("SELECT offset FROM carried_over WHERE path = ?", (LEGACY_FILE,)).fetchone()
            if (row[0] if row else 0) >= legacy.stat().st_size:
                return
            self._write.execute("BEGIN IMMEDIATE")
            try:
                row = self._write.execute("SELECT offset FROM carried_over WHERE path = ?", (LEGACY_FILE,)).fetchone()
                start = row[0] if row else 0
                offset, added, bad = self._copy_lines(legacy, start)
                self._write.execute(
                    "INSERT OR REPLACE INTO carried_over (path, offset) VALUES (?, ?)", (LEGACY_FILE, offset)
                )
                self._write.execute("COMMIT")
            except BaseException:
                self._write.execute("ROLLBACK")
                raise
        if offset > start:
            log.info(
                "teacher cache: carried over %d call(s) from %s into %s; that file is no longer written "
                "and may be deleted",
                added,
                legacy,
                self.path,
            )
        if bad:
            log.warning("teacher cache %s: skipped %d unreadable line(s); those calls will be made again", legacy, bad)

    def _copy_lines(self, legacy: Path, start: int) -> tuple[int, int, int]:
        """(offset after the last complete line, calls added, unreadable lines) copying from byte `start`."""
        added = bad = 0
        offset = start
        chunk: list[tuple[str, str, str]] = []

        def flush() -> int:
            before = self._write.total_changes
            self._write.executemany("INSERT OR IGNORE INTO calls (key, text, usage) VALUES (?, ?, ?)", chunk)
            chunk.clear()
            return self._write.total_changes - before

        with open(legacy, "rb") as f:
            f.seek(start)
            for line in f:
                if not line.endswith(b"\n"):
                    break  # a line cut by a kill: left for a later open, should its writer finish it
                offset += len(line)
                try:
                    rec = json.loads(line)
                    chunk.append((rec["key"], rec["text"], json.dumps(rec.get("usage") or {})))
                except (json.JSONDecodeError, KeyError, TypeError):
                    bad += 1
                if len(chunk) >= 10_000:
                    added += flush()
        added += flush()
        return offset, added, bad
