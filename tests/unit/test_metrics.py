"""Prometheus metrics: what a cycle report, a request and a retry add, read back from the text."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from connector.engine.report import RunReport
from connector.observe.metrics import Metrics
from connector.ports import Direction

START = datetime(2025, 3, 4, 12, 0, 0, tzinfo=UTC)


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the exposition, keyed by name and labels."""
    text = metrics.exposition().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


def report(
    direction: Direction = Direction.INBOUND,
    *,
    failed: bool = False,
    seconds: float = 4.5,
    **counts: int,
) -> RunReport:
    return RunReport(
        connection="contoso",
        direction=direction,
        started_at=START,
        finished_at=START + timedelta(seconds=seconds),
        counts=Counter(counts),
        failed=failed,
    )


def test_records_total_matches_every_count_of_the_report():
    metrics = Metrics()
    counts = {"received": 7, "created": 3, "updated": 2, "unchanged": 1, "dead_lettered": 1}
    metrics.observe_cycle(report(**counts))
    metrics.observe_cycle(report(received=2, updated=2))

    found = {
        dict(labels)["action"]: v
        for (name, labels), v in samples(metrics).items()
        if name == "referral_sync_records_total"
    }
    assert found == {"received": 9, "created": 3, "updated": 4, "unchanged": 1, "dead_lettered": 1}


def test_outbound_actions_are_counted_under_their_direction():
    metrics = Metrics()
    metrics.observe_cycle(report(Direction.OUTBOUND, received=3, accept=1, win=1, edit=1))
    labels = {"connection": "contoso", "direction": "outbound"}
    for action, n in {"received": 3, "accept": 1, "win": 1, "edit": 1}.items():
        assert value(metrics, "referral_sync_records_total", **labels, action=action) == n
    assert value(metrics, "referral_sync_records_total", **labels, action="decline") is None


def test_cycles_total_counts_each_outcome():
    metrics = Metrics()
    metrics.observe_cycle(report(received=1))
    metrics.observe_cycle(report(received=1, dead_lettered=1))
    metrics.observe_cycle(report(received=1, dead_lettered=1))
    metrics.observe_cycle(report(failed=True))
    labels = {"connection": "contoso", "direction": "inbound"}
    assert value(metrics, "referral_sync_cycles_total", **labels, outcome="ok") == 1
    assert value(metrics, "referral_sync_cycles_total", **labels, outcome="partial") == 2
    assert value(metrics, "referral_sync_cycles_total", **labels, outcome="failed") == 1


def test_cycle_duration_is_finished_minus_started():
    metrics = Metrics()
    metrics.observe_cycle(report(seconds=4.5))
    metrics.observe_cycle(report(seconds=0.5))
    labels = {"connection": "contoso", "direction": "inbound"}
    assert value(metrics, "referral_sync_cycle_duration_seconds_count", **labels) == 2
    assert value(metrics, "referral_sync_cycle_duration_seconds_sum", **labels) == 5.0
    bucket = "referral_sync_cycle_duration_seconds_bucket"
    assert value(metrics, bucket, **labels, le="1.0") == 1
    assert value(metrics, bucket, **labels, le="5.0") == 2


def test_last_success_is_set_by_ok_and_partial_cycles_only():
    metrics = Metrics()
    labels = {"connection": "contoso", "direction": "inbound"}
    metrics.observe_cycle(report(failed=True, seconds=1))
    assert value(metrics, "referral_sync_last_success_timestamp_seconds", **labels) is None

    metrics.observe_cycle(report(dead_lettered=1, seconds=10))
    expected = (START + timedelta(seconds=10)).timestamp()
    assert value(metrics, "referral_sync_last_success_timestamp_seconds", **labels) == expected

    metrics.observe_cycle(report(failed=True, seconds=20))
    assert value(metrics, "referral_sync_last_success_timestamp_seconds", **labels) == expected


def test_a_plan_mode_report_is_not_counted():
    metrics = Metrics()
    planned = report(received=4, created=4)
    planned.plan = True
    metrics.observe_cycle(planned)
    assert not [k for k in samples(metrics) if k[0].startswith("referral_sync_")]


def test_requests_are_counted_by_status_and_error_when_no_response():
    metrics = Metrics()
    metrics.observe_request("partner_center", 200)
    metrics.observe_request("partner_center", 200)
    metrics.observe_request("partner_center", 429)
    metrics.observe_request("salesforce", None)
    name = "referral_sync_api_requests_total"
    assert value(metrics, name, service="partner_center", status="200") == 2
    assert value(metrics, name, service="partner_center", status="429") == 1
    assert value(metrics, name, service="salesforce", status="error") == 1


def test_retries_count_every_wait_and_rate_limit_wait_only_when_rate_limited():
    metrics = Metrics()
    metrics.observe_retry("dynamics", 2.0, rate_limited=True)
    metrics.observe_retry("dynamics", 3.5, rate_limited=True)
    metrics.observe_retry("dynamics", 1.0, rate_limited=False)
    assert value(metrics, "referral_sync_retries_total", service="dynamics") == 3
    assert value(metrics, "referral_sync_rate_limit_wait_seconds_total", service="dynamics") == 5.5


def test_lag_and_dead_letters_are_gauges_per_connection():
    metrics = Metrics()
    metrics.set_lag("contoso", 12.5)
    metrics.set_dead_letters("contoso", 4)
    metrics.set_dead_letters("contoso", 1)
    assert value(metrics, "referral_sync_lag_seconds", connection="contoso") == 12.5
    assert value(metrics, "referral_sync_dead_letters", connection="contoso") == 1


def test_each_instance_has_its_own_registry_never_the_global_one():
    first, second = Metrics(), Metrics()  # a shared registry would refuse the second
    first.set_lag("contoso", 1)
    assert first.registry is not REGISTRY
    assert value(second, "referral_sync_lag_seconds", connection="contoso") is None
    assert REGISTRY.get_sample_value("referral_sync_lag_seconds", {"connection": "contoso"}) is None


def test_a_given_registry_is_used():
    registry = CollectorRegistry()
    Metrics(registry).set_dead_letters("contoso", 2)
    assert registry.get_sample_value("referral_sync_dead_letters", {"connection": "contoso"}) == 2
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Metrics(registry)
