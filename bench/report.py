"""The report: its JSON schema, the goals judged against it, and its tables in Markdown."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping
from typing import Any

__all__ = ["REPORT_SCHEMA", "judge", "machine", "markdown"]

SCHEMA_ID = "referral-sync-bench/1"

_NUMBER = {"type": "number"}
_COUNT = {"type": "integer", "minimum": 0}
_CALLS = {
    "type": "object",
    "required": ["partner_center", "crm", "entra"],
    "properties": {"partner_center": _COUNT, "crm": _COUNT, "entra": _COUNT},
}
_CRM = {"enum": ["salesforce", "dynamics"]}
_CYCLE = {
    "type": "object",
    "required": ["wall_s", "cpu_s", "calls", "calls_by_route", "inbound", "outbound"],
    "properties": {
        "wall_s": _NUMBER,
        "cpu_s": _NUMBER,
        "calls": _CALLS,
        "calls_by_route": {"type": "object", "additionalProperties": _COUNT},
        "inbound": {"type": "object", "additionalProperties": _COUNT},
        "outbound": {"type": "object", "additionalProperties": _COUNT},
    },
}

REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": [
        "schema",
        "started_at",
        "finished_at",
        "command",
        "smoke",
        "machine",
        "options",
        "backfill",
        "echo",
        "churn",
        "idle",
        "latency",
        "baseline",
        "goals",
    ],
    "properties": {
        "schema": {"const": SCHEMA_ID},
        "started_at": {"type": "string"},
        "finished_at": {"type": "string"},
        "command": {"type": "string"},
        "smoke": {"type": "boolean"},
        "machine": {
            "type": "object",
            "required": ["cpus", "platform", "python"],
            "properties": {"cpus": _COUNT, "platform": {"type": "string"}},
        },
        "options": {
            "type": "object",
            "required": ["latency_ms", "sizes", "crms"],
            "properties": {
                "latency_ms": _NUMBER,
                "sizes": {"type": "array", "items": _COUNT, "minItems": 1},
                "crms": {"type": "array", "items": _CRM, "minItems": 1},
            },
        },
        "backfill": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": [
                    "crm",
                    "n",
                    "wall_s",
                    "referrals_per_s",
                    "calls",
                    "minimum",
                    "calls_over_minimum",
                    "cpu_us_per_referral",
                    "peak_rss_mb",
                    "converged",
                    "speedup",
                ],
                "properties": {
                    "crm": _CRM,
                    "n": _COUNT,
                    "wall_s": _NUMBER,
                    "referrals_per_s": _NUMBER,
                    "calls": _CALLS,
                    "minimum": {
                        "type": "object",
                        "required": ["partner_center_reads", "crm", "partner_center_writes"],
                        "additionalProperties": _NUMBER,
                    },
                    "calls_over_minimum": _NUMBER,
                    "cpu_us_per_referral": {
                        "type": "object",
                        "required": ["process", "http_client", "engine"],
                        "additionalProperties": _NUMBER,
                    },
                    "peak_rss_mb": _NUMBER,
                    "converged": {"type": "boolean"},
                    "speedup": {"type": ["number", "null"]},
                },
            },
        },
        "echo": {"type": "array", "items": _CYCLE},
        "churn": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["crm", "n", "fraction", "cycles"],
                "properties": {"cycles": {"type": "array", "items": _CYCLE}},
            },
        },
        "idle": {"type": "array", "items": _CYCLE},
        "latency": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["crm", "mode", "direction", "available", "samples", "p50_s", "p95_s"],
                "properties": {
                    "crm": _CRM,
                    "mode": {"enum": ["webhook", "poll"]},
                    "direction": {"enum": ["partner_center_to_crm", "crm_to_partner_center"]},
                    "available": {"type": "boolean"},
                    "samples": _COUNT,
                    "p50_s": {"type": ["number", "null"]},
                    "p95_s": {"type": ["number", "null"]},
                    "goal_s": {"type": ["number", "null"]},
                },
            },
        },
        "baseline": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["crm", "n", "wall_s", "referrals_per_s", "calls"],
                "properties": {"crm": _CRM, "n": _COUNT, "referrals_per_s": _NUMBER},
            },
        },
        "goals": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["goal", "target", "value", "met"],
                "properties": {
                    "goal": {"type": "string"},
                    "target": {"type": "string"},
                    "value": {"type": "string"},
                    "met": {"type": ["boolean", "null"]},
                },
            },
        },
    },
}
"""What ``python -m bench`` writes (``report.json``); the CI smoke test checks it."""


def machine() -> dict[str, Any]:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpus": cpus or 0,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "processor": platform.processor() or platform.machine(),
        "memory_gb": _memory_gb(),
    }


def _memory_gb() -> float | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:  # noqa: PTH123 - one read
            for line in handle:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        return None
    return None


def _goal(goal: str, target: str, value: str, met: bool | None) -> dict[str, Any]:
    return {"goal": goal, "target": target, "value": value, "met": met}


def judge(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each goal of the issue, met or not, with the figures it was judged on."""
    backfill = report["backfill"]
    goals = [
        _goal(
            "API calls of a backfill",
            "<= 1.02 x the minimum",
            ", ".join(f"{b['crm']} {b['n']}: x{b['calls_over_minimum']:.3f}" for b in backfill),
            all(b["calls_over_minimum"] <= 1.02 for b in backfill),
        )
    ]
    speedups = [b for b in backfill if b["speedup"] is not None]
    goals.append(
        _goal(
            "speed-up over the per-record flow",
            ">= 20 x",
            ", ".join(f"{b['crm']} {b['n']}: {b['speedup']:.1f}x" for b in speedups) or "n/a",
            all(b["speedup"] >= 20 for b in speedups) if speedups else None,
        )
    )
    goals.append(
        _goal(
            "engine CPU per referral (backfill)",
            "<= 100 us",
            ", ".join(
                f"{b['crm']} {b['n']}: {b['cpu_us_per_referral']['engine']:.0f} us"
                for b in backfill
            ),
            all(b["cpu_us_per_referral"]["engine"] <= 100 for b in backfill),
        )
    )
    goals.extend(_memory_goals(backfill))
    for item in report["latency"]:
        if not item["available"]:
            continue
        met = item["p95_s"] is not None and item["p95_s"] <= item["goal_s"] and not item["lost"]
        goals.append(
            _goal(
                f"latency {item['crm']} {item['direction']} by {item['mode']}, p95",
                f"<= {item['goal_s']:g} s",
                f"p95 {item['p95_s']} s, p50 {item['p50_s']} s, {item['lost']} lost",
                met,
            )
        )
    for idle in report["idle"]:
        calls = idle["calls"]
        goals.append(
            _goal(
                f"idle cycle {idle['crm']} {idle['n']}",
                "1 request per side",
                f"Partner Center {calls['partner_center']}, CRM {calls['crm']}",
                calls["partner_center"] == 1 and calls["crm"] == 1,
            )
        )
    return goals


