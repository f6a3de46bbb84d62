"""The daemon's ops side: health snapshots from the state store, metrics after each cycle, and
the HTTP server that serves both (``/metrics``, ``/healthz``, ``/readyz``, ``/status``).

Lag is how stale our view of Partner Center is: now minus when the last successful inbound
cycle finished (a quiet Partner Center is not lag; a daemon that stopped polling is).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from connector.daemon.health import ConnectionHealth
from connector.daemon.http import StatusServer, Webhook, make_app
from connector.daemon.scheduler import Daemon
from connector.engine import CycleResult
from connector.observe.metrics import Metrics
from connector.partner_center.token_status import read_token_status
from connector.ports import Clock, Direction, StateStore
from connector.settings import Settings, parse_listen
from connector.webhooks.setup import build_verifier, webhook_handlers
from connector.wiring import Connection

__all__ = ["Ops", "serve_ops"]

RECENT_RUNS = 12


class Ops:
    """Health, metrics and the ops HTTP server of one daemon process."""

    def __init__(
        self,
        connections: Sequence[Connection],
        store: StateStore,
        *,
        clock: Clock,
        metrics: Metrics | None = None,
    ) -> None:
        self.connections = list(connections)
        self.metrics = metrics or Metrics()
        self._store = store
        self._clock = clock
        self._server: StatusServer | None = None

    # -- HealthSource ---------------------------------------------------------------------------

    def health(self) -> list[ConnectionHealth]:
        return [self._health(c) for c in self.connections]

    def _health(self, connection: Connection) -> ConnectionHealth:
        name = connection.settings.name
        found = ConnectionHealth(
            name=name,
            crm=connection.settings.crm,
            interval_seconds=connection.settings.interval_seconds,
            runs=tuple(self._store.recent_runs(name, limit=RECENT_RUNS)),
            dead_letters=tuple(self._store.dead_letters(name)),
            lag_seconds=None,
            token_expires_at=read_token_status(
                connection.settings.partner_center.token_cache
            ).refresh_idle_expires_at,
            lease_holder=self._store.lease_holder(name),
        )
        last = found.last_success(Direction.INBOUND)
        if last is None:
            return found
        return replace(found, lag_seconds=max(0.0, (self._clock.now() - last).total_seconds()))

    # -- after each cycle -------------------------------------------------------------------------

    def observe(self, connection: Connection, result: CycleResult) -> None:
        name = connection.settings.name
        self.metrics.observe_cycle(result.outbound)
        self.metrics.observe_cycle(result.inbound)
        self.metrics.set_dead_letters(name, len(self._store.dead_letters(name)))
        if not result.inbound.failed:
            self.metrics.set_lag(name, 0.0)

    # -- the server -----------------------------------------------------------------------------

    def serve(self, host: str, port: int, *, webhooks: Mapping[str, Webhook] | None = None) -> str:
        """Start the HTTP server in a background thread (with a webhook route per connection
        in ``webhooks``); its URL."""
        app = make_app(self, self.metrics, clock=self._clock, webhooks=webhooks)
        self._server = StatusServer(app, host=host, port=port).start()
        return self._server.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


def serve_ops(
    settings: Settings, ops: Ops, daemon: Daemon, *, clock: Clock, listen: str | None = None
) -> str:
    """Start ``ops``' HTTP server where ``listen`` (else ``[server] listen``) says, with a
    webhook route per connection when ``[webhooks] enabled``; its URL."""
    host, port = parse_listen(listen or settings.server.listen)
    if not settings.webhooks.enabled:
        return ops.serve(host, port)
    verifier = build_verifier(settings.webhooks, clock=clock)
    names = [c.settings.name for c in daemon.connections]
    return ops.serve(
        host, port, webhooks=webhook_handlers(verifier, names, daemon.webhook_receiver)
    )
