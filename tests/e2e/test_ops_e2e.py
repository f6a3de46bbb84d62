"""The ops HTTP server against a real sync on the sandbox: readiness flips with the CRM, and the
metrics say what the cycle summaries say."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from connector.daemon.ops import Ops
from connector.observe.metrics import Metrics
from connector.settings import RetrySettings, load_settings
from connector.state import open_state_store
from connector.tour import write_sandbox_config
from connector.wiring import Connection, build_connection
from sandbox.app import Sandbox
from sandbox.partner_center import generate_referrals

pytestmark = pytest.mark.e2e


@pytest.fixture
def ops(sandbox: Sandbox, tmp_path: Path) -> Iterator[tuple[Sandbox, Connection, Ops, str]]:
    sandbox.partner_center.store.clear()
    sandbox.salesforce.store.clear()
    sandbox.partner_center.store.seed_raw(generate_referrals(25, 4, sandbox.clock))
    settings = load_settings(write_sandbox_config(sandbox, tmp_path, interval_seconds=5))
    conn_settings = settings.connections[0]
    assert conn_settings.salesforce is not None
    quick = RetrySettings(max_attempts=2, max_seconds=2, base_seconds=0.05, cap_seconds=0.1)
    conn_settings = replace(
        conn_settings, salesforce=replace(conn_settings.salesforce, retry=quick)
    )
    store = open_state_store("memory://")
    metrics = Metrics()
    connection = build_connection(
        conn_settings,
        store,
        clock=sandbox.clock,
        on_request=metrics.observe_request,
        on_retry=metrics.observe_retry,
    )
    connection.partner_center.auth.login()
    server = Ops([connection], store, clock=sandbox.clock, metrics=metrics)
    url = server.serve("127.0.0.1", 0)
    yield sandbox, connection, server, url
    server.stop()
    sandbox.faults.clear()


def get(url: str) -> requests.Response:
    with requests.Session() as session:
        session.trust_env = False
        return session.get(url, timeout=10)


def metric(url: str, name: str, **labels: str) -> float:
    text = get(f"{url}/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def cycle(connection: Connection, server: Ops) -> Any:
    result = connection.sync.run_cycle()
    server.observe(connection, result)
    return result


def test_readiness_follows_the_crm_down_and_back_and_metrics_match_the_summaries(ops):
    sandbox, connection, server, url = ops
    assert get(f"{url}/healthz").status_code == 200
    assert get(f"{url}/readyz").status_code == 503  # no cycle yet

    result = cycle(connection, server)

    assert get(f"{url}/readyz").status_code == 200
    created = result.inbound.counts["created"]
    assert created == 25
    labels = {"connection": "sandbox", "direction": "inbound"}
    assert metric(url, "referral_sync_records_total", action="created", **labels) == created
    assert metric(url, "referral_sync_cycles_total", outcome="ok", **labels) == 1

    sandbox.faults.set_plan("salesforce:503=1.0,retry_after=0")
    down = cycle(connection, server)

    assert down.outbound.failed
    ready = get(f"{url}/readyz")
    assert ready.status_code == 503
    assert "outbound" in ready.json()["connections"]["sandbox"]
    assert (
        metric(
            url,
            "referral_sync_cycles_total",
            outcome="failed",
            connection="sandbox",
            direction="outbound",
        )
        == 1
    )

    refused = metric(url, "referral_sync_api_requests_total", service="salesforce", status="503")
    assert refused >= 2
    # two attempts per request (max_attempts=2): one retry, after the Retry-After it was given
    assert metric(url, "referral_sync_retries_total", service="salesforce") == refused / 2
    assert metric(url, "referral_sync_rate_limit_wait_seconds_total", service="salesforce") > 0
    assert metric(url, "referral_sync_retries_total", service="partner_center") == 0
    assert (
        metric(url, "referral_sync_api_requests_total", service="partner_center", status="200") >= 1
    )

    sandbox.faults.clear()
    cycle(connection, server)

    assert get(f"{url}/readyz").status_code == 200
    page = get(f"{url}/status")
    assert page.status_code == 200
    assert "sandbox" in page.text
