"""The scenarios: backfill (then the echo of its own writes), churn, idle, and latency.

Each backfill runs in a fresh sandbox and a fresh engine process, so its peak RSS is its own.
The same engine then settles, churns and idles; the clocks of both jump together between
cycles (a cycle every ``interval_s`` of sandbox time, without waiting for it).
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

from bench.engine import EngineProcess
from bench.sides import CrmSide, PartnerCenterSide
from bench.world import CRM_SERVICE, Crm, World

__all__ = ["Options", "backfill_and_churn", "latency", "minimum_calls", "percentile"]

PC = "partner_center"


@dataclass(frozen=True, slots=True)
class Options:
    latency_ms: float = 20
    sizes: tuple[int, ...] = (1_000, 5_000, 10_000, 50_000)
    crms: tuple[Crm, ...] = ("salesforce", "dynamics")
    out_dir: Path = Path("bench-out")
    baseline_cap: int = 1_000
    write_concurrency: int | None = None  # None: the connector's default
    cycle_interval_s: float = 30  # sandbox time between churn cycles
    overlap_s: float = 60  # both feeds' overlap windows
    churn_fraction: float = 0.01
    churn_cycles: int = 3
    latency_referrals: int = 1_000
    latency_samples: int = 20
    poll_interval_s: float = 5
    seed: int = 1
    smoke: bool = False


def minimum_calls(crm: Crm, n: int) -> dict[str, float]:
    """The issue's minimum for a backfill of ``n``: N/100 Partner Center reads, N/200 Salesforce
    collection calls or N/1000 Dataverse batches, N Partner Center write-backs."""
    crm_calls = n / 200 if crm == "salesforce" else n / 1000
    return {"partner_center_reads": n / 100, "crm": crm_calls, "partner_center_writes": float(n)}


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) by linear interpolation, ``None`` for no values."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def _by_route(world: World, since: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in world.sb.log.entries()[since:]:
        key = f"{entry.service} {entry.method} {entry.route}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def _cycle(world: World, engine: EngineProcess, crm: Crm) -> dict[str, Any]:
    mark = world.mark()
    sandbox_cpu = time.process_time()  # this process: the simulators' threads (and an idle pipe)
    answer = engine.ask("cycle")
    sandbox_cpu = time.process_time() - sandbox_cpu
    calls = world.calls(mark)
    return {
        "wall_s": answer["wall_s"],
        "cpu_s": answer["cpu_s"],
        "sandbox_cpu_s": sandbox_cpu,
        "transport_cpu_s": answer["transport_cpu_s"],
        "max_rss_mb": answer["max_rss_mb"],
        "calls": {
            "partner_center": calls.get(PC, 0),
            "crm": calls.get(CRM_SERVICE[crm], 0),
            "entra": calls.get("entra", 0),
        },
        "calls_by_route": _by_route(world, mark),
        "inbound": answer["inbound"],
        "outbound": answer["outbound"],
        "errors": answer["errors"][:5],
    }


def _advance(world: World, engine: EngineProcess, seconds: float) -> None:
    world.sb.clock.advance(timedelta(seconds=seconds))
    engine.ask("advance", seconds=seconds)


def backfill_and_churn(
    crm: Crm, n: int, options: Options, say: Callable[[str], None]
) -> dict[str, Any]:
    """Backfill ``n`` referrals into ``crm``, then the echo cycle, churn cycles and idle."""
    run_dir = options.out_dir / "runs" / f"{crm}-{n}"
    with World(run_dir, n, options.latency_ms, seed=options.seed) as world:
        config = world.write_config(crm, overlap_s=options.overlap_s)
        pc, side = PartnerCenterSide(world.sb), CrmSide(world.sb, crm)
        open_referrals = pc.open_count()
        with EngineProcess(
            config, run_dir / "engine.log", write_concurrency=options.write_concurrency
        ) as engine:
            say(f"{crm} N={n}: backfill")
            first = _cycle(world, engine, crm)
            backfill = _backfill_record(crm, n, first, open_referrals)
            backfill["converged"] = side.count() == n and pc.linked() >= open_referrals
            say(
                f"  {backfill['wall_s']:.1f} s, {backfill['referrals_per_s']:.0f}/s, calls "
                f"{backfill['calls']}, x{backfill['calls_over_minimum']:.3f} of the minimum, "
                f"engine {backfill['cpu_us_per_referral']['engine']:.0f} us/referral, "
                f"RSS {backfill['peak_rss_mb']:.0f} MB"
            )
            _advance(world, engine, options.cycle_interval_s)
            echo = _cycle(world, engine, crm)
            say(f"  echo of its own writes: {echo['calls']}")
            churn = _churn(world, engine, crm, n, options, pc, side, say)
            idle = _idle(world, engine, crm, options)
            say(f"  idle: {idle['calls']}")
    return {
        "backfill": backfill,
        "echo": {"crm": crm, "n": n, **echo},
        "churn": churn,
        "idle": {"crm": crm, "n": n, **idle},
    }


def _backfill_record(
    crm: Crm, n: int, cycle: Mapping[str, Any], open_referrals: int
) -> dict[str, Any]:
    minimum = minimum_calls(crm, n)
    floor = sum(minimum.values())
    calls = cycle["calls"]
    made = calls["partner_center"] + calls["crm"]
    writes = sum(v for k, v in cycle["calls_by_route"].items() if k.startswith(f"{PC} PATCH"))
    reads = calls["partner_center"] - writes
    # Closed referrals take no write-back: the floor for this data set has only the open ones.
    data_floor = minimum["partner_center_reads"] + minimum["crm"] + open_referrals
    return {
        "crm": crm,
        "n": n,
        "wall_s": cycle["wall_s"],
        "referrals_per_s": n / cycle["wall_s"] if cycle["wall_s"] else 0.0,
        "calls": calls,
        "calls_by_route": cycle["calls_by_route"],
        "partner_center_reads": reads,
        "partner_center_writes": writes,
        "open_referrals": open_referrals,
        "minimum": minimum,
        "calls_over_minimum": made / floor,
        "calls_over_data_minimum": made / data_floor,
        "crm_calls_over_minimum": calls["crm"] / minimum["crm"],
        "cpu_us_per_referral": {
            "process": cycle["cpu_s"] / n * 1e6,
            "http_client": cycle["transport_cpu_s"] / n * 1e6,
            "engine": (cycle["cpu_s"] - cycle["transport_cpu_s"]) / n * 1e6,
            "sandbox": cycle["sandbox_cpu_s"] / n * 1e6,
        },
        "peak_rss_mb": cycle["max_rss_mb"],
        "inbound": cycle["inbound"],
        "errors": cycle["errors"],
    }


def _churn(  # noqa: PLR0917 - private; the scenario's parts, in order
    world: World,
    engine: EngineProcess,
    crm: Crm,
    n: int,
    options: Options,
    pc: PartnerCenterSide,
    side: CrmSide,
    say: Callable[[str], None],
) -> dict[str, Any]:
    rng = random.Random(options.seed)  # noqa: S311 - which records change, not security
    referrals = pc.open_referral_ids()
    cycles: list[dict[str, Any]] = []
    per_side = max(1, round(n * options.churn_fraction))
    for number in range(options.churn_cycles):
        _advance(world, engine, options.cycle_interval_s)
        for rid in rng.sample(referrals, min(per_side, len(referrals))):
            pc.edit_notes(rid, f"Microsoft, churn {number}: {rng.randint(1, 10**6)}")
        opportunities = side.open_opportunities()
        for opp in rng.sample(opportunities, min(per_side, len(opportunities))):
            value = float(rng.randrange(5_000, 500_000, 500))
            if opp.accepted:
                side.edit_value(opp.crm_id, value)
            else:
                side.accept(opp.crm_id, value)
        record = _cycle(world, engine, crm)
        cycles.append({"changed_partner_center": per_side, "changed_crm": per_side, **record})
        say(f"  churn {number + 1}: {record['calls']} in {record['wall_s']:.2f} s")
    return {"crm": crm, "n": n, "fraction": options.churn_fraction, "cycles": cycles}


def _idle(world: World, engine: EngineProcess, crm: Crm, options: Options) -> dict[str, Any]:
    """A cycle with nothing new, once both feeds' overlap windows have passed."""
    _advance(world, engine, options.overlap_s + 5)
    _cycle(world, engine, crm)  # re-reads the last overlap window once more
    _advance(world, engine, options.overlap_s + 5)
    return _cycle(world, engine, crm)


