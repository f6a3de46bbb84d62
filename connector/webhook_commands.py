"""``referral-sync webhooks register|show``: point each connection's Partner Center tenant at
this daemon's webhook route, or say what it points at now.

Partner Center keeps one URL per event per tenant, so ``register`` replaces whatever was
registered (Microsoft's own connector flows included): it says so before it does it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from connector.errors import ConfigError, ConfigProblem, ReferralSyncError
from connector.partner_center.build import build_partner_center
from connector.settings import Settings, load_settings
from connector.webhooks.setup import connection_webhook_url, register_connection, registration_of

__all__ = ["add_webhook_commands"]


def add_webhook_commands(commands: Any) -> None:  # noqa: ANN401 - argparse's private type
    parser = commands.add_parser(
        "webhooks",
        help="register this daemon's webhook URL with Partner Center, or show the registration",
        description="Partner Center webhooks: each connection's tenant posts referral-created "
        "and referral-updated events to [webhooks] public_url + /webhooks/partner-center/NAME.",
        epilog="examples:\n  referral-sync webhooks register --config my.toml\n"
        "  referral-sync webhooks show --config my.toml --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="webhooks_command", required=True, metavar="ACTION")
    register = actions.add_parser(
        "register", help="register (or replace) each connection's webhook with its tenant"
    )
    show = actions.add_parser("show", help="what each connection's tenant has registered now")
    for action in (register, show):
        action.add_argument("--config", type=Path, required=True, help="the TOML configuration")
        action.add_argument("--connection", help="only this connection (default: every one)")
        action.add_argument("--json", action="store_true", help="print the answers as JSON")
    register.set_defaults(func=run_register)
    show.set_defaults(func=run_show)


def run_register(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    if not settings.webhooks.enabled:
        problem = ConfigProblem(
            str(settings.source), "webhooks.enabled", "is false: enable [webhooks] first"
        )
        raise ConfigError([problem])
    return _each(args, settings, register=True)


def run_show(args: argparse.Namespace) -> int:
    return _each(args, load_settings(args.config), register=False)


def _each(args: argparse.Namespace, settings: Settings, *, register: bool) -> int:
    answers: dict[str, Any] = {}
    failed = 0
    for conn in settings.chosen(args.connection):
        auth = build_partner_center(conn.partner_center).auth
        try:
            if register:
                url = connection_webhook_url(settings.webhooks, conn.name)
                if not args.json:
                    print(f"{conn.name}: registering {url} (replaces the tenant's registration)")
                answers[conn.name] = register_connection(conn, auth, url)
            else:
                answers[conn.name] = registration_of(conn, auth)
        except ReferralSyncError as exc:
            failed += 1
            answers[conn.name] = {"error": str(exc)}
    if args.json:
        print(json.dumps(answers, indent=2))
    else:
        for name, answer in answers.items():
            print(f"{name}: {_describe(answer)}")
    return 1 if failed else 0


def _describe(answer: dict[str, Any]) -> str:
    if "error" in answer:
        return f"FAILED: {answer['error']}"
    if not answer:
        return "nothing registered"
    events = ", ".join(answer.get("WebhookEvents") or []) or "no events"
    return f"{answer.get('WebhookUrl')} for {events} (subscriber {answer.get('SubscriberId')})"
