"""The CRM setup kit against the sandbox: ``crm-setup dynamics --apply`` on an environment
nobody has set up yet (no ``rs_`` columns, no alternate key) creates what the mapping needs
through the Web API's metadata endpoints, waits for the key's index, and then the metadata
check finds nothing missing; a second run changes nothing. ``crm-setup check`` names what is
missing in an admin's words, for Dynamics and Salesforce.
"""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from fakes import FakeClock

from connector.cli import main
from connector.crm.dynamics.build import DynamicsConnection, build_dynamics_from_info
from connector.crm.dynamics.setup import COLUMNS, KEY, apply, load_plan
from connector.errors import PermanentError, RecordRejected
from connector.mapping import requirements
from connector.mapping_file import load_mapping_file
from connector.ports import OpportunityWrite
from connector.settings import RetrySettings
from connector.tour import write_sandbox_config
from sandbox.app import Sandbox

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
SPEC = load_mapping_file(ROOT / "mappings" / "dynamics.yaml")
NEEDS = requirements(SPEC)


class SandboxTime(FakeClock):
    """Sleeping moves the sandbox's clock too, so the key's index job runs while we wait."""

    def __init__(self, sandbox: Sandbox) -> None:
        super().__init__()
        self.sandbox = sandbox

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        self.sandbox.clock.advance(timedelta(seconds=seconds))


@pytest.fixture
def bare(sandbox: Sandbox) -> Sandbox:
    """An environment before setup: opportunity without the rs_ columns and the key."""
    sandbox.dataverse.store.clear()
    sandbox.dataverse._seed_currencies()
    sandbox.dataverse.schema.remove_customizations("opportunity", "rs_")
    return sandbox


def connect(sandbox: Sandbox) -> DynamicsConnection:
    clock = FakeClock()
    return build_dynamics_from_info(
        sandbox.info,
        sandbox.info["ca_bundle"],
        retry=RetrySettings(max_attempts=3, max_seconds=30, base_seconds=1, cap_seconds=4),
        sleep=clock.sleep,
        clock=clock,
    )


def customizations(sandbox: Sandbox) -> int:
    """Metadata writes: crm-setup sends each in a $batch of one (the client's public POST)."""
    return sum(sandbox.log.count(service="dataverse", route=r) for r in ("batch", "customize"))


def test_apply_creates_the_columns_and_key_then_check_finds_nothing_missing(bare):
    conn = connect(bare)
    before = conn.adapter.check_metadata(NEEDS)
    assert {p.field for p in before} == set(COLUMNS)
    time = SandboxTime(bare)

    done = apply(conn.client, load_plan(conn.client, NEEDS, SPEC.key), sleep=time.sleep, clock=time)

    assert sorted(done.columns) == sorted(COLUMNS)
    assert (done.key, done.key_status) == (KEY.logical_name, "Active")
    assert time.sleeps, "the key's index is built in the background: apply waited for it"
    assert customizations(bare) == len(COLUMNS) + 1
    assert conn.adapter.check_metadata(NEEDS) == []
    # and the sync can use them: an upsert by the new key, writing the new columns
    (outcome,) = conn.adapter.upsert(
        [
            OpportunityWrite(
                key="R-1",
                fields={
                    "name": "Deal R-1",
                    "statuscode": 2,
                    "estimatedclosedate": date(2026, 6, 30),
                    "estimatedvalue": Decimal("10"),
                    "rs_hot": True,
                    "rs_declinereason": "Duplicate",
                },
            )
        ]
    )
    assert not outcome.failed, outcome.reason
    (row,) = bare.dataverse.store.rows("opportunity")
    assert (row[KEY.columns[0]], row["rs_hot"], row["rs_declinereason"]) == ("R-1", True, 100000002)


def test_a_second_run_finds_nothing_to_do_and_writes_nothing(bare):
    conn = connect(bare)
    time = SandboxTime(bare)
    apply(conn.client, load_plan(conn.client, NEEDS, SPEC.key), sleep=time.sleep, clock=time)
    table = bare.dataverse.schema.entity("opportunity")
    writes = customizations(bare)

    again = load_plan(conn.client, NEEDS, SPEC.key)
    done = apply(conn.client, again, sleep=time.sleep, clock=time)

    assert again.nothing_to_do
    assert (done.columns, done.key) == ([], None)
    assert customizations(bare) == writes
    assert bare.dataverse.schema.entity("opportunity") == table


def test_a_solution_whose_publisher_is_not_rs_is_refused_before_anything_is_made(bare):
    conn = connect(bare)
    plan = load_plan(conn.client, NEEDS, SPEC.key)
    bare.dataverse.schema.solutions = {"ReferralSync": "contoso"}

    with pytest.raises(RecordRejected, match="customization prefix"):
        apply(conn.client, plan)

    assert bare.dataverse.schema.entity("opportunity").attribute("rs_hot") is None


