"""Prometheus metrics of one daemon process, on a registry of its own.

Every name starts ``referral_sync_``; labels stay few and bounded (connection, direction,
outcome, action, service, status) and never carry a record id:

====================================================  =========  ==================================
referral_sync_cycles_total                            counter    connection, direction, outcome
referral_sync_records_total                           counter    connection, direction, action
referral_sync_cycle_duration_seconds                  histogram  connection, direction
referral_sync_last_success_timestamp_seconds          gauge      connection, direction
referral_sync_api_requests_total                      counter    service, status
referral_sync_retries_total                           counter    service
referral_sync_rate_limit_wait_seconds_total           counter    service
referral_sync_lag_seconds                             gauge      connection
referral_sync_dead_letters                            gauge      connection
====================================================  =========  ==================================

``action`` is a key of :attr:`RunReport.counts <connector.engine.report.RunReport.counts>`
(``received``, ``created``, ``updated``, ``unchanged``, ``dead_lettered``, ``accept``, …).
A registry of its own keeps tests and several daemons in one process from colliding; when this
class makes it, the registry also carries the standard ``process_*`` and ``python_*`` metrics.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from connector.engine.report import RunReport

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # what generate_latest writes
CYCLE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
SUCCESS_OUTCOMES = frozenset({"ok", "partial"})


class Metrics:
    """Prometheus metrics of one daemon process, on its own CollectorRegistry (never the
    global one). Safe to call from any thread (prometheus_client locks each value)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        if registry is None:
            registry = CollectorRegistry()
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)
        self.registry = registry
        cycle = ("connection", "direction")
        self._cycles = Counter(
            "referral_sync_cycles",
            "Sync cycles run, by outcome (ok, partial: some records dead-lettered, failed).",
            [*cycle, "outcome"],
            registry=registry,
        )
        self._records = Counter(
            "referral_sync_records",
            "Records handled by sync cycles, by what happened to them (the run report's counts).",
            [*cycle, "action"],
            registry=registry,
        )
        self._duration = Histogram(
            "referral_sync_cycle_duration_seconds",
            "How long one sync cycle took.",
            cycle,
            buckets=CYCLE_BUCKETS,
            registry=registry,
        )
        self._last_success = Gauge(
            "referral_sync_last_success_timestamp_seconds",
            "When the last cycle with outcome ok or partial finished (Unix time).",
            cycle,
            registry=registry,
        )
        self._requests = Counter(
            "referral_sync_api_requests",
            "HTTP requests to an external service, by status code (error: no response).",
            ["service", "status"],
            registry=registry,
        )
        self._retries = Counter(
            "referral_sync_retries",
            "Requests retried after a transient failure.",
            ["service"],
            registry=registry,
        )
        self._rate_limit_wait = Counter(
            "referral_sync_rate_limit_wait_seconds",
            "Seconds spent waiting because a service said 429/503 with Retry-After.",
            ["service"],
            registry=registry,
        )
        self._lag = Gauge(
            "referral_sync_lag_seconds",
            "Now minus the newest Partner Center change time seen.",
            ["connection"],
            registry=registry,
        )
        self._dead_letters = Gauge(
            "referral_sync_dead_letters",
            "Unresolved dead letters.",
            ["connection"],
            registry=registry,
        )

    def observe_cycle(self, report: RunReport) -> None:
        """Count one finished cycle. A plan-mode report wrote nothing and is not counted."""
        if report.plan:
            return
        labels = {"connection": report.connection, "direction": str(report.direction)}
        self._cycles.labels(**labels, outcome=report.outcome).inc()
        for action, n in report.counts.items():
            if n > 0:
                self._records.labels(**labels, action=action).inc(n)
        finished = report.finished_at
        if finished is not None:
            self._duration.labels(**labels).observe(
                max(0.0, (finished - report.started_at).total_seconds())
            )
        if report.outcome in SUCCESS_OUTCOMES:
            self._last_success.labels(**labels).set((finished or report.started_at).timestamp())

    def observe_request(self, service: str, status: int | None) -> None:
        """One request to ``service`` (partner_center, salesforce, dynamics, entra) and its
        status code, or None when no response came back (connection error, timeout)."""
        self._requests.labels(service=service, status="error" if status is None else status).inc()

    def observe_retry(self, service: str, wait_seconds: float, rate_limited: bool) -> None:
        """One retry of a request to ``service`` after waiting ``wait_seconds``; the wait counts
        as rate-limit wait when the service asked for it (429/503 with Retry-After)."""
        self._retries.labels(service=service).inc()
        if rate_limited and wait_seconds > 0:
            self._rate_limit_wait.labels(service=service).inc(wait_seconds)

    def set_lag(self, connection: str, seconds: float) -> None:
        self._lag.labels(connection=connection).set(seconds)

    def set_dead_letters(self, connection: str, count: int) -> None:
        self._dead_letters.labels(connection=connection).set(count)

    def exposition(self) -> bytes:
        """The registry in Prometheus text format (:data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)
