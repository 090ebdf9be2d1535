"""The persistent Teacher call cache: no paid call is made twice, across resumes, redos and runs.

    cache = CallCache(workspace / "cache")          # or TEACHER_CACHE_DIR, shared by several runs
    key = call_key(model, prompts.PROMPT_VERSION, messages, temperature, seed, params)
    cache.get(key) or cache.put(key, text, usage)

One append-only JSON Lines file, `teacher_calls.jsonl`: each answered call is one line, written and
fsync'd as it arrives, so a SIGKILL loses at most the call in flight. A line cut by a kill is dropped on
the next open (the file is truncated back to its last complete line before anything is appended), and
reading never waits on anything: no lock file, no server. Records hold the key, the answer text and
its token usage: never the API key, which is not part of the key either.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CACHE_FILE = "teacher_calls.jsonl"


def call_key(model: str, prompt_version: str, messages: list[dict], temperature: float, seed: int | None,
             params: dict[str, Any] | None = None) -> str:
    """A hash of everything that changes the answer: endpoint model, prompt version, the exact messages,
    temperature, seed and the other sampling parameters."""
    blob = json.dumps({"model": model, "prompt_version": prompt_version, "messages": messages,
                       "temperature": float(temperature), "seed": seed, "params": params or {}},
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class CallCache:
    """Answered calls by key, loaded once, appended to as calls are answered (thread-safe)."""

    def __init__(self, directory: str | os.PathLike):
        self.path = Path(directory) / CACHE_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._records: dict[str, dict] = {}
        self._fd: int | None = None
        self._sync_lock = threading.Lock()
        self._written = self._synced = 0
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1  # everything after the last newline is a line cut by a kill
        if end < len(data):
            log.info("teacher cache %s: dropping a cut last line (%d bytes)", self.path, len(data) - end)
            with open(self.path, "r+b") as f:
                f.truncate(end)
                f.flush()
                os.fsync(f.fileno())
        bad = 0
        for line in data[:end].splitlines():
            try:
                rec = json.loads(line)
                self._records[rec["key"]] = rec
            except (json.JSONDecodeError, KeyError, TypeError):
                bad += 1
        if bad:
            log.warning("teacher cache %s: skipped %d unreadable line(s); those calls will be made again", self.path, bad)

    def __len__(self) -> int:
        return len(self._records)

    def get(self, key: str) -> dict | None:
        """The stored record ({"key", "text", "usage"}) or None."""
        return self._records.get(key)

    def put(self, key: str, text: str, usage: dict | None = None) -> None:
        """Append one answered call; returns once its line is on disk. Concurrent callers share fsyncs
        (group commit): one flush covers every line written before it started."""
        rec = {"key": key, "text": text, "usage": usage or {}}
        line = (json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.write(self._fd, line)  # one write of a whole line with O_APPEND: lines never interleave
            self._records[key] = rec
            self._written += 1
            mine, fd = self._written, self._fd
        with self._sync_lock:
            if self._synced >= mine:
                return  # a flush that started after our write already covered it
            with self._lock:
                upto = self._written
            os.fsync(fd)
            self._synced = upto

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
