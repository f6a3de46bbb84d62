"""The CI-sized benchmark runs end to end and writes a well-formed report (no figures judged:
numbers on a shared CI machine say nothing; docs/PERFORMANCE.md has the full run's)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from bench.report import REPORT_SCHEMA

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
    subprocess.run(  # noqa: S603 - our own interpreter running our own module
        [sys.executable, "-m", "bench", "--smoke", "--crm", "salesforce", "--out", str(out)],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=240,
        capture_output=True,
    )
    return out


def test_the_smoke_run_writes_a_report_that_fits_the_schema(smoke: Path):
    report = json.loads((smoke / "report.json").read_text(encoding="utf-8"))

    jsonschema.validate(report, REPORT_SCHEMA)
    assert report["smoke"] is True
    assert [(b["crm"], b["n"]) for b in report["backfill"]] == [("salesforce", 1000)]
    assert {(i["mode"], i["direction"]) for i in report["latency"]} == {
        ("webhook", "partner_center_to_crm"),
        ("webhook", "crm_to_partner_center"),
        ("poll", "partner_center_to_crm"),
        ("poll", "crm_to_partner_center"),
    }


def test_the_smoke_run_draws_its_chart_and_tables(smoke: Path):
    assert (smoke / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    tables = (smoke / "report.md").read_text(encoding="utf-8")
    assert "| salesforce | 1,000 |" in tables
    assert "| goal | target | value | met |" in tables
