"""What every simulator was asked and how it answered, so tests can check a client's manners."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One request as a simulator saw it.

    ``time`` is ``time.monotonic()`` at arrival; ``status`` is the status sent, or ``None`` when
    the connection was reset without a reply; ``injected`` names the fault kind the injector
    produced (``"429"``, ``"500"``, ``"503"``, ``"reset"``, ``"slow"``) or is ``None``;
    ``retry_after`` is the ``Retry-After`` seconds sent, if any.
    """

    service: str
    method: str
    path: str
    route: str
    status: int | None
    time: float
    duration_s: float = 0.0
    retry_after: float | None = None
    injected: str | None = None
    client_request_id: str | None = None


class RequestLog:
    """A thread-safe, append-only record of requests, shared by every simulator."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[LoggedRequest] = []
        self._listeners: list[Callable[[LoggedRequest], None]] = []

    def record(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._entries.append(entry)
            listeners = list(self._listeners)
        for listener in listeners:
            listener(entry)

    def add_listener(self, listener: Callable[[LoggedRequest], None]) -> None:
        """Call ``listener`` with each later entry, in the serving thread, as it is recorded:
        after the simulator has answered and before the reply leaves (a test can act "between
        the write and its acknowledgement")."""
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[LoggedRequest], None]) -> None:
        with self._lock:
            self._listeners.remove(listener)

    def entries(
        self,
        *,
        service: str | None = None,
        route: str | None = None,
        method: str | None = None,
        status: int | None = None,
    ) -> list[LoggedRequest]:
        """A snapshot, oldest first, optionally filtered like :meth:`count`."""
        with self._lock:
            snapshot = list(self._entries)
        return [
            e
            for e in snapshot
            if (service is None or e.service == service)
            and (route is None or e.route == route)
            and (method is None or e.method == method.upper())
            and (status is None or e.status == status)
        ]

    def count(
        self,
        *,
        service: str | None = None,
        route: str | None = None,
        method: str | None = None,
        status: int | None = None,
    ) -> int:
        return len(self.entries(service=service, route=route, method=method, status=status))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
