"""The ``referral-sync`` command line.

Each sub-command is a small function taking the parsed arguments and returning the exit status;
``main`` only parses and dispatches. Configuration problems print every problem and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from connector import __version__
from connector.commands import add_commands
from connector.crm_setup_commands import add_crm_setup_commands
from connector.errors import ConfigError
from connector.settings import load_settings
from connector.webhook_commands import add_webhook_commands

EXAMPLES = """\
examples:
  referral-sync try --state-dir .sandbox
  referral-sync run --config my.toml
  referral-sync once --config my.toml --json
  referral-sync dlq list --config my.toml
  referral-sync sandbox serve --state-dir .sandbox --referrals 500
  referral-sync config check --config config/salesforce.example.toml
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="referral-sync",
        description="Keep Microsoft Partner Center referrals and CRM opportunities in step.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"referral-sync {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    config = commands.add_parser(
        "config",
        help="validate a configuration file",
        description="Load a configuration file the way the daemon does and list every problem.",
        epilog="example:\n  referral-sync config check --config config/salesforce.example.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = config_commands.add_parser("check", help="load, validate and summarise a config")
    check.add_argument("--config", type=Path, required=True, help="the TOML configuration file")
    check.set_defaults(func=run_config_check)

    login = commands.add_parser(
        "login",
        help="sign in to a service once and keep the token cache (owner-only)",
        description="Sign in with the device-code flow; later runs refresh from the cache.",
        epilog="example:\n  referral-sync login partner-center --config my-config.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    login.add_argument("service", choices=["partner-center"], help="what to sign in to")
    login.add_argument("--config", type=Path, required=True, help="the TOML configuration file")
    login.add_argument("--connection", help="the connection's name (default: every connection)")
    login.set_defaults(func=run_login)

    tour = commands.add_parser(
        "try",
        help="start the sandbox and run the two-way sync end to end",
        description=(
            "Start the sandbox (Entra ID, Partner Center, a Salesforce org), sign in, sync every "
            "referral into Salesforce, let a simulated salesperson work, sync the changes back, "
            "and report what each cycle did and cost in requests."
        ),
        epilog="example:\n  referral-sync try --state-dir .sandbox --referrals 500",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tour.add_argument("--state-dir", type=Path, default=Path(".sandbox"), help="sandbox files")
    tour.add_argument("--referrals", type=int, default=500, help="referrals to generate")
    tour.set_defaults(func=run_try)

    demo = commands.add_parser(
        "demo",
        help="the sandbox, the daemon and a simulated salesperson together",
        description=(
            "Start the sandbox, run the daemon against it and let a simulated salesperson work "
            "in Salesforce while Microsoft edits referrals: the two-way flow, live."
        ),
        epilog="example:\n  referral-sync demo --state-dir .sandbox --duration 90",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--state-dir", type=Path, default=Path(".sandbox"), help="sandbox files")
    demo.add_argument("--referrals", type=int, default=500, help="referrals to generate")
    demo.add_argument("--duration", type=float, help="stop after this many seconds")
    demo.set_defaults(func=run_demo_command)

    # Imported here so commands that do not need the simulators do not load them.
    from sandbox.cli import add_parser as add_sandbox_parser  # noqa: PLC0415

    add_sandbox_parser(commands)
    add_commands(commands)
    add_webhook_commands(commands)
    add_crm_setup_commands(commands)
    return parser


def run_config_check(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    print(f"{settings.source}: OK, {len(settings.connections)} connection(s)")
    for conn in settings.connections:
        pc = conn.partner_center
        print(
            f"  {conn.name}: Partner Center {pc.base_url} ({pc.auth_mode}) <-> {conn.crm}, "
            f"every {conn.interval_seconds:g} s"
        )
    print(f"  state: {settings.state.url}")
    return 0


def run_login(args: argparse.Namespace) -> int:
    from connector.partner_center.build import build_partner_center  # noqa: PLC0415

    settings = load_settings(args.config)
    for conn in settings.chosen(args.connection):
        pc = build_partner_center(conn.partner_center, prompt=print)
        user = pc.auth.login()
        print(f"{conn.name}: signed in to Partner Center as {user}")
        print(f"  token cache: {conn.partner_center.token_cache} (owner-only)")
    return 0


def run_try(args: argparse.Namespace) -> int:
    from connector.observe.logging import configure_logging  # noqa: PLC0415
    from connector.tour import run_tour  # noqa: PLC0415 - loads the sandbox

    configure_logging(level="info")
    return run_tour(args.state_dir, referrals=args.referrals, out=sys.stdout)


def run_demo_command(args: argparse.Namespace) -> int:
    from connector.demo import run_demo  # noqa: PLC0415 - loads the sandbox
    from connector.observe.logging import configure_logging  # noqa: PLC0415

    configure_logging(level="info")
    return run_demo(
        args.state_dir, referrals=args.referrals, duration=args.duration, out=sys.stdout
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.func(args)
    except ConfigError as exc:
        print(f"referral-sync: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return status
