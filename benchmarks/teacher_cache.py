"""The Teacher call cache at scale: open time, memory, lookups, two runs sharing it, a SIGKILL during writes.

    python benchmarks/teacher_cache.py                          # 300,000 and 1,000,000 calls of ~1.6 kB
    python benchmarks/teacher_cache.py --sizes 300000 --dir /data/bench   # where the databases are built

1. For each size, a cache of that many calls (~1.6 kB each, as grading answers with their prompts' keys) is
   built once; then, each in a fresh process: the time and resident memory (RSS) to open it, as a
   difference from opening an empty cache, and lookups per second (random keys that are there).
2. The JSON Lines cache of earlier versions at the first size, read whole as it was: open time and memory.
   And the one-time carry-over of that file into the database.
3. Two runs sharing one cache folder at once, each its own process with 4 threads, walking the same calls in
   opposite orders with a 2 ms "paid call" on a miss: answers lost (0 expected) and calls one run paid for
   although the other had stored the answer before the call started (0 expected).
4. A writer process (4 threads) killed with SIGKILL while it stores calls: calls it reported stored that are
   gone (0 expected), the database's integrity check, and that a new writer works at once.

Goals (issue 17): 300,000 calls open in <= 0.5 s and <= 150 MB more than an empty cache; >= 50,000 lookups/s.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from prosetting.benchmarks.doc_figures import update_pages
from prosetting.teacher_model.call_cache import LEGACY_FILE, CallCache

RECORD_TEXT = 1_300  # characters of answer text: with its key and usage, a 1.6 kB line of the old JSON Lines cache


def key_of(i: int) -> str:
    return hashlib.sha256(f"call {i}".encode()).hexdigest()


def text_of(i: int) -> str:
    base = f'{{"verdicts": [{{"attempt": 1, "correct": false, "error": "call {i}: the carry is dropped"}}]}} '
    return (base * (RECORD_TEXT // len(base) + 1))[:RECORD_TEXT]


USAGE = {"prompt_tokens": 412, "completion_tokens": 38}


def build(folder: Path, n: int) -> float:
    """A cache of n calls in `folder`; seconds it took (10,000 calls per transaction)."""
    t0 = time.perf_counter()
    cache = CallCache(folder)
    for start in range(len(cache), n, 10_000):
        cache.put_many((key_of(i), text_of(i), USAGE) for i in range(start, min(n, start + 10_000)))
    cache.close()
    return time.perf_counter() - t0


def build_legacy(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LEGACY_FILE, "w") as f:
        for i in range(n):
            f.write(json.dumps({"key": key_of(i), "text": text_of(i), "usage": USAGE}, ensure_ascii=False) + "\n")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ---------------------------------------------------------------- measured in a fresh process each
def probe_open(folder: str, n: int, lookups: int) -> dict:
    """Open the cache in `folder` (n calls), then time `lookups` random hits."""
    rss0 = rss_mb()
    t0 = time.perf_counter()
    cache = CallCache(folder)
    first = cache.get(key_of(0)) if n else None
    opened = time.perf_counter() - t0
    rss_open = rss_mb()
    out = {"open_s": opened, "rss_open_mb": rss_open - rss0}
    if n and lookups:
        rng = random.Random(0)
        keys = [key_of(rng.randrange(n)) for _ in range(lookups)]
        t0 = time.perf_counter()
        found = sum(cache.get(k) is not None for k in keys)
        out["lookups_first_per_s"] = lookups / (time.perf_counter() - t0)  # the OS file cache as it was
        with open(cache.path, "rb") as f:  # the database in the OS file cache, as in a run that has used it a while
            while f.read(1 << 24):
                pass
        keys = [key_of(rng.randrange(n)) for _ in range(lookups)]
        t0 = time.perf_counter()
        found += sum(cache.get(k) is not None for k in keys)
        out["lookups_per_s"] = lookups / (time.perf_counter() - t0)
        out["found"] = found
        out["rss_after_lookups_mb"] = rss_mb() - rss0
        assert first is not None and first["text"] == text_of(0) and found == 2 * lookups
    cache.close()
    return out


def probe_legacy(folder: str) -> dict:
    """The JSON Lines cache of earlier versions, opened as it was: the whole file into a dict."""
    rss0 = rss_mb()
    t0 = time.perf_counter()
    records = {}
    data = (Path(folder) / LEGACY_FILE).read_bytes()
    for line in data[: data.rfind(b"\n") + 1].splitlines():
        rec = json.loads(line)
        records[rec["key"]] = rec
    del data
    return {"open_s": time.perf_counter() - t0, "rss_open_mb": rss_mb() - rss0, "calls": len(records)}


def probe_puts(folder: str, n: int = 2000) -> dict:
    """Stores per second, one call per transaction (each fsync'd), as the Teacher's calls are stored."""
    cache = CallCache(folder)
    t0 = time.perf_counter()
    for i in range(n):
        cache.put(key_of(i), text_of(i), USAGE)
    seconds = time.perf_counter() - t0
    cache.close()
    return {"puts_per_s": n / seconds}


def probe_carry_over(folder: str) -> dict:
    t0 = time.perf_counter()
    cache = CallCache(folder)
    first = time.perf_counter() - t0
    n = len(cache)
    cache.close()
    t0 = time.perf_counter()
    CallCache(folder).close()
    return {"carry_over_s": first, "calls": n, "second_open_s": time.perf_counter() - t0}


def in_fresh_process(func: str, *args) -> dict:
    code = (
        f"import json, sys; from prosetting.benchmarks.teacher_cache import {func}; "
        f"print('RESULT ' + json.dumps({func}(*json.loads(sys.argv[1]))))"
    )
    out = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True, check=True)
    return json.loads(next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))[7:])


# ---------------------------------------------------------------- two runs sharing one cache
def shared_worker(folder: str, who: str, n: int, threads: int, latency: float, log_path: str) -> None:
    """One run: walks calls 0..n-1 (run "b" backwards), pays `latency` for each call the cache cannot answer,
    stores it; logs (call, hit, monotonic start, monotonic end) for each."""
    cache = CallCache(folder)
    order = list(range(n)) if who == "a" else list(range(n - 1, -1, -1))
    rows, lock, position = [], threading.Lock(), iter(order)

    def work():
        while True:
            with lock:
                i = next(position, None)
            if i is None:
                return
            start = time.monotonic_ns()
            hit = cache.get(key_of(i)) is not None
            if not hit:
                time.sleep(latency)  # the paid call
                cache.put(key_of(i), f"{who}:{i}", USAGE)
            with lock:
                rows.append((i, hit, start, time.monotonic_ns()))

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    cache.close()
    Path(log_path).write_text(json.dumps(rows))


def shared_runs(folder: Path, n: int = 4000, threads: int = 4, latency: float = 0.002) -> dict:
    """Two processes at once on one cache folder; what each paid for, and whether any answer was lost or
    paid for twice although it was stored before the second call started."""
    procs, logs = [], {}
    for who in ("a", "b"):
        logs[who] = folder.parent / f"shared_{who}.json"
        code = (
            "import sys; from prosetting.benchmarks.teacher_cache import shared_worker; "
            "shared_worker(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), "
            "sys.argv[6])"
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", code, str(folder), who, str(n), str(threads), str(latency), str(logs[who])]
            )
        )
    t0 = time.perf_counter()
    for p in procs:
        if p.wait(timeout=600) != 0:
            raise RuntimeError(f"shared-cache worker exited with {p.returncode}")
    seconds = time.perf_counter() - t0
    rows = {who: json.loads(path.read_text()) for who, path in logs.items()}
    stored_at = {who: {i: end for i, hit, start, end in r if not hit} for who, r in rows.items()}
    cache = CallCache(folder)
    lost = sum(1 for who in rows for i in stored_at[who] if cache.get(key_of(i)) is None)
    wrong = sum(
        1 for i in range(n) if (rec := cache.get(key_of(i))) is not None and rec["text"] not in (f"a:{i}", f"b:{i}")
    )
    cache.close()
    # A call run X paid for, although run Y had stored its answer before X's lookup started.
    repeated = sum(
        1
        for x, y in (("a", "b"), ("b", "a"))
        for i, hit, start, end in rows[x]
        if not hit and i in stored_at[y] and stored_at[y][i] < start
    )
    paid = {who: len(stored_at[who]) for who in rows}
    return {
        "calls": n,
        "paid_a": paid["a"],
        "paid_b": paid["b"],
        "used_the_others": 2 * n - paid["a"] - paid["b"],
        "paid_by_both": sum(1 for i in stored_at["a"] if i in stored_at["b"]),
        "answers_lost": lost + wrong,
        "repeated_after_stored": repeated,
        "seconds": round(seconds, 2),
    }


# ---------------------------------------------------------------- many runs opening one cache at once
def open_worker(folder: str, who: int, n: int, start_at: float, log_path: str) -> None:
    """One run: waits for the common start time, opens (creates, switches to WAL, carries over) the cache,
    stores calls who*n .. who*n+n-1 and reads back every call of the legacy file; logs what it saw."""
    time.sleep(max(0.0, start_at - time.time()))
    cache = CallCache(folder)
    for i in range(who * n, who * n + n):
        cache.put(key_of(i), text_of(i), USAGE)
    legacy = [json.loads(line)["key"] for line in (Path(folder) / LEGACY_FILE).read_text().splitlines()]
    seen = sum(cache.get(key) is not None for key in legacy)
    cache.close()
    Path(log_path).write_text(json.dumps({"legacy": len(legacy), "legacy_seen": seen}))


def open_race(folder: Path, processes: int = 6, n: int = 50, legacy: int = 200) -> dict:
    """`processes` runs opening one new cache folder (holding a JSON Lines cache to carry over) at the same
    moment; each then stores its own calls. How many failed, and what was lost."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LEGACY_FILE, "w") as f:
        for i in range(10**6, 10**6 + legacy):
            f.write(json.dumps({"key": key_of(i), "text": text_of(i), "usage": USAGE}) + "\n")
    code = (
        "import sys; from prosetting.benchmarks.teacher_cache import open_worker; "
        "open_worker(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5])"
    )
    start_at = time.time() + 3.0  # every process imported and waiting before the first opens
    logs = [folder.parent / f"open_{who}.json" for who in range(processes)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(folder), str(who), str(n), str(start_at), str(logs[who])],
            stderr=subprocess.PIPE,
            text=True,
        )
        for who in range(processes)
    ]
    errors = [err for p in procs if (err := p.communicate(timeout=600)[1]) and p.returncode != 0]
    seen = [json.loads(path.read_text()) for path in logs if path.is_file()]
    cache = CallCache(folder)
    lost = sum(cache.get(key_of(i)) is None for i in range(processes * n))
    legacy_lost = sum(cache.get(key_of(i)) is None for i in range(10**6, 10**6 + legacy))
    integrity = cache._read.execute("PRAGMA integrity_check").fetchone()[0]
    cache.close()
    return {
        "processes": processes,
        "failed": len(errors),
        "errors": [e.strip().splitlines()[-1] for e in errors],
        "answers_lost": lost,
        "legacy_lost": legacy_lost,
        "legacy_seen_by_each": [s["legacy_seen"] for s in seen],
        "integrity": integrity,
    }


