"""Leader leases: which daemon syncs which connection, when several share one state database.

Each daemon process is one *holder* (``host:pid:random``). Every third of the shortest time to
live it ticks: it renews its presence (a lease named ``replica:<holder>``, so the replicas can
count each other), renews the connection leases it holds, gives up those over its fair share
(connections ÷ live replicas, rounded up) while another replica is alive, and takes free ones up
to that share. Only the holder of a connection's lease runs its cycles and its webhook syncs.
So two replicas on one PostgreSQL split six connections three and three, and when one dies its
presence and leases run out and the other takes them all: within ``ttl`` plus one tick, after
which each cycle starts at once. A lease given up is not released but left to lapse, so the
replica taking it cannot start while this one still writes the page in hand.

Safety rests on the holder's own monotonic clock (see the lease contract in
:mod:`connector.ports`): a lease counts as held until the monotonic reading taken *before* the
acquire or renew that granted it, plus ``ttl``, less a margin; past that the holder stops
writing, whether or not a renewal went through. A renewal that says "lost" stops the
connection's cycle after the page in hand. (A process frozen past its deadline in the middle of
writing one page can still finish that page: the state store holds no fencing token yet.)

**One machine (SQLite state).** Every holder of a local state file runs on this host, so a
lease whose holder is a process of this host that no longer exists (a daemon SIGKILLed or
crashed) is taken at once rather than after its ``ttl``; and the ttl is longer (at least
:data:`LOCAL_MIN_TTL_S`): with no other machine to fail over to, a short one only risks a
lapse while a loaded machine is slow to renew, stopping the cycle in hand for nothing.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta

import structlog
from structlog.typing import FilteringBoundLogger

from connector.errors import StateError
from connector.ports import StateStore

__all__ = ["LeaseKeeper", "default_holder", "lease_ttl"]

MIN_TTL_S = 3.0
LOCAL_MIN_TTL_S = 30.0
PRESENCE = "replica:"  # + holder: a lease each live replica holds on itself
SAFETY_MARGIN = 0.2  # of the ttl: stop writing that long before the lease may lapse


def default_holder() -> str:
    """``host:pid:random``: unique per process, and says where it runs."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def lease_ttl(
    interval_seconds: float, configured_seconds: float | None = None, *, local: bool = False
) -> timedelta:
    """A connection's lease lifetime: as configured, else its interval (at least 3 s, or 30 s
    for a ``local`` state file), so a replica takes over a dead one's connection within about
    two intervals."""
    floor = LOCAL_MIN_TTL_S if local else MIN_TTL_S
    seconds = configured_seconds if configured_seconds else max(interval_seconds, floor)
    return timedelta(seconds=seconds)


def dead_local_holder(holder: str | None) -> bool:
    """Whether ``holder`` (``host:pid:random``) was a process of this host that is gone."""
    if not holder:
        return False
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid in (0, os.getpid()):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


@dataclass(slots=True)
class _Held:
    until: float  # monotonic: held (for writing) until this reading


