"""The commands that run the sync or look at its state: ``run``, ``once``, ``plan``, ``status``
and ``dlq``. Each takes the parsed arguments and returns the exit status; ``cli.py`` wires them.

Human-readable text goes to stdout (``--json`` for machines), JSON log lines to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connector.clock import SystemClock
from connector.engine import CycleResult, RunReport
from connector.engine.outbound import change_from_payload
from connector.errors import (
    AuthError,
    ConfigError,
    ConfigProblem,
    MappingError,
    PermanentError,
    ReferralSyncError,
    TransientError,
)
from connector.ports import DeadLetter, Direction, StateStore
from connector.settings import ConnectionSettings, Settings, load_settings, parse_listen
from connector.state import open_state_store
from connector.wiring import Connection, build_connection

if TYPE_CHECKING:
    from connector.observe.metrics import Metrics

__all__ = ["add_commands"]

STATUS_RUNS_SHOWN = 6
EXPIRY_WARNING_DAYS = 14
STATUS_RUNS_SCANNED = 50  # enough to find the last success behind a run of failures


def add_commands(commands: Any) -> None:  # noqa: ANN401 - argparse's private subparsers type
    def command(name: str, help_text: str, example: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(
            name,
            help=help_text,
            description=help_text[0].upper() + help_text[1:] + ".",
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.add_argument("--config", type=Path, required=True, help="the TOML configuration")
        return parser

    run = command(
        "run",
        "run the daemon: every connection's cycle on its interval",
        "referral-sync run --config my.toml",
    )
    run.add_argument("--duration", type=float, help="stop after this many seconds (default: never)")
    run.add_argument(
        "--listen",
        help="host:port of the ops HTTP server (/metrics /healthz /readyz /status and the "
        "webhooks); default: [server] listen, 127.0.0.1:8765",
    )
    run.set_defaults(func=run_daemon)

    once = command(
        "once",
        "run one cycle of each direction for every connection",
        "referral-sync once --config my.toml --json",
    )
    once.add_argument("--json", action="store_true", help="print the cycle summaries as JSON")
    once.set_defaults(func=run_once)

    plan = command(
        "plan",
        "show what one cycle would write, per record, writing nothing",
        "referral-sync plan --config my.toml",
    )
    plan.add_argument("--json", action="store_true", help="print the planned writes as JSON")
    plan.set_defaults(func=run_plan)

    check = command(
        "check",
        "check each connection: sign-in, the CRM's metadata against the mapping",
        "referral-sync check --config my.toml",
    )
    check.set_defaults(func=run_check)

    status = command(
        "status",
        "show each connection's last cycles and dead letters",
        "referral-sync status --config my.toml",
    )
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(func=run_status)

    dlq = commands.add_parser(
        "dlq",
        help="list, show, replay or drop the records that could not be synced",
        description="Dead letters: records that could not be synced, with the reason and payload.",
        epilog="examples:\n  referral-sync dlq list --config my.toml\n"
        "  referral-sync dlq replay 12 --config my.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="the unresolved dead letters, oldest first")
    listing.add_argument("--config", type=Path, required=True)
    listing.add_argument("--all", action="store_true", help="resolved ones too")
    listing.add_argument("--connection", help="only this connection's (default: every one)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=run_dlq_list)
    for name, help_text, func in (
        ("show", "one dead letter with its payload", run_dlq_show),
        ("replay", "sync the record again now (re-read where it can be)", run_dlq_replay),
        ("drop", "mark it resolved without syncing it", run_dlq_drop),
    ):
        action = actions.add_parser(name, help=help_text)
        action.add_argument("id", type=int, help="the dead letter's id (see dlq list)")
        action.add_argument("--config", type=Path, required=True)
        action.set_defaults(func=func)


# -- shared ---------------------------------------------------------------------------------------


def configure_logging_from(settings: Settings) -> None:
    """JSON log lines on stderr, at the level and masking the settings ask for."""
    from connector.observe.logging import configure_logging  # noqa: PLC0415

    configure_logging(
        level=settings.logging.level, mask_customer_contacts=settings.logging.mask_customer_contacts
    )


@contextmanager
def _store(settings: Settings) -> Iterator[StateStore]:
    password = settings.state.password
    store = open_state_store(
        settings.state.url, password=None if password is None else password.reveal()
    )
    try:
        yield store
    finally:
        store.close()


def _connections(
    settings: Settings, store: StateStore, metrics: Metrics | None = None
) -> list[Connection]:
    """Every connection built and checked (mapping, CRM metadata) before any cycle runs;
    its requests and retries counted in ``metrics`` when given."""
    return [
        build_connection(
            c,
            store,
            on_request=None if metrics is None else metrics.observe_request,
            on_retry=None if metrics is None else metrics.observe_retry,
        )
        for c in settings.connections
    ]


def _report_line(report: RunReport) -> str:
    counts = ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items()) if v)
    errors = f"; {'; '.join(report.errors)}" if report.errors else ""
    done = counts or "nothing to do"
    return f"{report.connection} {report.direction}: {report.outcome} ({done}){errors}"


# -- run, once, plan -----------------------------------------------------------------------------


def run_daemon(args: argparse.Namespace) -> int:
    import structlog  # noqa: PLC0415

    from connector.daemon.leases import LeaseKeeper, lease_ttl  # noqa: PLC0415
    from connector.daemon.ops import Ops, serve_ops  # noqa: PLC0415
    from connector.daemon.scheduler import Daemon  # noqa: PLC0415
    from connector.observe.metrics import Metrics  # noqa: PLC0415

    settings = load_settings(args.config)
    if args.listen is not None:  # a bad --listen is refused before anything starts
        try:
            parse_listen(args.listen)
        except ValueError as exc:
            raise ConfigError([ConfigProblem("(command line)", "--listen", str(exc))]) from None
    configure_logging_from(settings)
    clock = SystemClock()
    with _store(settings) as store:
        metrics = Metrics()
        connections = [_with_progress_log(c) for c in _connections(settings, store, metrics)]
        _check_sign_ins(settings, connections)
        ops = Ops(connections, store, clock=clock, metrics=metrics)
        local = settings.state.url.startswith("sqlite")  # a file: every holder is on this host
        leases = LeaseKeeper(
            store,
            {
                c.settings.name: lease_ttl(
                    c.settings.interval_seconds, settings.state.lease_ttl_seconds, local=local
                )
                for c in connections
            },
            local=local,
        )
        daemon = Daemon(connections, clock=clock, on_cycle=ops.observe, leases=leases)
        url = serve_ops(settings, ops, daemon, clock=clock, listen=args.listen)
        structlog.get_logger("connector.daemon").info(
            "ops_server_started", url=url, webhooks=settings.webhooks.enabled
        )
        try:
            return daemon.run_until_stopped(duration=args.duration)
        finally:
            ops.stop()


def _check_sign_ins(settings: Settings, connections: list[Connection]) -> None:
    """Refuse to start a daemon that cannot sign in to Partner Center (no usable token in the
    cache, a revoked refresh token): every such connection named, with what to do."""
    problems = []
    for connection in connections:
        try:
            connection.partner_center.auth.token()
        except AuthError as exc:
            name = connection.settings.name
            problems.append(
                ConfigProblem(str(settings.source), f"connection.{name}.partner_center", str(exc))
            )
        except TransientError:  # Entra unreachable now: the cycles retry, and readiness says so
            continue
    if problems:
        raise ConfigError(problems)


def _cycles(args: argparse.Namespace, *, plan: bool) -> list[CycleResult]:
    settings = load_settings(args.config)
    configure_logging_from(settings)
    with _store(settings) as store:
        connections = _connections(settings, store)
        if args.json or not sys.stdout.isatty():
            return [_with_progress_log(c).sync.run_cycle(plan=plan) for c in connections]
        from rich.console import Console  # noqa: PLC0415

        from connector.observe.progress import TerminalProgress  # noqa: PLC0415

        with TerminalProgress(Console(file=sys.stdout)) as progress:  # a person is watching
            for connection in connections:
                connection.sync.on_progress = progress
            return [c.sync.run_cycle(plan=plan) for c in connections]


def _with_progress_log(connection: Connection) -> Connection:
    """``connection`` with a ``cycle_progress`` log line every 10 s of a long cycle."""
    from connector.observe.progress import ProgressLog  # noqa: PLC0415

    connection.sync.on_progress = ProgressLog()
    return connection


def run_once(args: argparse.Namespace) -> int:
    results = _cycles(args, plan=False)
    reports = [r for result in results for r in (result.outbound, result.inbound)]
    if args.json:
        print(json.dumps([{**r.summary(), "errors": r.errors} for r in reports], indent=2))
    else:
        for report in reports:
            print(_report_line(report))
    return 1 if any(r.failed for r in reports) else 0


def run_plan(args: argparse.Namespace) -> int:
    results = _cycles(args, plan=True)
    planned = [
        {"connection": r.connection, "direction": str(r.direction), **asdict(p)}
        for result in results
        for r in (result.outbound, result.inbound)
        for p in r.planned
    ]
    if args.json:
        print(json.dumps(planned, indent=2, default=str))
        return 0
    for item in planned:
        values = ", ".join(f"{k}={v!r}" for k, v in item["values"].items())
        where = f"{item['connection']} {item['direction']}"
        print(f"{where} {item['action']} {item['record_id']}: {values}")
    print(f"{len(planned)} write(s) planned, none made")
    return 0


def run_check(args: argparse.Namespace) -> int:
    """Every connection: Partner Center token, CRM reachable and its metadata fits the mapping.
    Each problem is printed with what to do; the exit status is 1 if any connection fails."""
    settings = load_settings(args.config)
    failed = 0
    with _store(settings) as store:
        for conn in settings.connections:
            try:
                connection = build_connection(conn, store)  # loads the mapping, checks metadata
                connection.partner_center.auth.token()
            except (ConfigError, ReferralSyncError) as exc:
                failed += 1
                print(f"{conn.name}: FAILED\n  {exc}")
                continue
            spec = connection.spec
            print(
                f"{conn.name}: OK (Partner Center signed in; {conn.crm} has every field, key and "
                f"stage of {spec.source})"
            )
            warning = _expiry_warning(conn, settings.source)
            if warning:
                print(f"  WARNING: {warning}")
    return 1 if failed else 0


def _expiry_warning(conn: ConnectionSettings, config: Path) -> str | None:
    from connector.partner_center.token_status import read_token_status  # noqa: PLC0415

    token = read_token_status(conn.partner_center.token_cache)
    days = token.days_left(SystemClock().now())
    if days is None or days > EXPIRY_WARNING_DAYS:
        return None
    return (
        f"the Partner Center refresh token lapses in {max(days, 0):.0f} day(s) unless used; "
        f"keep the daemon running, or `referral-sync login partner-center --config {config}`"
    )


# -- status and dead letters ----------------------------------------------------------------------


def run_status(args: argparse.Namespace) -> int:
    """Per connection: lag, last successes, dead letters, the sign-in's expiry, last cycles."""
    settings = load_settings(args.config)
    now = SystemClock().now()
    with _store(settings) as store:
        data = [_status_of(conn, store, now) for conn in settings.connections]
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for item in data:
        lag = item["lag_seconds"]
        behind = "never synced" if lag is None else f"{lag:.0f} s behind Partner Center"
        print(
            f"{item['connection']} ({item['crm']}, every {item['interval_seconds']:g} s): "
            f"{behind}; {item['dead_letters']} dead letter(s)"
        )
        print(f"  Partner Center sign-in: {_describe_token(item['partner_center_token'], now)}")
        if item["lease_holder"]:
            print(f"  synced by {item['lease_holder']} (holds the lease)")
        if not item["runs"]:
            print("  no cycle yet")
        for run in item["runs"]:
            counts = ", ".join(f"{k} {v}" for k, v in sorted(run["counts"].items()) if v)
            outcome = run["outcome"] or "running"
            print(f"  {run['started_at']}  {run['direction']:<8} {outcome}  {counts}")
    return 0