# ---------------------------------------------------------------- SIGKILL during writes
def kill_writer(folder: str, start: int, threads: int) -> None:
    """Stores calls start, start+1, ... from `threads` threads until killed; prints each one's number once
    `put` has returned."""
    cache = CallCache(folder)
    lock, counter = threading.Lock(), iter(range(start, 10**9))

    def work():
        while True:
            with lock:
                i = next(counter)
            cache.put(key_of(i), text_of(i), USAGE)
            with lock:
                sys.stdout.write(f"{i}\n")
                sys.stdout.flush()

    for _ in range(threads):
        threading.Thread(target=work, daemon=True).start()
    threading.Event().wait()


def kill_during_writes(folder: Path, after: int = 500, threads: int = 4) -> dict:
    """SIGKILL a writer once it reported `after` calls stored; what survives."""
    code = (
        "import sys; from prosetting.benchmarks.teacher_cache import kill_writer; "
        "kill_writer(sys.argv[1], 0, int(sys.argv[2]))"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder), str(threads)], stdout=subprocess.PIPE, text=True)
    reported = []
    for line in proc.stdout:
        reported.append(int(line))
        if len(reported) >= after:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    reported += [int(x) for x in proc.stdout.read().split()]  # lines already in the pipe
    cache = CallCache(folder)
    integrity = cache._read.execute("PRAGMA integrity_check").fetchone()[0]
    present = len(cache)
    missing = [i for i in reported if cache.get(key_of(i)) is None]
    intact = all(cache.get(key_of(i))["text"] == text_of(i) for i in reported[:200])
    top = max(reported) + 1
    cache.put(key_of(top + threads), text_of(top + threads), USAGE)  # a new writer, at once
    after_kill = cache.get(key_of(top + threads)) is not None
    cache.close()
    return {
        "reported_stored": len(reported),
        "present": present,
        "reported_but_missing": len(missing),
        "stored_not_reported": present - len(reported),
        "integrity": integrity,
        "texts_intact": intact,
        "new_writer_ok": after_kill,
        "signal": -proc.returncode,
    }