# -- latency --------------------------------------------------------------------------------


def latency(crm: Crm, options: Options, say: Callable[[str], None]) -> list[dict[str, Any]]:
    """Change → visible on the other side, by webhook then by poll, p50/p95."""
    run_dir = options.out_dir / "runs" / f"{crm}-latency"
    results: list[dict[str, Any]] = []
    with World(run_dir, options.latency_referrals, options.latency_ms, seed=options.seed) as world:
        pc, side = PartnerCenterSide(world.sb), CrmSide(world.sb, crm)
        for mode, interval in (("webhook", 3600.0), ("poll", options.poll_interval_s)):
            config = world.write_config(
                crm, interval_seconds=interval, overlap_s=options.overlap_s, name=f"-{mode}"
            )
            with EngineProcess(config, run_dir / f"engine-{mode}.log") as engine:
                engine.ask("daemon", webhooks=mode == "webhook", info=world.sb.info)
                say(f"{crm} latency by {mode}: daemon up, first cycle done")
                results.extend(_measure(mode, interval, pc, side, options))
                engine.ask("stop_daemon")
            world.sb.partner_center.webhooks.reset()  # no deliveries to a daemon that is gone
    for result in results:
        result["crm"] = crm
        say(
            f"  {result['mode']} {result['direction']}: p50 {result['p50_s']} s, "
            f"p95 {result['p95_s']} s ({result['samples']} samples, {result['lost']} lost)"
        )
    return results