def test_a_key_whose_index_fails_on_repeated_ids_stops_apply_with_what_to_do(bare):
    conn = connect(bare)
    plan = load_plan(conn.client, NEEDS, SPEC.key)
    apply(conn.client, dataclasses.replace(plan, key=None))
    for name in ("one", "two"):  # no key yet: nothing stops the same referral twice
        bare.dataverse.store.write("opportunity", None, {"name": name, KEY.columns[0]: "R-1"})
    time = SandboxTime(bare)

    with pytest.raises(PermanentError, match="Remove the duplicates"):
        apply(conn.client, load_plan(conn.client, NEEDS, SPEC.key), sleep=time.sleep, clock=time)

    (problem,) = conn.adapter.check_metadata(NEEDS)
    assert "not active yet (Failed)" in problem.message


# -- the commands ---------------------------------------------------------------------------

DYNAMICS_CONFIG = """\
[state]
url = "sqlite:///{dir}/state.db"

[[connection]]
name = "fabrikam"
crm = "dynamics"

[connection.partner_center]
base_url = "{pc_base_url}"
authority = "{authority}"
client_id = "{pc_client_id}"
auth_mode = "device_code"
token_cache = "{dir}/partner-center-token-cache.json"
ca_bundle = "{ca_bundle}"

[connection.dynamics]
base_url = "{base_url}"
authority = "{authority}"
client_id = "{client_id}"
client_secret_file = "{dir}/dataverse-client-secret"
scope = "{scope}"
ca_bundle = "{ca_bundle}"
"""


def dynamics_config(sandbox: Sandbox, directory: Path) -> Path:
    info = sandbox.info
    secret = directory / "dataverse-client-secret"
    secret.touch(mode=0o600)
    secret.write_text(info["entra"]["dataverse"]["client_secret"], encoding="utf-8")
    path = directory / "dynamics.toml"
    path.write_text(
        DYNAMICS_CONFIG.format(
            dir=directory,
            pc_base_url=info["partner_center"]["base_url"],
            authority=info["entra"]["authority"],
            pc_client_id=info["entra"]["partner_center"]["client_id"],
            ca_bundle=Path(info["ca_bundle"]).resolve(),
            base_url=info["dataverse"]["base_url"],
            client_id=info["entra"]["dataverse"]["client_id"],
            scope=info["dataverse"]["scope"],
        ),
        encoding="utf-8",
    )
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    status = main(list(args))
    return status, capsys.readouterr().out


def test_the_commands_plan_apply_and_check_a_dynamics_environment(bare, tmp_path, capsys):
    bare.dataverse.key_index_seconds = 0  # the command really sleeps between polls
    config = str(dynamics_config(bare, tmp_path))

    status, out = run(capsys, "crm-setup", "check", "--config", config)
    assert status == 1
    assert f"fabrikam (dynamics): {len(COLUMNS)} thing(s) to fix" in out
    assert (
        "opportunity has no column rs_hot (Yes/No): run `referral-sync crm-setup dynamics "
        "--apply`, or give the application user's security role access to it"
    ) in out

    status, out = run(capsys, "crm-setup", "dynamics", "--config", config)
    assert status == 0
    assert (
        "would create column rs_referrallink: Referral Link, Single line of text (URL, 2000)" in out
    )
    assert "would create alternate key rs_partnercenterreferralid_key" in out
    assert customizations(bare) == 0

    status, out = run(capsys, "crm-setup", "dynamics", "--config", config, "--apply")
    assert status == 0, out
    assert "created column rs_hot (Yes/No)" in out
    assert "alternate key rs_partnercenterreferralid_key is Active" in out

    status, out = run(capsys, "crm-setup", "check", "--config", config)
    assert (status, "fabrikam (dynamics): nothing missing") == (0, out.splitlines()[0][:36])

    status, out = run(capsys, "crm-setup", "dynamics", "--config", config, "--apply")
    assert status == 0
    assert "nothing to do" in out
    assert customizations(bare) == len(COLUMNS) + 1


def test_check_names_a_missing_salesforce_field_with_its_type_and_the_kit(
    sandbox, tmp_path, capsys
):
    config = str(write_sandbox_config(sandbox, tmp_path))
    assert run(capsys, "crm-setup", "check", "--config", config)[0] == 0

    sandbox.salesforce.org.remove_field("Opportunity", "Partner_Center_Referral_Id__c")
    status, out = run(capsys, "crm-setup", "check", "--config", config)

    assert status == 1
    assert (
        "Opportunity has no field Partner_Center_Referral_Id__c (Text(100), External ID, "
        "Unique): deploy crm-setup/salesforce (its README: `sf project deploy start "
        "--source-dir force-app`), or give the integration user field-level access to it "
        "(permission set Referral_Sync)"
    ) in out
