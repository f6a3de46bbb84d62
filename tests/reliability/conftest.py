"""Sizes of the reliability suite: CI-sized by default, the full run with ``RS_RELIABILITY=full``.

``RS_RELIABILITY=full .venv/bin/python -m pytest tests/reliability -m reliability`` runs the
crash test with 10,000 referrals and 100 kills and the fault soak for 10 minutes per CRM (see
docs/RELIABILITY.md). Each size can be set on its own too: ``RS_CRASH_REFERRALS``,
``RS_CRASH_KILLS``, ``RS_SOAK_SECONDS``, ``RS_SOAK_REFERRALS``; ``RS_CRASH_KILL_SEED`` picks
other kill instants. A run writes its figures as
JSON lines to ``RS_RELIABILITY_REPORT`` (default: ``<pytest tmp dir>/reliability.jsonl``) and
keeps every daemon log in the test's tmp dir.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass(frozen=True, slots=True)
class Sizes:
    crash_referrals: int
    crash_kills: int
    soak_seconds: float
    soak_referrals: int
    full: bool


def _sizes() -> Sizes:
    full = os.environ.get("RS_RELIABILITY", "").strip().lower() == "full"
    env = os.environ.get
    return Sizes(
        crash_referrals=int(env("RS_CRASH_REFERRALS", 10_000 if full else 300)),
        crash_kills=int(env("RS_CRASH_KILLS", 100 if full else 5)),
        soak_seconds=float(env("RS_SOAK_SECONDS", 600 if full else 60)),
        soak_referrals=int(env("RS_SOAK_REFERRALS", 2_000 if full else 200)),
        full=full,
    )


@pytest.fixture(scope="session")
def sizes() -> Sizes:
    return _sizes()


@pytest.fixture(scope="session")
def report(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``report(name, figures)``: appends one JSON line of figures for docs/RELIABILITY.md."""
    path = Path(
        os.environ.get("RS_RELIABILITY_REPORT")
        or tmp_path_factory.getbasetemp() / "reliability.jsonl"
    )

    def write(name: str, figures: dict[str, Any]) -> None:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"test": name, **figures}, default=str) + "\n")

    return write
