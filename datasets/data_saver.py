"""Preference pairs to parquet, atomically, with a fixed schema (so an empty split is still a valid file)."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from prosetting.core.io import atomic_write_bytes

_MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))

PAIR_SCHEMA = pa.schema(
    [
        ("prompt", _MESSAGES),
        ("chosen", _MESSAGES),
        ("rejected", _MESSAGES),
        ("question_id", pa.string()),
        ("round", pa.int32()),
        ("chosen_id", pa.string()),
        ("rejected_id", pa.string()),
        ("chosen_source", pa.string()),
    ]
)


def save_pairs_parquet(path: str | Path, rows: list[dict]) -> None:
    buf = io.BytesIO()
    if rows:
        pq.write_table(pa.Table.from_pylist(rows, schema=PAIR_SCHEMA), buf)
    else:
        # No row group at all: `datasets` reads a zero-row row group as batch size 0 and fails.
        pq.ParquetWriter(buf, PAIR_SCHEMA).close()
    atomic_write_bytes(path, buf.getvalue())


def count_rows(path: str | Path) -> int:
    return pq.ParquetFile(path).metadata.num_rows if Path(path).exists() else 0
