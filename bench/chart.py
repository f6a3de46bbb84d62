"""The report as one PNG: throughput against the per-record flow, calls over the minimum,
engine CPU, peak RSS, and latency (matplotlib, the ``bench`` extra)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

__all__ = ["draw"]

COLOURS = {"salesforce": "#00a1e0", "dynamics": "#742774"}


def draw(report: Mapping[str, Any], path: Path) -> Path:
    figure, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    backfill = report["backfill"]
    crms = sorted({b["crm"] for b in backfill})
    (throughput, calls, cpu), (memory, latency, empty) = axes
    for crm in crms:
        runs = sorted((b for b in backfill if b["crm"] == crm), key=lambda b: b["n"])
        sizes = [b["n"] for b in runs]
        colour = COLOURS.get(crm, "grey")
        throughput.plot(sizes, [b["referrals_per_s"] for b in runs], "o-", color=colour, label=crm)
        calls.plot(sizes, [b["calls_over_minimum"] for b in runs], "o-", color=colour, label=crm)
        cpu.plot(
            sizes,
            [b["cpu_us_per_referral"]["engine"] for b in runs],
            "o-",
            color=colour,
            label=f"{crm}: engine",
        )
        cpu.plot(
            sizes,
            [b["cpu_us_per_referral"]["process"] for b in runs],
            "o--",
            color=colour,
            alpha=0.5,
            label=f"{crm}: whole process",
        )
        memory.plot(sizes, [b["peak_rss_mb"] for b in runs], "o-", color=colour, label=crm)
        for base in report["baseline"]:
            if base["crm"] == crm:
                throughput.axhline(
                    base["referrals_per_s"], color=colour, linestyle=":",
                    label=f"{crm}: per-record flow",
                )  # fmt: skip
    throughput.set(title="Backfill throughput", xlabel="referrals", ylabel="referrals / s")
    throughput.set_xscale("log")
    throughput.set_yscale("log")
    calls.axhline(1.02, color="red", linestyle="--", label="goal 1.02")
    calls.set(title="API calls ÷ the minimum", xlabel="referrals")
    calls.set_xscale("log")
    cpu.axhline(100, color="red", linestyle="--", label="goal 100 µs")
    cpu.set(title="CPU per referral", xlabel="referrals", ylabel="µs")
    cpu.set_xscale("log")
    cpu.set_yscale("log")
    memory.axhline(150, color="red", linestyle="--", label="goal 150 MB")
    memory.set(title="Engine peak RSS", xlabel="referrals", ylabel="MB")
    memory.set_xscale("log")
    memory.set_ylim(bottom=0)
    _latency(latency, report["latency"])
    empty.axis("off")
    empty.text(
        0,
        0.5,
        _caption(report),
        fontsize=9,
        family="monospace",
        verticalalignment="center",
    )
    for axis in (throughput, calls, cpu, memory):
        axis.grid(visible=True, alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _latency(axis: Any, items: list[Mapping[str, Any]]) -> None:  # noqa: ANN401 - a matplotlib Axes
    shown = [i for i in items if i["available"] and i["p95_s"] is not None]
    labels = [f"{i['crm'][:2]} {i['mode']}\n{_arrow(i['direction'])}" for i in shown]
    positions = range(len(shown))
    axis.bar([p - 0.2 for p in positions], [i["p50_s"] for i in shown], 0.4, label="p50")
    axis.bar([p + 0.2 for p in positions], [i["p95_s"] for i in shown], 0.4, label="p95")
    axis.scatter(
        list(positions), [i["goal_s"] for i in shown], marker="_", s=400, color="red",
        label="goal (p95)", zorder=3,
    )  # fmt: skip
    axis.set_xticks(list(positions), labels, fontsize=8)
    axis.set(title="Change → visible on the other side", ylabel="s")
    axis.grid(visible=True, axis="y", alpha=0.3)
    axis.legend(fontsize=8)


def _arrow(direction: str) -> str:
    return "PC→CRM" if direction.startswith("partner") else "CRM→PC"


def _caption(report: Mapping[str, Any]) -> str:
    options, machine = report["options"], report["machine"]
    return "\n".join(
        [
            f"latency injected: {options['latency_ms']:g} ms per call",
            f"machine: {machine['cpus']} CPUs, {machine.get('memory_gb')} GB",
            f"python {machine['python']}",
            f"run: {report['started_at'][:19]}",
            "",
            "dotted: the per-record flow",
            "(GET + upsert + PATCH a referral)",
        ]
    )
