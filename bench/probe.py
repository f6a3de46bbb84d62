"""One backfill in the engine child, looked into: where its memory and its CPU go.

python -m bench.probe --crm salesforce --n 5000 --out /tmp/probe            # RSS, calls, cursor
python -m bench.probe --crm salesforce --n 5000 --tracemalloc --out /tmp/p  # + heap at its peak
python -m bench.probe --crm salesforce --n 2000 --profile --out /tmp/p      # + cProfile, top 40
python -m bench.probe --diff /tmp/p1/heap.snap /tmp/p2/heap.snap            # what grew with N

The backfill is the benchmark's (:func:`bench.scenarios.backfill_and_churn` without the churn):
a fresh sandbox and engine process, then the echo cycle and an idle one, with their API calls.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import pstats
import sqlite3
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.engine import EngineProcess
from bench.scenarios import Options, _advance, _cycle, _idle
from bench.world import Crm, World

__all__ = ["main"]


def _say(line: str) -> None:
    print(line, file=sys.stdout, flush=True)  # noqa: T201 - the probe's result


def _cursor_size(state_db: Path) -> tuple[int, int]:
    """(entries of the Partner Center cursor's ``seen``, its JSON length in characters)."""
    with sqlite3.connect(state_db) as db:
        rows = db.execute("SELECT stream, value FROM cursors").fetchall()
    for stream, value in rows:
        if stream == "partner_center":
            return len(json.loads(value).get("seen", {})), len(value)
    return 0, 0


def probe(
    crm: Crm, n: int, out: Path, *, heap: bool, profile: bool, write_concurrency: int | None
) -> None:
    options = Options()
    out.mkdir(parents=True, exist_ok=True)
    with World(out / "run", n, options.latency_ms, seed=options.seed) as world:
        config = world.write_config(crm, overlap_s=options.overlap_s)
        with EngineProcess(
            config, out / "engine.log", write_concurrency=write_concurrency
        ) as engine:
            fields: dict[str, object] = {}
            if heap:
                fields["tracemalloc"] = str(out / "heap.snap")
            if profile:
                fields["profile"] = str(out / "cycle.prof")
            if not heap and not profile:
                fields["gauges"] = str(out / "gauges.jsonl")
            mark = world.mark()
            answer = engine.ask("cycle", **fields)
            calls = world.calls(mark)
            engine_cpu = answer["cpu_s"] - answer["transport_cpu_s"]
            _say(
                f"{crm} N={n}: backfill {answer['wall_s']:.1f} s, calls {calls}, "
                f"engine {engine_cpu / n * 1e6:.0f} us/ref, process "
                f"{answer['cpu_s'] / n * 1e6:.0f} us/ref, peak RSS {answer['max_rss_mb']:.1f} MB"
            )
            entries, chars = _cursor_size(out / "run" / "state.db")
            _say(f"  cursor after the backfill: {entries} seen entries, {chars} characters")
            if "gauges" in fields:
                _gauges(out / "gauges.jsonl")
            _advance(world, engine, options.cycle_interval_s)
            echo = _cycle(world, engine, crm)
            _say(f"  echo: {echo['calls']}")
            idle = _idle(world, engine, crm, options)
            _say(f"  idle: {idle['calls']}")
    if heap:
        _say((out / "heap.peak").read_text(encoding="ascii").strip() + " (traced peak, best)")
        _top(tracemalloc.Snapshot.load(str(out / "heap.snap")).statistics("lineno"))
    if profile:
        stats = pstats.Stats(str(out / "cycle.prof"))
        stats.sort_stats("tottime").print_stats(40)
        stats.sort_stats("cumulative").print_stats(60)


def _gauges(path: Path) -> None:
    samples = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    if not samples:
        return
    step = max(1, len(samples) // 12)
    for sample in [*samples[::step], samples[-1]]:
        _say("  " + " ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in sample.items() if k != "t"))  # fmt: skip


def _top(stats: Sequence[tracemalloc.StatisticDiff | tracemalloc.Statistic], k: int = 25) -> None:
    for stat in stats[:k]:
        _say(f"  {stat}")


def diff(small: Path, large: Path) -> None:
    before = tracemalloc.Snapshot.load(str(small))
    after = tracemalloc.Snapshot.load(str(large))
    _top(after.compare_to(before, "lineno"))
    _say("by traceback:")
    for stat in after.compare_to(before, "traceback")[:6]:
        _say(f"  {stat}")
        for line in stat.traceback.format()[-12:]:
            _say(f"      {line}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.probe", description=__doc__)
    parser.add_argument("--crm", choices=["salesforce", "dynamics"], default="salesforce")
    parser.add_argument("--n", type=int, default=2_000)
    parser.add_argument("--out", type=Path, default=Path("probe-out"))
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--profile", action="store_true", help="best with --write-concurrency 1")
    parser.add_argument("--write-concurrency", type=int, help="1: every write-back profiled")
    parser.add_argument("--diff", nargs=2, type=Path, metavar=("SMALL", "LARGE"))
    args = parser.parse_args(argv)
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    if args.diff:
        diff(*args.diff)
        return 0
    probe(
        args.crm,
        args.n,
        args.out,
        heap=args.tracemalloc,
        profile=args.profile,
        write_concurrency=args.write_concurrency,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


class Gauges:
    """In the engine child, over one cycle: what the structures suspected of growing with N
    hold, sampled every second next to the process's RSS, written as JSON lines to ``path``.

    The feed's ``seen`` (its largest, per page), the cursor JSON the state store writes (its
    largest), ``OwnWrites``, the Python heap in blocks, and SQLite's own allocations."""

    def __init__(self, connection: Any, path: Path, every_s: float = 1.0) -> None:  # noqa: ANN401 - connector.wiring.Connection
        self._connection = connection
        self._path = path
        self._every = every_s
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gauges", daemon=True)
        self.seen_max = 0
        self.cursor_chars_max = 0
        self._sqlite = _sqlite_memory()
        self._undo: list[Callable[[], None]] = []

    def start(self) -> None:
        from connector.partner_center import adapter  # noqa: PLC0415 - the child's

        gauges = self
        page = adapter._Feed.page

        def counted_page(feed: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
            result = page(feed, *args, **kwargs)
            gauges.seen_max = max(gauges.seen_max, len(result.cursor.seen))
            return result

        adapter._Feed.page = counted_page  # type: ignore[method-assign]
        self._undo.append(lambda: setattr(adapter._Feed, "page", page))
        store = self._connection.sync._store
        record_page = store.record_page

        def counted_record(*args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
            cursor = kwargs.get("cursor")
            if cursor is not None:
                chars = len(json.dumps(cursor))
                gauges.cursor_chars_max = max(gauges.cursor_chars_max, chars)
            return record_page(*args, **kwargs)

        store.record_page = counted_record
        self._undo.append(lambda: delattr(store, "record_page"))
        self._thread.start()

    def _sample(self) -> dict[str, float]:
        own = self._connection.sync.own_writes
        return {
            "t": time.monotonic(),
            "rss_mb": _status_mb("VmRSS"),
            "hwm_mb": _status_mb("VmHWM"),
            "py_blocks": sys.getallocatedblocks(),
            "sqlite_mb": self._sqlite() / 2**20,
            "own_writes": len(own._at),
            "seen_max": self.seen_max,
            "cursor_chars_max": self.cursor_chars_max,
            "threads": threading.active_count(),
        }

    def _run(self) -> None:
        with self._path.open("w", encoding="utf-8") as out:
            while not self._done.wait(self._every):
                out.write(json.dumps(self._sample()) + "\n")
            out.write(json.dumps(self._sample()) + "\n")

    def stop(self) -> None:
        self._done.set()
        self._thread.join()
        for undo in self._undo:
            undo()


def _status_mb(key: str) -> float:
    with Path("/proc/self/status").open(encoding="ascii") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def _sqlite_memory() -> Callable[[], int]:
    try:
        lib = ctypes.CDLL("libsqlite3.so.0")
    except OSError:
        return lambda: 0
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    return lambda: int(lib.sqlite3_memory_used())