def _memory_goals(backfill: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    goals = []
    for crm in sorted({b["crm"] for b in backfill}):
        runs = {b["n"]: b["peak_rss_mb"] for b in backfill if b["crm"] == crm}
        largest = max(runs)
        goals.append(
            _goal(
                f"peak RSS {crm} at {largest}",
                "<= 150 MB",
                f"{runs[largest]:.1f} MB",
                runs[largest] <= 150,
            )
        )
        if 5_000 in runs and largest > 5_000:
            growth = runs[largest] / runs[5_000] - 1
            goals.append(
                _goal(
                    f"peak RSS {crm} at {largest} vs 5000",
                    "<= +10 %",
                    f"{runs[largest]:.1f} MB vs {runs[5_000]:.1f} MB ({growth:+.1%})",
                    growth <= 0.10,
                )
            )
    return goals


def _number(value: object) -> str:
    return f"{value:.0f}" if isinstance(value, int | float) else "n/a"


def markdown(report: Mapping[str, Any]) -> str:
    """The report's tables, for docs/PERFORMANCE.md and the console."""
    lines = [
        (
            "| CRM | N | wall s | referrals/s | PC reads + writes | CRM calls | calls ÷ min "
            "| CRM calls ÷ min | engine µs/ref | process µs/ref | sandbox µs/ref | peak RSS MB "
            "| speed-up |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for b in report["backfill"]:
        cpu = b["cpu_us_per_referral"]
        speedup = "n/a" if b["speedup"] is None else f"{b['speedup']:.1f}x"
        lines.append(
            f"| {b['crm']} | {b['n']:,} | {b['wall_s']:.1f} | {b['referrals_per_s']:.0f} "
            f"| {b['partner_center_reads']:,} + {b['partner_center_writes']:,} "
            f"| {b['calls']['crm']:,} | {b['calls_over_minimum']:.3f} "
            f"| {b['crm_calls_over_minimum']:.1f} | {cpu['engine']:.0f} | {cpu['process']:.0f} "
            f"| {_number(cpu.get('sandbox'))} | {b['peak_rss_mb']:.0f} | {speedup} |"
        )
    lines += ["", "| baseline (per record) | N | wall s | referrals/s | PC calls | CRM calls |",
              "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for b in report["baseline"]:
        lines.append(
            f"| {b['crm']} | {b['n']:,} | {b['wall_s']:.1f} | {b['referrals_per_s']:.1f} "
            f"| {b['calls']['partner_center']:,} | {b['calls']['crm']:,} |"
        )
    lines += [
        "",
        "| cycle | CRM | N | PC calls | CRM calls | wall s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for echo in report["echo"]:
        lines.append(_cycle_row("echo of the backfill", echo))
    for churn in report["churn"]:
        for number, cycle in enumerate(churn["cycles"], 1):
            label = f"churn {churn['fraction']:.0%} #{number}"
            lines.append(_cycle_row(label, {**cycle, "crm": churn["crm"], "n": churn["n"]}))
    for idle in report["idle"]:
        lines.append(_cycle_row("idle", idle))
    lines += ["", "| latency | CRM | direction | p50 s | p95 s | goal s | samples | lost |",
              "|---|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for item in report["latency"]:
        if not item["available"]:
            lines.append(
                f"| {item['mode']} | {item['crm']} | {item['direction']} | n/a | n/a | | | |"
            )
            continue
        lines.append(
            f"| {item['mode']} | {item['crm']} | {item['direction']} | {item['p50_s']} "
            f"| {item['p95_s']} | {item['goal_s']:g} | {item['samples']} | {item['lost']} |"
        )
    lines += ["", "| goal | target | value | met |", "|---|---|---|---|"]
    for goal in report["goals"]:
        met = {True: "yes", False: "**no**", None: "n/a"}[goal["met"]]
        lines.append(f"| {goal['goal']} | {goal['target']} | {goal['value']} | {met} |")
    return "\n".join(lines) + "\n"


def _cycle_row(label: str, cycle: Mapping[str, Any]) -> str:
    calls = cycle["calls"]
    return (
        f"| {label} | {cycle['crm']} | {cycle['n']:,} | {calls['partner_center']:,} "
        f"| {calls['crm']:,} | {cycle['wall_s']:.2f} |"
    )