def _status_of(conn: ConnectionSettings, store: StateStore, now: datetime) -> dict[str, Any]:
    from connector.daemon.health import ConnectionHealth  # noqa: PLC0415
    from connector.partner_center.token_status import read_token_status  # noqa: PLC0415

    health = ConnectionHealth(
        name=conn.name,
        crm=conn.crm,
        interval_seconds=conn.interval_seconds,
        runs=tuple(store.recent_runs(conn.name, limit=STATUS_RUNS_SCANNED)),
        dead_letters=tuple(store.dead_letters(conn.name)),
        lag_seconds=None,
    )
    last = {str(d): health.last_success(d) for d in (Direction.OUTBOUND, Direction.INBOUND)}
    inbound = last[str(Direction.INBOUND)]
    return {
        "connection": conn.name,
        "crm": conn.crm,
        "interval_seconds": conn.interval_seconds,
        "lag_seconds": None if inbound is None else max(0.0, (now - inbound).total_seconds()),
        "last_success": {d: None if t is None else t.isoformat() for d, t in last.items()},
        "dead_letters": len(health.dead_letters),
        "lease_holder": store.lease_holder(conn.name),
        "partner_center_token": read_token_status(conn.partner_center.token_cache).as_dict(),
        "runs": [
            {
                "direction": str(r.direction),
                "started_at": r.started_at.isoformat(),
                "finished_at": None if r.finished_at is None else r.finished_at.isoformat(),
                "outcome": r.outcome,
                "counts": dict(r.counts),
                "errors": list(r.errors),
            }
            for r in health.runs[:STATUS_RUNS_SHOWN]
        ],
    }


