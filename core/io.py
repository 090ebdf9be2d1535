"""Durable file primitives: atomic replace, fsync'd JSON Lines appends, tolerant JSON Lines reads.

Every file the run trusts on resume is written through these: a killed process leaves either the old
file or the new one, never half of one; an append cut mid-line is dropped on the next read and cut off
before the next append. Every JSON Lines file, the workspace's and a user's, is read by read_jsonl.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    path = Path(path)
    if not path.exists():
        return default
    with path.open(encoding="utf-8") as fh:
        try:
            return json.load(fh)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from exc


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def cut_torn_tail(path: str | os.PathLike) -> None:
    """Cut a JSON Lines file back to its last complete line: what a killed append left after it is removed
    (a last line that lacks only its newline gets it), so the next append starts on a line of its own.
    The one repair; append_jsonl calls it."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return
    with path.open("r+b") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return
        fh.seek(0)
        data = fh.read()
        end = data.rfind(b"\n") + 1
        try:
            json.loads(data[end:])  # whole, only its newline missing: read_jsonl keeps it, so keep it
            fh.write(b"\n")
        except ValueError:
            fh.truncate(end)
        fh.flush()
        os.fsync(fh.fileno())


def append_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Append rows and fsync before returning, so a returned append survives a kill; a torn last line a
    killed append left is cut first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cut_torn_tail(path)
    payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(payload)
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl_numbered(path: str | os.PathLike) -> list[tuple[int, Any]]:
    """(line number, value) of every line of a JSON Lines file; [] when the file does not exist.

    The cut-last-line rule: a last line without its newline is the trace of a killed append and is dropped
    (with a warning) when it is not valid JSON; any other line that is not valid JSON raises ValueError
    naming the file and the line. Blank lines are skipped. The file is never changed.
    """
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_bytes().decode("utf-8").split("\n")
    rows = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append((lineno, json.loads(line)))
        except json.JSONDecodeError as exc:
            if lineno == len(lines):  # no newline after it: an append cut by a kill
                log.warning("%s: line %d is cut short (a write stopped mid-line); it is left out", path, lineno)
                continue
            raise ValueError(
                f"{path}: line {lineno}: not valid JSON ({exc.msg}); expected one JSON object per line"
            ) from None
    return rows


def read_jsonl(path: str | os.PathLike) -> list[Any]:
    """The rows of a JSON Lines file under the cut-last-line rule (read_jsonl_numbered)."""
    return [value for _, value in read_jsonl_numbered(path)]


def replace_dir(src: Path, dst: Path) -> None:
    """Move a finished folder into place, replacing any older one (the rename is the commit point)."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        trash = dst.with_name(f".{dst.name}.old")
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(dst, trash)
        os.replace(src, dst)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(src, dst)
    fsync_dir(dst.parent)


def tail_text(path: str | os.PathLike | None, lines: int) -> str:
    """The last `lines` lines of a log file, for error messages; "(no log)" when there is none."""
    if not path or not Path(path).exists():
        return "(no log)"
    return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
