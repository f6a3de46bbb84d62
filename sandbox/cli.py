"""``referral-sync sandbox serve``: run every simulator until SIGTERM or Ctrl-C.

``add_parser(subparsers)`` adds ``sandbox serve`` to the top-level command's subparsers (each
parser gets ``func=run_serve``); ``python -m sandbox serve ...`` runs it without the daemon.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from sandbox.app import Sandbox
from sandbox.faults import FaultPlan

logger = logging.getLogger("sandbox.cli")


def _fault_spec(text: str) -> str:
    try:
        FaultPlan.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", type=Path, required=True, help="where sandbox.json goes")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to serve on")
    parser.add_argument("--seed-file", type=Path, help="JSON list of raw referrals to load")
    parser.add_argument("--referrals", type=int, default=0, help="generate N referrals")
    parser.add_argument("--referral-seed", type=int, default=1, help="seed of the generator")
    parser.add_argument(
        "--faults",
        type=_fault_spec,
        default="",
        help="e.g. 'partner_center:429=0.1,500=0.05,reset=0.02,retry_after=2;entra:503=0.1'",
    )
    parser.add_argument("--fault-seed", type=int, help="seed of the fault dice")
    parser.add_argument("--latency-ms", type=float, default=0, help="added to every reply")
    parser.add_argument(
        "--clock-speed", type=_positive, default=1.0, help="sandbox seconds per real second"
    )
    parser.add_argument(
        "--token-lifetime", type=int, default=3600, help="access token lifetime, real seconds"
    )


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``sandbox serve`` under the top-level command."""
    sandbox = subparsers.add_parser("sandbox", help="local simulators of the remote services")
    commands = sandbox.add_subparsers(dest="sandbox_command", required=True)
    serve = commands.add_parser(
        "serve",
        help="serve Entra, Partner Center and Salesforce over TLS until SIGTERM",
        description="Serve the simulators on HOST over TLS and write STATE_DIR/sandbox.json.",
    )
    add_serve_arguments(serve)
    serve.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    """Start the sandbox, print where it is, wait for SIGTERM/SIGINT, stop; 0 on a clean stop."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logger.info("sandbox_stopping signal=%s", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    sandbox = Sandbox(
        args.state_dir,
        host=args.host,
        seed_file=args.seed_file,
        referrals=args.referrals,
        referral_seed=args.referral_seed,
        faults=args.faults,
        fault_seed=args.fault_seed,
        latency_ms=args.latency_ms,
        clock_speed=args.clock_speed,
        token_lifetime_s=args.token_lifetime,
    )
    try:
        sandbox.start()
        for name, server in sandbox.servers.items():
            sys.stdout.write(f"{name} {server.url}\n")
        sys.stdout.write(f"sandbox.json {sandbox.info_path}\n")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    finally:
        sandbox.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the simulators until SIGTERM")
    add_serve_arguments(serve)
    args = parser.parse_args(argv)
    return run_serve(args)