def _describe_token(token: dict[str, Any], now: datetime) -> str:
    if token["problem"]:
        return str(token["problem"])
    expires = token["refresh_idle_expires_at"]
    if expires is None:
        return "signed in (access token only)"
    days = (datetime.fromisoformat(expires) - now).total_seconds() / 86_400
    return f"signed in; lapses if unused for {days:.0f} more day(s) (by {expires[:10]})"


def _dead_letter_dict(d: DeadLetter, *, payload: bool) -> dict[str, Any]:
    data = {
        "id": d.id,
        "connection": d.connection,
        "direction": str(d.direction),
        "record_id": d.record_id,
        "reason": d.reason,
        "attempts": d.attempts,
        "first_seen": d.first_seen.isoformat(),
        "last_seen": d.last_seen.isoformat(),
        "resolved_at": None if d.resolved_at is None else d.resolved_at.isoformat(),
    }
    if payload:
        data["payload"] = dict(d.payload)
    return data


def run_dlq_list(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    with _store(settings) as store:
        letters = store.dead_letters(args.connection, include_resolved=args.all)
    if args.json:
        print(json.dumps([_dead_letter_dict(d, payload=False) for d in letters], indent=2))
        return 0
    for d in letters:
        state = "resolved" if d.resolved_at else f"{d.attempts} attempt(s)"
        print(f"#{d.id} {d.connection} {d.direction} {d.record_id or '-'} ({state}): {d.reason}")
    print(f"{len(letters)} dead letter(s)")
    return 0


def _find(store: StateStore, dead_letter_id: int) -> DeadLetter | None:
    found = store.get_dead_letter(dead_letter_id)
    if found is None:
        print(f"referral-sync: no dead letter #{dead_letter_id}", file=sys.stderr)
    return found


def run_dlq_show(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    with _store(settings) as store:
        found = _find(store, args.id)
    if found is None:
        return 2
    print(json.dumps(_dead_letter_dict(found, payload=True), indent=2, ensure_ascii=False))
    return 0


def run_dlq_drop(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    with _store(settings) as store:
        found = _find(store, args.id)
        if found is None:
            return 2
        store.resolve_dead_letter(found.id, SystemClock().now())
    print(f"#{found.id} dropped (marked resolved, not synced)")
    return 0


def run_dlq_replay(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    configure_logging_from(settings)
    with _store(settings) as store:
        found = _find(store, args.id)
        if found is None:
            return 2
        if found.record_id is None:
            print(
                f"referral-sync: #{found.id} names no record to replay; fix the source and drop it",
                file=sys.stderr,
            )
            return 2
        [connection] = [
            build_connection(c, store) for c in settings.connections if c.name == found.connection
        ]
        sync = connection.sync
        report = RunReport(
            connection=found.connection, direction=found.direction, started_at=SystemClock().now()
        )
        try:
            if found.direction is Direction.INBOUND:
                sync.inbound.replay([found.record_id], report)
            else:
                sync.outbound.replay([change_from_payload(found.payload, connection.spec)], report)
        except (MappingError, PermanentError) as exc:  # the record is still bad at its source
            print(f"#{found.id}: still failing: {exc}")
            return 1
        after = store.get_dead_letter(found.id)
    resolved = after is not None and after.resolved_at is not None
    print(_report_line(report))
    reason = after.reason if after is not None else "?"
    print(f"#{found.id}: " + ("resolved" if resolved else f"still failing: {reason}"))
    return 0 if resolved else 1
