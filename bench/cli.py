"""``python -m bench``: every scenario, then ``report.json``, ``report.md`` and ``chart.png``.

python -m bench                       # the full run: N = 1,000 / 5,000 / 10,000 / 50,000
python -m bench --smoke               # CI-sized: N = 1,000, few samples (about a minute)
python -m bench --sizes 1000,10000 --crm salesforce --latency-ms 50 --out bench-out
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from bench.report import SCHEMA_ID, judge, machine, markdown
from bench.scenarios import Options, backfill_and_churn, latency
from bench.world import Crm, World

__all__ = ["main", "run"]

SMOKE = Options(
    sizes=(1_000,),
    baseline_cap=100,
    churn_cycles=1,
    latency_referrals=200,
    latency_samples=3,
    poll_interval_s=1,
    smoke=True,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="the CI-sized run (N = 1,000)")
    parser.add_argument("--sizes", help="comma-separated N (default 1000,5000,10000,50000)")
    parser.add_argument(
        "--crm", action="append", choices=["salesforce", "dynamics"], help="default: both"
    )
    parser.add_argument("--latency-ms", type=float, help="injected per API call (default 20)")
    parser.add_argument("--out", type=Path, default=Path("bench-out"), help="output folder")
    parser.add_argument("--baseline-cap", type=int, help="referrals the per-record flow does")
    parser.add_argument("--write-concurrency", type=int, help="Partner Center write-backs at once")
    parser.add_argument("--latency-samples", type=int, help="changes timed per mode")
    parser.add_argument("--poll-interval", type=float, help="the daemon's interval, latency runs")
    parser.add_argument(
        "--skip", action="append", default=[], choices=["latency", "baseline"], help="leave out"
    )
    return parser


def _options(args: argparse.Namespace) -> Options:
    options = SMOKE if args.smoke else Options()
    changes: dict[str, Any] = {"out_dir": args.out}
    if args.sizes:
        changes["sizes"] = tuple(int(s.replace("_", "")) for s in args.sizes.split(","))
    if args.crm:
        changes["crms"] = tuple(cast("list[Crm]", args.crm))
    for flag, field in (
        ("latency_ms", "latency_ms"),
        ("baseline_cap", "baseline_cap"),
        ("write_concurrency", "write_concurrency"),
        ("latency_samples", "latency_samples"),
        ("poll_interval", "poll_interval_s"),
    ):
        if getattr(args, flag) is not None:
            changes[field] = getattr(args, flag)
    return replace(options, **changes)


def run(options: Options, *, skip: Sequence[str] = (), command: str = "") -> dict[str, Any]:
    """Every scenario; the report (also written to ``options.out_dir``)."""

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)  # noqa: T201 - progress for the person waiting

    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    started = datetime.now(UTC)
    report: dict[str, Any] = {
        "schema": SCHEMA_ID,
        "started_at": started.isoformat(),
        "command": command,
        "smoke": options.smoke,
        "machine": machine(),
        "options": {**asdict(options), "out_dir": str(options.out_dir)},
        "backfill": [],
        "echo": [],
        "churn": [],
        "idle": [],
        "latency": [],
        "baseline": [],
    }
    for crm in options.crms:
        for n in options.sizes:
            result = backfill_and_churn(crm, n, options, say)
            report["backfill"].append(result["backfill"])
            report["echo"].append(result["echo"])
            report["churn"].append(result["churn"])
            report["idle"].append(result["idle"])
        if "baseline" not in skip:
            report["baseline"].append(_baseline(crm, options, say))
        if "latency" not in skip:
            report["latency"].extend(latency(crm, options, say))
    for backfill in report["backfill"]:
        base = next((b for b in report["baseline"] if b["crm"] == backfill["crm"]), None)
        backfill["speedup"] = (
            backfill["referrals_per_s"] / base["referrals_per_s"]
            if base and base["referrals_per_s"]
            else None
        )
    report["goals"] = judge(report)
    report["finished_at"] = datetime.now(UTC).isoformat()
    _write(report, options.out_dir)
    return report


def _baseline(crm: Crm, options: Options, say: Callable[[str], None]) -> dict[str, Any]:
    from bench.baseline import run_baseline  # noqa: PLC0415

    n = min(options.baseline_cap, max(options.sizes))
    run_dir = options.out_dir / "runs" / f"{crm}-baseline"
    with World(run_dir, n, options.latency_ms, seed=options.seed) as world:
        config = world.write_config(crm, overlap_s=options.overlap_s)
        mark = world.mark()
        result = run_baseline(config, n)
        served = world.calls(mark)
    say(
        f"{crm} per-record baseline, N={result['n']}: {result['wall_s']:.1f} s, "
        f"{result['referrals_per_s']:.1f}/s"
    )
    return {"crm": crm, **result, "served": served}


def _write(report: dict[str, Any], out_dir: Path) -> None:
    from bench.chart import draw  # noqa: PLC0415

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out_dir / "report.md").write_text(markdown(report), encoding="utf-8")
    draw(report, out_dir / "chart.png")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    options = _options(args)
    command = "python -m bench " + shlex.join(list(argv if argv is not None else sys.argv[1:]))
    started = time.perf_counter()
    report = run(options, skip=args.skip, command=command.strip())
    print(markdown(report))  # noqa: T201 - the command's result
    print(  # noqa: T201
        f"report: {options.out_dir / 'report.json'}, chart: {options.out_dir / 'chart.png'} "
        f"({time.perf_counter() - started:.0f} s)"
    )
    return 0