# ---------------------------------------------------------------- the run
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[300_000, 1_000_000])
    parser.add_argument("--lookups", type=int, default=200_000)
    parser.add_argument(
        "--dir", type=Path, default=None, help="where to build the caches (default: a temporary folder)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument(
        "--update-docs",
        action="store_true",
        help="then rewrite the figures README.md and docs/ read from results/ (benchmarks/doc_figures.py)",
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="cache_bench_", dir=args.dir))
    results: dict = {"load_average": os.getloadavg()[0], "cpus": os.cpu_count()}
    try:
        empty = in_fresh_process("probe_open", str(root / "empty"), 0, 0)
        results["empty"] = empty
        for n in args.sizes:
            folder = root / f"sqlite_{n}"
            built = build(folder, n)
            probe = in_fresh_process("probe_open", str(folder), n, args.lookups)
            size_mb = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
            results[f"sqlite_{n}"] = {
                **probe,
                "open_minus_empty_s": probe["open_s"] - empty["open_s"],
                "rss_minus_empty_mb": probe["rss_open_mb"] - empty["rss_open_mb"],
                "build_s": built,
                "size_mb": size_mb,
            }
            shutil.rmtree(folder)
            n0 = args.sizes[0]
            if n == n0:
                legacy = root / f"jsonl_{n0}"
                build_legacy(legacy, n0)
                results[f"jsonl_{n0}"] = {
                    **in_fresh_process("probe_legacy", str(legacy)),
                    "size_mb": (legacy / LEGACY_FILE).stat().st_size / 2**20,
                }
                results[f"carry_over_{n0}"] = in_fresh_process("probe_carry_over", str(legacy))
                shutil.rmtree(legacy)
        results["puts"] = in_fresh_process("probe_puts", str(root / "puts"))
        results["shared"] = shared_runs(root / "shared")
        results["sigkill"] = kill_during_writes(root / "killed")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report(results, args.sizes)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.update_docs:
        update_pages()