def _measure(
    mode: str, interval: float, pc: PartnerCenterSide, side: CrmSide, options: Options
) -> list[dict[str, Any]]:
    rng = random.Random(options.seed)  # noqa: S311 - timing jitter, not security
    opportunities = side.open_opportunities()
    accepted = [o for o in opportunities if o.accepted]
    timeout = interval + 15 if mode == "poll" else 15.0
    to_crm: list[float | None] = []
    to_pc: list[float | None] = []
    for number in range(options.latency_samples):
        time.sleep(rng.uniform(0, interval) if mode == "poll" else 0.2)
        target = opportunities[number % len(opportunities)]
        token = f"latency {mode} {number} {rng.randint(1, 10**9)}"
        threads = [
            _timed(
                partial(pc.edit_notes, target.referral_id, token),
                partial(_equals, partial(side.notes, target.crm_id), token),
                timeout,
                to_crm,
            )
        ]
        if mode == "poll" and accepted:
            other = accepted[number % len(accepted)]
            value = float(100_000 + number)
            threads.append(
                _timed(
                    partial(side.edit_value, other.crm_id, value),
                    partial(_equals, partial(pc.deal_value, other.referral_id), value),
                    timeout,
                    to_pc,
                )
            )
        for thread in threads:
            thread.join()
    results = [_summary(mode, "partner_center_to_crm", to_crm, interval)]
    if mode == "poll":
        results.append(_summary(mode, "crm_to_partner_center", to_pc, interval))
    else:
        results.append(
            {
                "mode": mode,
                "direction": "crm_to_partner_center",
                "available": False,
                "note": "neither CRM sends the connector change events (no Salesforce CDC or "
                "Dataverse webhook in the product): CRM changes travel by poll only",
                "samples": 0,
                "lost": 0,
                "p50_s": None,
                "p95_s": None,
                "goal_s": None,
            }
        )
    return results


def _equals(read: Callable[[], object], expected: object) -> bool:
    return read() == expected


def _timed(
    change: Callable[[], None],
    visible: Callable[[], bool],
    timeout: float,
    into: list[float | None],
) -> threading.Thread:
    def run() -> None:
        started = time.monotonic()
        change()
        while not visible():
            if time.monotonic() - started > timeout:
                into.append(None)
                return
            time.sleep(0.01)
        into.append(time.monotonic() - started)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _summary(
    mode: str, direction: str, samples: list[float | None], interval: float
) -> dict[str, Any]:
    seen = sorted(s for s in samples if s is not None)
    p50, p95 = percentile(seen, 0.5), percentile(seen, 0.95)
    return {
        "mode": mode,
        "direction": direction,
        "available": True,
        "note": ""
        if mode == "webhook"
        else f"poll every {interval:g} s (+ up to {min(2.0, interval / 10):g} s scheduler jitter)",
        "samples": len(seen),
        "lost": len(samples) - len(seen),
        "p50_s": None if p50 is None else round(p50, 3),
        "p95_s": None if p95 is None else round(p95, 3),
        "goal_s": 2.0 if mode == "webhook" else interval + 1,
    }