class LeaseKeeper:
    """Takes and renews the leases of ``ttls`` (connection name → ttl) for ``holder``.

    ``on_gained(name)`` and ``on_lost(name)`` are told of changes (the daemon resumes or stops
    the connection's sync); call :meth:`tick` on a timer (:meth:`start` runs it every third of
    the shortest ttl) and ask :meth:`holds` before each write."""

    def __init__(
        self,
        store: StateStore,
        ttls: Mapping[str, timedelta],
        *,
        holder: str | None = None,
        on_gained: Callable[[str], None] | None = None,
        on_lost: Callable[[str], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        logger: FilteringBoundLogger | None = None,
        local: bool = False,
    ) -> None:
        self.holder = holder or default_holder()
        self.local = local  # every holder runs on this host (a SQLite state file)
        self.on_gained = on_gained
        self.on_lost = on_lost
        self._store = store
        self._ttls = dict(ttls)
        self._monotonic = monotonic
        self._log = (logger or structlog.get_logger("connector.daemon")).bind(holder=self.holder)
        self._held: dict[str, _Held] = {}
        self._yielded: dict[str, float] = {}  # monotonic: not taken back before this reading
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def period_s(self) -> float:
        return min(t.total_seconds() for t in self._ttls.values()) / 3 if self._ttls else 1.0

    def holds(self, connection: str) -> bool:
        """May this process write for ``connection`` now?"""
        with self._lock:
            held = self._held.get(connection)
        return held is not None and self._monotonic() < held.until

    def held(self) -> list[str]:
        return sorted(name for name in self._ttls if self.holds(name))

    def tick(self) -> None:
        """Say this replica is alive; renew what it holds; give up what is over its fair share
        while other replicas are alive; take free ones up to that share. Tell of every change."""
        live = self._replicas()
        share = math.ceil(len(self._ttls) / live)
        for name in self.held():  # renew first: never lose a lease to a slow tick
            self._tick_one(name, self._ttls[name])
        held = self.held()
        for name in held[share:] if live > 1 else ():
            self._yield(name)
        now = self._monotonic()
        for name, ttl in self._ttls.items():
            if self._stop.is_set() or len(self.held()) >= share:
                return
            if self.holds(name) or self._yielded.get(name, 0.0) > now:
                continue
            self._tick_one(name, ttl)

    def _replicas(self) -> int:
        """How many replicas are alive (this one included), each by its presence lease."""
        ttl = max(self._ttls.values(), default=timedelta(seconds=MIN_TTL_S))
        try:
            self._store.acquire_lease(PRESENCE + self.holder, self.holder, ttl)
            present = self._store.leases(PRESENCE)
            if self.local:
                for name, holder in present.items():
                    if dead_local_holder(holder):
                        self._store.release_lease(name, holder)
                present = self._store.leases(PRESENCE)
            return max(1, len(present))
        except StateError as exc:
            self._log.warning("lease_check_failed", connection=None, error=str(exc))
            return 1

    def _yield(self, name: str) -> None:
        """Stop syncing ``name`` now and stop renewing it: it lapses within its ttl, and a
        replica with fewer takes it (releasing it outright could let that replica start while
        this one still writes the page in hand)."""
        ttl = self._ttls[name].total_seconds()
        with self._lock:
            self._yielded[name] = self._monotonic() + ttl * (1 + SAFETY_MARGIN)
        self._lose(name, "lease_yielded")

    def _tick_one(self, name: str, ttl: timedelta) -> None:
        with self._lock:
            believed = name in self._held
        had = self.holds(name)
        if believed and not had:  # lapsed by our own clock (renewals failed): stop first
            self._lose(name, "lease_lapsed")
        asked_at = self._monotonic()
        try:
            if had:
                granted = self._store.renew_lease(name, self.holder, ttl)
            else:
                granted = self._store.acquire_lease(name, self.holder, ttl)
                if not granted and self.local:
                    granted = self._take_from_the_dead(name, ttl)
        except StateError as exc:  # the database is away: keep what we may still hold
            self._log.warning("lease_check_failed", connection=name, error=str(exc))
            return
        if granted:
            until = asked_at + ttl.total_seconds() * (1 - SAFETY_MARGIN)
            with self._lock:
                self._held[name] = _Held(until)
            if not had:
                self._log.info("lease_acquired", connection=name, ttl_s=ttl.total_seconds())
                if self.on_gained is not None:
                    self.on_gained(name)
        elif had:
            self._lose(name, "lease_lost")

    def _take_from_the_dead(self, name: str, ttl: timedelta) -> bool:
        """Take ``name`` from a holder that was a process of this host and is gone."""
        holder = self._store.lease_holder(name)
        if not dead_local_holder(holder):
            return False
        self._store.release_lease(name, str(holder))
        self._log.info("lease_taken_from_dead_process", connection=name, previous=holder)
        return self._store.acquire_lease(name, self.holder, ttl)

    def _lose(self, name: str, event: str) -> None:
        with self._lock:
            self._held.pop(name, None)
        self._log.warning(event, connection=name)
        if self.on_lost is not None:
            self.on_lost(name)

    def start(self) -> None:
        """Take what can be taken now, then keep ticking in a background thread."""
        self.tick()
        self._thread = threading.Thread(target=self._run, name="leases", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.tick()

    def stop(self, *, release: bool = True) -> None:
        """Stop ticking and (by default) give every held lease up, so another replica takes
        over at once instead of after the ttl."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if not release:
            return
        for name in [*self._held, PRESENCE + self.holder]:
            try:
                self._store.release_lease(name, self.holder)
            except StateError as exc:  # it will lapse by itself
                self._log.warning("lease_release_failed", connection=name, error=str(exc))
            self._log.info("lease_released", connection=name)
        with self._lock:
            self._held.clear()
