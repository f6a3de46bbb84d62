"""``referral-sync crm-setup check|dynamics``: what a CRM lacks for its mapping, and (Dynamics)
creating it.

``check`` reads each connection's CRM metadata against its mapping and lists every gap in a CRM
admin's words, with what to do: deploy ``crm-setup/salesforce`` (Salesforce DX source) or run
``crm-setup dynamics --apply``. ``dynamics`` prints the plan (the ``rs_`` columns and the
alternate key it would create); with ``--apply`` it creates them and waits for the key's index.
Neither signs in to Partner Center.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from connector.commands import configure_logging_from
from connector.crm.dynamics import setup as dynamics_setup
from connector.crm.dynamics.build import build_dynamics
from connector.crm.salesforce.build import build_salesforce
from connector.crm.salesforce.setup import describe_field, read_fields
from connector.errors import ConfigError, ConfigProblem, ReferralSyncError
from connector.mapping import requirements
from connector.ports import CrmAdapter, MetadataProblem
from connector.settings import ConnectionSettings, Settings, load_settings
from connector.wiring import load_connection_mapping

__all__ = ["add_crm_setup_commands", "describe_problem"]

DEPLOY = "its README: `sf project deploy start --source-dir force-app`"
APPLY = "referral-sync crm-setup dynamics --apply"


def add_crm_setup_commands(commands: Any) -> None:  # noqa: ANN401 - argparse's private type
    parser = commands.add_parser(
        "crm-setup",
        help="check the CRM has the fields the mapping needs; create them in Dynamics",
        description="The CRM setup kit. Salesforce: deploy crm-setup/salesforce (Salesforce DX "
        "source, see its README). Dynamics 365: `crm-setup dynamics --apply` creates the rs_ "
        "columns and the alternate key through the Web API. `crm-setup check` says what is "
        "still missing, for every connection.",
        epilog="examples:\n  referral-sync crm-setup check --config my.toml\n"
        "  referral-sync crm-setup dynamics --config my.toml\n"
        "  referral-sync crm-setup dynamics --config my.toml --apply",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="crm_setup_command", required=True, metavar="ACTION")
    check = actions.add_parser("check", help="list what each connection's CRM lacks")
    dynamics = actions.add_parser(
        "dynamics", help="plan (or --apply) the rs_ columns and alternate key in Dataverse"
    )
    for action in (check, dynamics):
        action.add_argument("--config", type=Path, required=True, help="the TOML configuration")
        action.add_argument("--connection", help="only this connection (default: every one)")
    dynamics.add_argument("--apply", action="store_true", help="create what is missing")
    dynamics.add_argument(
        "--solution",
        default=dynamics_setup.SOLUTION,
        help="the unmanaged solution (publisher prefix rs) the columns and key join "
        f"(default {dynamics_setup.SOLUTION})",
    )
    dynamics.add_argument(
        "--wait",
        type=float,
        default=900.0,
        help="seconds to wait for the alternate key's index (default 900)",
    )
    check.set_defaults(func=run_check)
    dynamics.set_defaults(func=run_dynamics)


# -- check ----------------------------------------------------------------------------------


def run_check(args: argparse.Namespace) -> int:
    """Exit 1 if any connection's CRM lacks something (or cannot be read), else 0."""
    settings = _settings(args.config)
    failed = 0
    for conn in settings.chosen(args.connection):
        try:
            spec = load_connection_mapping(conn)
            problems = _adapter(conn, spec.key).check_metadata(requirements(spec))
        except (ConfigError, ReferralSyncError) as exc:
            failed += 1
            print(f"{conn.name} ({conn.crm}): could not check: {exc}")
            continue
        if not problems:
            print(f"{conn.name} ({conn.crm}): nothing missing: every field {spec.source} names")
            continue
        failed += 1
        print(f"{conn.name} ({conn.crm}): {len(problems)} thing(s) to fix")
        for problem in problems:
            print(f"  - {describe_problem(conn.crm, problem)}")
    return 1 if failed else 0


