"""The engine under test, in a child process of its own, driven over a pipe.

The child builds the connection exactly as the daemon does (``load_settings`` →
``build_connection``, SQLite state, JSON log lines to a file at INFO), signs in, and then runs
what the parent asks: one cycle, a clock jump, the daemon itself (scheduler and webhooks).

What it reports about itself:

- **CPU**: the process's CPU time (``time.process_time``), and the part of it spent inside the
  HTTP transport (``HTTPAdapter.send``: urllib3, TLS, socket; measured per thread with
  ``time.thread_time``). The engine's own CPU is the difference: mapping, fingerprints, state
  store, JSON, decisions, logging.
- **Peak RSS**: ``VmHWM`` of the child (:func:`peak_rss_mb`), which runs one scenario from a
  fresh start.

The clock is the system clock plus the jumps the parent makes, which it also makes to the
sandbox clock: the two stay in step, so the feeds' overlap windows can be passed without waiting.
"""

from __future__ import annotations

import cProfile
import multiprocessing
import resource
import threading
import time
import traceback
import tracemalloc
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any, cast

import requests

__all__ = ["EngineProcess"]

Message = dict[str, Any]


class OffsetClock:
    """System time plus every :meth:`advance` (the ``ports.Clock`` the connection gets)."""

    def __init__(self) -> None:
        self._offset = timedelta(0)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return datetime.now(UTC) + self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += timedelta(seconds=seconds)