def report(r: dict, sizes: list[int]) -> None:
    print(f"load average {r['load_average']:.1f} on {r['cpus']} CPUs (figures under load are not idle figures)")
    print("| cache | calls | size (MB) | open (s) | RSS over empty (MB) | lookups/s (file cached) | first pass |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| SQLite, empty | 0 | - | {r['empty']['open_s']:.3f} | 0 ({r['empty']['rss_open_mb']:.1f} MB to open) | - | "
        "- |"
    )
    for n in sizes:
        s = r[f"sqlite_{n}"]
        print(
            f"| SQLite (WAL) | {n:,} | {s['size_mb']:.0f} | {s['open_s']:.3f} | {s['rss_minus_empty_mb']:.1f} "
            f"| {s['lookups_per_s']:,.0f} | {s['lookups_first_per_s']:,.0f} |"
        )
    n0 = sizes[0]
    j = r[f"jsonl_{n0}"]
    print(
        f"| JSON Lines, read whole (before) | {n0:,} | {j['size_mb']:.0f} | {j['open_s']:.2f} | {j['rss_open_mb']:.0f} "
        "| - | - |"
    )
    print("(RSS over empty: just after opening and one lookup; the 200,000 looked-up keys themselves take ~28 MB more)")
    c = r[f"carry_over_{n0}"]
    print(
        f"\ncarry-over of a {n0:,}-call teacher_calls.jsonl: {c['carry_over_s']:.1f} s once "
        f"({c['calls']:,} calls); the next open {c['second_open_s']:.3f} s"
    )
    print(f"stores: {r['puts']['puts_per_s']:,.0f} calls/s, one transaction (fsync'd) each")
    s = r["shared"]
    print(
        f"two runs sharing one cache ({s['calls']} calls each, opposite orders, 4 threads each): run a paid "
        f"{s['paid_a']}, run b {s['paid_b']}, {s['used_the_others']} answers used from the other run, "
        f"{s['paid_by_both']} paid by both at the same moment; answers lost {s['answers_lost']}, "
        f"calls repeated after the other had stored them {s['repeated_after_stored']}"
    )
    k = r["sigkill"]
    print(
        f"SIGKILL during writes (4 threads): {k['reported_stored']} calls reported stored, "
        f"{k['reported_but_missing']} of them missing; {k['stored_not_reported']} stored but not yet reported; "
        f"integrity_check {k['integrity']}; a new writer at once: {'ok' if k['new_writer_ok'] else 'FAILED'}"
    )
    s300 = r.get("sqlite_300000")
    if s300:
        ok = (s300["open_s"] <= 0.5, s300["rss_minus_empty_mb"] <= 150, s300["lookups_per_s"] >= 50_000)
        print(
            f"goals at 300,000: open <= 0.5 s {'met' if ok[0] else 'MISSED'}; <= 150 MB over empty "
            f"{'met' if ok[1] else 'MISSED'}; >= 50,000 lookups/s {'met' if ok[2] else 'MISSED'}"
        )


if __name__ == "__main__":
    main()