def _adapter(conn: ConnectionSettings, key_column: str) -> CrmAdapter:
    if conn.crm == "dynamics" and conn.dynamics is not None:
        return build_dynamics(conn.dynamics, key_column=key_column).adapter
    if conn.crm == "salesforce" and conn.salesforce is not None:
        return build_salesforce(conn.salesforce).adapter
    where = f"connection.{conn.name}.{conn.crm}"
    raise ConfigError([ConfigProblem("(config)", where, f"the [{where}] section is missing")])


def describe_problem(crm: str, problem: MetadataProblem) -> str:
    """One problem, for the admin: a missing field with what it must be and how to add it."""
    missing = problem.field is not None and "does not exist" in problem.message
    key = crm == "dynamics" and problem.field in dynamics_setup.KEY.columns
    if key and "not an alternate key" in problem.message:
        return f"{problem} (`{APPLY}` creates it)"
    if not missing or problem.field is None:
        return str(problem)
    if crm == "salesforce":
        source = read_fields().get(problem.field)
        shape = f" ({describe_field(source)})" if source else ""
        how = f"deploy crm-setup/salesforce ({DEPLOY})" if source else "create it"
        return (
            f"{problem.sobject} has no field {problem.field}{shape}: {how}, or give the "
            "integration user field-level access to it (permission set Referral_Sync)"
        )
    column = dynamics_setup.COLUMNS.get(problem.field)
    shape = f" ({column.describe()})" if column else ""
    how = f"run `{APPLY}`" if column else "create it"
    return (
        f"{problem.sobject} has no column {problem.field}{shape}: {how}, or give the "
        "application user's security role access to it"
    )


# -- dynamics -------------------------------------------------------------------------------


def run_dynamics(args: argparse.Namespace) -> int:
    """Print the plan for each Dynamics connection (and apply it); exit 1 if something is left
    that only a customizer can do, the key is not Active yet, or a write was refused."""
    settings = _settings(args.config)
    chosen = [c for c in settings.chosen(args.connection) if c.crm == "dynamics"]
    if not chosen:
        print("no Dynamics connection: for Salesforce, deploy crm-setup/salesforce (its README)")
        return 1
    failed = 0
    for conn in chosen:
        try:
            failed += not _setup_one(conn, args)
        except (ConfigError, ReferralSyncError) as exc:
            failed += 1
            print(f"  FAILED: {exc}")
    return 1 if failed else 0


def _setup_one(conn: ConnectionSettings, args: argparse.Namespace) -> bool:
    spec = load_connection_mapping(conn)
    if conn.dynamics is None:
        raise ConfigError(
            [ConfigProblem("(config)", f"connection.{conn.name}.dynamics", "is missing")]
        )
    client = build_dynamics(conn.dynamics, key_column=spec.key).client
    plan = dynamics_setup.load_plan(client, requirements(spec), spec.key)
    print(f"{conn.name}: table {plan.table} in {client.base_url} (solution {args.solution})")
    if plan.nothing_to_do:
        print("  nothing to do: every rs_ column and the alternate key are there")
        return True
    if not args.apply:
        _print_plan(plan)
        return not plan.manual
    done = dynamics_setup.apply(
        client,
        plan,
        solution=args.solution,
        timeout_s=args.wait,
        on_step=lambda step: print(f"  {step}"),
    )
    waiting = done.key_status not in (None, "Active")
    if waiting:
        print(
            f"  the alternate key's index is still being built ({done.key_status}): "
            "run `referral-sync crm-setup check` later"
        )
    for problem in plan.manual:
        print(f"  by hand: {problem}")
    return not (waiting or plan.manual)


def _print_plan(plan: dynamics_setup.Plan) -> None:
    for column in plan.columns:
        print(f"  would create column {column.logical_name}: {column.label}, {column.describe()}")
    if plan.key is not None:
        print(
            f"  would create alternate key {plan.key.logical_name} on "
            f"{', '.join(plan.key.columns)}, then wait for its index"
        )
    if plan.pending_key is not None:
        name, status = plan.pending_key
        print(f"  would wait for alternate key {name} (its index is {status})")
    for problem in plan.manual:
        print(f"  by hand (crm-setup cannot): {problem}")
    if plan.columns or plan.key or plan.pending_key:
        print("  run again with --apply to do it")


def _settings(path: Path) -> Settings:
    """The settings, with logging (JSON lines on stderr) configured from them."""
    settings = load_settings(path)
    configure_logging_from(settings)
    return settings