class TransportMeter:
    """CPU seconds spent inside ``requests.Session.request`` (requests, urllib3, TLS, the
    socket), over every thread of the process: the HTTP client, not the engine."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.cpu_s = 0.0

    def install(self) -> None:
        original = requests.Session.request
        meter = self

        def request(self: requests.Session, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401 - requests' own signature
            started = time.thread_time()
            try:
                return original(self, *args, **kwargs)
            finally:
                spent = time.thread_time() - started
                with meter._lock:
                    meter.cpu_s += spent

        requests.Session.request = request  # type: ignore[method-assign]


def peak_rss_mb() -> float:
    """This process's peak RSS: ``VmHWM`` (Linux), else ``ru_maxrss``.

    Not ``ru_maxrss`` first: Linux carries it across ``exec`` from the process that forked, so a
    child spawned by a large parent would report the parent's size.
    """
    try:
        with Path("/proc/self/status").open(encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


class _HeapSampler:
    """``tracemalloc`` over one cycle: the snapshot taken when the traced heap was largest
    (sampled every ``every_s``), dumped for :mod:`bench.probe` to compare between sizes."""

    def __init__(self, every_s: float = 0.5) -> None:
        self._every = every_s
        self._done = threading.Event()
        self._best: tracemalloc.Snapshot | None = None
        self._best_size = 0
        self._thread = threading.Thread(target=self._run, name="heap-sampler", daemon=True)

    def start(self) -> None:
        tracemalloc.start(8)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(self._every):
            current, _ = tracemalloc.get_traced_memory()
            if current > self._best_size:
                self._best_size = current
                self._best = tracemalloc.take_snapshot()

    def stop(self, path: Path) -> None:
        self._done.set()
        self._thread.join()
        _, peak = tracemalloc.get_traced_memory()
        snapshot = self._best or tracemalloc.take_snapshot()
        tracemalloc.stop()
        snapshot.dump(str(path))
        path.with_suffix(".peak").write_text(f"{peak} {self._best_size}\n", encoding="ascii")


def _usage(meter: TransportMeter) -> Message:
    return {
        "cpu_s": time.process_time(),
        "transport_cpu_s": meter.cpu_s,
        "max_rss_mb": peak_rss_mb(),
    }


def _child(  # noqa: PLR0915 - the child's whole life: set-up, a dispatch table, the loop
    pipe: Pipe, config: str, log_path: str, write_concurrency: int | None
) -> None:
    meter = TransportMeter()
    meter.install()
    # Imported here: the parent never needs the engine's modules loaded.
    from connector.daemon.ops import Ops  # noqa: PLC0415
    from connector.daemon.scheduler import Daemon  # noqa: PLC0415
    from connector.observe.logging import configure_logging  # noqa: PLC0415
    from connector.settings import load_settings  # noqa: PLC0415
    from connector.state import open_state_store  # noqa: PLC0415
    from connector.wiring import build_connection  # noqa: PLC0415

    log = Path(log_path).open("a", encoding="utf-8")  # noqa: SIM115 - open for the child's life
    configure_logging(level="info", stream=log)
    settings = load_settings(Path(config))
    store = open_state_store(settings.state.url)
    clock = OffsetClock()
    connection = build_connection(
        settings.connections[0], store, clock=clock, prompt=lambda _message: None
    )
    if write_concurrency is not None:
        connection.partner_center.source.write_concurrency = write_concurrency
    connection.partner_center.auth.login()
    daemon: Daemon | None = None

    def cycle(message: Message) -> Message:
        before = _usage(meter)
        started = time.perf_counter()
        profile = cProfile.Profile(time.thread_time) if message.get("profile") else None
        sampler = _HeapSampler() if message.get("tracemalloc") else None
        gauges = None
        if message.get("gauges"):
            from bench.probe import Gauges  # noqa: PLC0415 - the probe's, only when asked

            gauges = Gauges(connection, Path(message["gauges"]))
            gauges.start()
        if profile is not None:
            profile.enable()
        if sampler is not None:
            sampler.start()
        result = connection.sync.run_cycle()
        if sampler is not None:
            sampler.stop(Path(message["tracemalloc"]))
        if gauges is not None:
            gauges.stop()
        if profile is not None:
            profile.disable()
            profile.dump_stats(str(message["profile"]))
        wall = time.perf_counter() - started
        after = _usage(meter)
        return {
            "wall_s": wall,
            "cpu_s": after["cpu_s"] - before["cpu_s"],
            "transport_cpu_s": after["transport_cpu_s"] - before["transport_cpu_s"],
            "max_rss_mb": after["max_rss_mb"],
            "inbound": dict(result.inbound.counts),
            "outbound": dict(result.outbound.counts),
            "errors": [*result.inbound.errors, *result.outbound.errors],
        }

    def start_daemon(message: Message) -> Message:
        nonlocal daemon
        first = threading.Event()
        ops = Ops([connection], store, clock=clock)
        daemon = Daemon([connection], clock=clock, on_cycle=lambda _c, _r: first.set())
        url = None
        if message.get("webhooks"):
            url = _serve_webhooks(message["info"], connection, ops, daemon, clock)
        daemon.start()
        first.wait(timeout=600)
        return {"url": url}

    def stop_daemon(_message: Message) -> Message:
        if daemon is not None:
            daemon.stop()
        return {}

    def advance(message: Message) -> Message:
        clock.advance(float(message["seconds"]))
        return {}

    handlers: Mapping[str, Callable[[Message], Message]] = {
        "cycle": cycle,
        "advance": advance,
        "daemon": start_daemon,
        "stop_daemon": stop_daemon,
        "usage": lambda _m: _usage(meter),
    }
    pipe.send({"ok": True})
    while True:
        message: Message = pipe.recv()
        if message["op"] == "exit":
            break
        try:
            pipe.send({"ok": True, **handlers[message["op"]](message)})
        except Exception:  # noqa: BLE001 - the parent reports it and stops
            pipe.send({"ok": False, "error": traceback.format_exc()})
    if daemon is not None:
        daemon.stop()
    store.close()
    pipe.send({"ok": True, **_usage(meter)})
    log.close()


@dataclass(frozen=True, slots=True)
class _SandboxView:
    """What ``connector.demo.serve_with_webhooks`` reads of a sandbox: its info and clock
    (the sandbox itself lives in the parent process)."""

    info: Mapping[str, Any]
    clock: OffsetClock


def _serve_webhooks(
    info: Mapping[str, Any],
    connection: Any,  # noqa: ANN401 - connector.wiring.Connection, imported in the child only
    ops: Any,  # noqa: ANN401 - connector.daemon.ops.Ops
    daemon: Any,  # noqa: ANN401 - connector.daemon.scheduler.Daemon
    clock: OffsetClock,
) -> str:
    """The ops server with the connection's webhook route, registered with the sandbox."""
    from connector.demo import serve_with_webhooks  # noqa: PLC0415
    from sandbox.app import Sandbox  # noqa: PLC0415

    url: str = serve_with_webhooks(
        cast("Sandbox", _SandboxView(info, clock)), connection, ops, daemon
    )
    return url


class EngineProcess:
    """The parent's handle on one engine child: ``with EngineProcess(config, log) as engine:``."""

    def __init__(
        self,
        config: Path,
        log_path: Path,
        *,
        write_concurrency: int | None = None,
        timeout_s: float = 3600,
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child_end = context.Pipe()
        self._timeout = timeout_s
        self._process = context.Process(
            target=_child,
            args=(child_end, str(config), str(log_path), write_concurrency),
            name="bench-engine",
            daemon=True,
        )
        self.final: Message = {}

    def __enter__(self) -> EngineProcess:
        self._process.start()
        self._receive()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process.is_alive():
            try:
                self._pipe.send({"op": "exit"})
                self.final = self._receive()
            except (OSError, EOFError, RuntimeError):
                pass
            self._process.join(timeout=30)
            if self._process.is_alive():
                self._process.kill()

    def ask(self, op: str, **fields: object) -> Message:
        self._pipe.send({"op": op, **fields})
        return self._receive()

    def _receive(self) -> Message:
        if not self._pipe.poll(self._timeout):
            raise RuntimeError(f"the engine process did not answer in {self._timeout} s")
        answer: Message = self._pipe.recv()
        if not answer.get("ok"):
            raise RuntimeError(f"the engine process failed:\n{answer.get('error')}")
        return answer
