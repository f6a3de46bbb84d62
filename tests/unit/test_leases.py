"""The daemon's side of leader leases: take, renew, lose and give back, on the monotonic clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connector.daemon.leases import LeaseKeeper, lease_ttl
from connector.errors import StateError
from connector.state import MemoryStateStore

TTL = timedelta(seconds=30)


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 12, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.at


def keeper(store, holder, ticks, events):
    return LeaseKeeper(
        store,
        {"contoso": TTL, "fabrikam": TTL},
        holder=holder,
        on_gained=lambda name: events.append((holder, "gained", name)),
        on_lost=lambda name: events.append((holder, "lost", name)),
        monotonic=ticks,
    )


def test_two_replicas_never_hold_one_connection_and_the_second_takes_over_when_it_lapses():
    clock, ticks, events = Clock(), Ticks(), []
    store = MemoryStateStore(clock=clock)
    first, second = keeper(store, "a", ticks, events), keeper(store, "b", ticks, events)

    first.tick()
    second.tick()
    assert first.held() == ["contoso", "fabrikam"]
    assert second.held() == []

    # "a" dies: nobody renews; past the ttl the lease is free, and "b" takes both
    clock.at += TTL + timedelta(seconds=1)
    ticks.now += 31
    assert first.held() == []  # by its own clock "a" stopped writing before the lapse
    second.tick()
    assert second.held() == ["contoso", "fabrikam"]
    assert ("b", "gained", "contoso") in events

    # "a" comes back from a pause: its renewal tells it that it lost them
    first.tick()
    assert ("a", "lost", "contoso") in events
    assert first.held() == []


def test_a_holder_stops_writing_before_its_lease_can_lapse_even_if_renewals_fail():
    clock, ticks, events = Clock(), Ticks(), []
    store = MemoryStateStore(clock=clock)
    lease = keeper(store, "a", ticks, events)
    lease.tick()

    def down(*args, **kwargs):
        raise StateError("database unreachable")

    store.renew_lease = down  # type: ignore[method-assign]
    store.acquire_lease = down  # type: ignore[method-assign]
    ticks.now += 10
    lease.tick()  # the database is away: still held, by the deadline of the last grant
    assert lease.holds("contoso")
    ticks.now += 15  # 25 s after the grant: past ttl less the margin
    assert not lease.holds("contoso")
    lease.tick()
    assert ("a", "lost", "contoso") in events
    assert not lease.holds("contoso")


def test_stopping_gives_the_leases_back_so_another_replica_takes_them_at_once():
    clock, ticks, events = Clock(), Ticks(), []
    store = MemoryStateStore(clock=clock)
    first, second = keeper(store, "a", ticks, events), keeper(store, "b", ticks, events)
    first.tick()
    first.stop(release=True)
    second.tick()
    assert second.held() == ["contoso", "fabrikam"]


def test_the_ttl_is_the_interval_unless_configured_and_never_below_three_seconds():
    assert lease_ttl(30) == timedelta(seconds=30)
    assert lease_ttl(1) == timedelta(seconds=3)
    assert lease_ttl(30, 90) == timedelta(seconds=90)


def test_two_replicas_share_six_connections_and_one_takes_all_when_the_other_dies():
    clock, ticks = Clock(), Ticks()
    store = MemoryStateStore(clock=clock)
    names = {f"c{i}": TTL for i in range(6)}
    a = LeaseKeeper(store, names, holder="a", monotonic=ticks)
    b = LeaseKeeper(store, names, holder="b", monotonic=ticks)

    def tick(*keepers, seconds=10):
        for keeper in keepers:
            keeper.tick()
        clock.at += timedelta(seconds=seconds)
        ticks.now += seconds

    tick(a)  # "a" starts alone and takes all six
    assert len(a.held()) == 6
    for _ in range(6):  # "b" joins: "a" gives three up, they lapse, "b" takes them
        tick(a, b)
    assert (len(a.held()), len(b.held())) == (3, 3)
    assert not set(a.held()) & set(b.held())

    for _ in range(6):  # "a" dies: nothing renews its presence or its leases
        tick(b)
    assert len(b.held()) == 6


# -- one machine: a SQLite state file -----------------------------------------------------------


def _gone_pid() -> int:
    """The pid of a process of this host that has exited (and been reaped)."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_on_a_local_state_a_lease_of_a_process_of_this_host_that_is_gone_is_taken_at_once():
    import socket  # noqa: PLC0415

    clock, ticks = Clock(), Ticks()
    store = MemoryStateStore(clock=clock)
    dead = f"{socket.gethostname()}:{_gone_pid()}:deadbeef"
    assert store.acquire_lease("contoso", dead, TTL)  # a SIGKILLed daemon's, 30 s to run
    assert store.acquire_lease("replica:" + dead, dead, TTL)
    local = LeaseKeeper(store, {"contoso": TTL}, holder="me", monotonic=ticks, local=True)

    local.tick()

    assert local.held() == ["contoso"]
    assert store.leases("replica:") == {"replica:me": "me"}  # the dead one is not counted


def test_a_live_or_remote_holder_keeps_its_lease_and_a_shared_state_never_takes_from_the_dead():
    import os  # noqa: PLC0415
    import socket  # noqa: PLC0415

    clock, ticks = Clock(), Ticks()
    host = socket.gethostname()
    cases = [
        (f"{host}:{os.getppid()}:alive0001", True),  # a live process of this host
        (f"another-host:{_gone_pid()}:remote01", True),  # another machine's: cannot tell
        (f"{host}:{_gone_pid()}:deadbeef", False),  # gone, but the keeper is not local
    ]
    for holder, local in cases:
        store = MemoryStateStore(clock=clock)
        assert store.acquire_lease("contoso", holder, TTL)
        other = LeaseKeeper(store, {"contoso": TTL}, holder="me", monotonic=ticks, local=local)
        other.tick()
        assert other.held() == [], holder
        assert store.lease_holder("contoso") == holder


def test_a_local_state_has_a_longer_lease_than_a_shared_one():
    assert lease_ttl(1.0) == timedelta(seconds=3)
    assert lease_ttl(1.0, local=True) == timedelta(seconds=30)
    assert lease_ttl(45.0, local=True) == timedelta(seconds=45)
    assert lease_ttl(1.0, 5.0, local=True) == timedelta(seconds=5)  # as configured
