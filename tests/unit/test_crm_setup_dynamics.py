"""The Dynamics setup kit without HTTP: the request bodies crm-setup sends, the Dataverse
simulator's rules for metadata writes, and the plan against a table's metadata.

The simulator must refuse what a real environment refuses (no ``@odata.type``, a schema name
without the solution publisher's prefix, a String without MaxLength, a key on a Memo column),
and crm-setup's bodies must make exactly the columns the simulator declares by default, so
the kit, the simulator and docs/dynamics-setup.md cannot drift apart.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connector.crm.dynamics.metadata import Column, Option, Table, column_problems
from connector.crm.dynamics.setup import COLUMNS, KEY, column_body, key_body, plan_setup
from connector.crm_setup_commands import describe_problem
from connector.mapping import requirements
from connector.mapping_file import load_mapping_file
from connector.ports import MetadataProblem
from sandbox.clock import SandboxClock
from sandbox.dynamics.customize import create_attribute, create_key, settle_keys
from sandbox.dynamics.errors import DataverseError
from sandbox.dynamics.schema import OrgSchema
from sandbox.dynamics.store import RowStore
from sandbox.dynamics.tables import ALTERNATE_KEY, DEFAULT_TABLES, PARTNER_COLUMNS

ROOT = Path(__file__).resolve().parents[2]
SPEC = load_mapping_file(ROOT / "mappings" / "dynamics.yaml")
SOLUTION = "ReferralSync"


@pytest.fixture
def clock():
    return SandboxClock(start=datetime(2026, 1, 1, tzinfo=UTC), monotonic=lambda: 0.0)


@pytest.fixture
def schema():
    """The opportunity table as it is before anyone set Referral Sync up."""
    org = OrgSchema(DEFAULT_TABLES)
    org.remove_customizations("opportunity", "rs_")
    return org


def opportunity(schema: OrgSchema):
    table = schema.entity("opportunity")
    assert table is not None
    return table


def refused(call, *args, **kwargs) -> DataverseError:
    with pytest.raises(DataverseError) as caught:
        call(*args, **kwargs)
    return caught.value


# -- the kit matches the mapping and the simulator's declared columns -----------------------


def test_the_kit_creates_every_rs_column_the_mapping_names_and_no_other():
    named = {need.name for need in requirements(SPEC) if need.name.startswith("rs_")}
    assert named | {SPEC.key} == set(COLUMNS)
    assert (SPEC.key,) == KEY.columns


def test_each_kit_column_makes_exactly_the_column_the_simulator_declares(schema):
    declared = {a.logical_name: a for a in PARTNER_COLUMNS}
    assert set(declared) == set(COLUMNS)
    for name, column in COLUMNS.items():
        made = create_attribute(schema, opportunity(schema), column_body(column), SOLUTION)
        want = declared[name]
        assert (made.logical_name, made.type, made.max_length) == (
            want.logical_name,
            want.type,
            want.max_length,
        )
        assert made.display_name == want.display_name
        assert (made.format_name or "Text") == (want.format_name or "Text")
        assert made.date_only == want.date_only
        assert [(o.value, o.label) for o in made.options] == [
            (o.value, o.label) for o in want.options
        ]
        assert made.custom


def test_the_kit_key_is_the_simulators_key(schema):
    default = next(k for k in OrgSchema(DEFAULT_TABLES).entity("opportunity").keys)
    assert (KEY.logical_name, KEY.columns) == (ALTERNATE_KEY, default.attributes)


def test_docs_list_every_column_crm_setup_creates_with_its_type():
    docs = (ROOT / "docs" / "dynamics-setup.md").read_text(encoding="utf-8")
    for column in COLUMNS.values():
        assert f"| `{column.logical_name}` | {column.describe()} |" in docs, column.logical_name
    assert KEY.logical_name in docs


# -- the simulator refuses what Dataverse refuses --------------------------------------------


def test_a_column_needs_a_concrete_odata_type(schema):
    body = column_body(COLUMNS["rs_hot"])
    del body["@odata.type"]
    assert refused(create_attribute, schema, opportunity(schema), body, SOLUTION).status == 400
    body["@odata.type"] = "Microsoft.Dynamics.CRM.AttributeMetadata"
    assert refused(create_attribute, schema, opportunity(schema), body, SOLUTION).status == 400


def test_the_schema_name_must_carry_the_solution_publishers_prefix(schema):
    body = column_body(COLUMNS["rs_hot"])
    no_header = refused(create_attribute, schema, opportunity(schema), body, None)
    assert no_header.code == "0x800608ad"  # the Default solution's publisher is new_
    assert refused(create_attribute, schema, opportunity(schema), body, "Nope").status == 404
    body["SchemaName"] = "new_Hot"
    wrong = refused(create_attribute, schema, opportunity(schema), body, SOLUTION)
    assert "customization prefix" in wrong.message


@pytest.mark.parametrize(
    ("column", "change"),
    [
        ("rs_engagementid", {"MaxLength": None}),
        ("rs_engagementid", {"MaxLength": 4001}),
        ("rs_microsoftnotes", {"MaxLength": 0}),
        ("rs_expires", {"Format": None}),
        ("rs_hot", {"OptionSet": None}),
        ("rs_declinereason", {"OptionSet": {"IsGlobal": False, "OptionSetType": "Picklist"}}),
        ("rs_engagementid", {"DisplayName": {"LocalizedLabels": []}}),
        ("rs_engagementid", {"RequiredLevel": {"Value": "SystemRequired"}}),
        ("rs_engagementid", {"AttributeType": "Memo"}),
    ],
)
def test_a_column_without_what_its_type_needs_is_refused(schema, column, change):
    body = {**column_body(COLUMNS[column]), **change}
    body = {k: v for k, v in body.items() if v is not None}
    assert refused(create_attribute, schema, opportunity(schema), body, SOLUTION).status == 400


def test_a_column_of_an_existing_name_is_refused(schema):
    body = column_body(COLUMNS["rs_hot"])
    create_attribute(schema, opportunity(schema), body, SOLUTION)
    assert (
        "already exists"
        in refused(create_attribute, schema, opportunity(schema), body, SOLUTION).message
    )


def test_a_key_must_name_existing_columns_of_a_key_type(schema, clock):
    table = opportunity(schema)
    now = clock.now()
    missing = refused(create_key, schema, table, key_body(KEY), SOLUTION, now=now, index_seconds=1)
    assert missing.status == 404
    create_attribute(schema, table, column_body(COLUMNS["rs_microsoftnotes"]), SOLUTION)
    memo = {**key_body(KEY), "KeyAttributes": ["rs_microsoftnotes"]}
    assert (
        refused(
            create_key, schema, opportunity(schema), memo, SOLUTION, now=now, index_seconds=1
        ).status
        == 400
    )


def test_a_new_key_is_pending_then_in_progress_then_active_and_only_then_addresses_rows(
    schema, clock
):
    store = RowStore(schema, clock)
    create_attribute(schema, opportunity(schema), column_body(COLUMNS[KEY.columns[0]]), SOLUTION)
    create_key(
        schema, opportunity(schema), key_body(KEY), SOLUTION, now=clock.now(), index_seconds=10
    )
    seen = []
    for _ in range(3):
        settle_keys(schema, store, clock.now())
        (key,) = opportunity(schema).keys
        seen.append(key.status)
        assert (opportunity(schema).key(KEY.columns) is not None) == (key.status == "Active")
        clock.advance(timedelta(seconds=5))
    assert seen == ["Pending", "InProgress", "Active"]
    assert refused(
        create_key, schema, opportunity(schema), key_body(KEY), SOLUTION, now=clock.now(),
        index_seconds=1,
    ).status == 400  # fmt: skip


def test_a_key_over_rows_that_repeat_a_value_fails(schema, clock):
    store = RowStore(schema, clock)
    create_attribute(schema, opportunity(schema), column_body(COLUMNS[KEY.columns[0]]), SOLUTION)
    create_key(
        schema, opportunity(schema), key_body(KEY), SOLUTION, now=clock.now(), index_seconds=1
    )
    for name in ("one", "two"):  # no index yet: nothing keeps them unique
        store.write("opportunity", None, {"name": name, KEY.columns[0]: "R-1"})
    clock.advance(timedelta(seconds=2))
    settle_keys(schema, store, clock.now())
    assert [k.status for k in opportunity(schema).keys] == ["Failed"]


# -- the plan -------------------------------------------------------------------------------


def table_of(columns: dict[str, Column], keys=None) -> Table:
    return Table("opportunity", change_tracking=True, columns=columns, keys=keys or {})


BASE = {
    name: Column(name, kind)
    for name, kind in [
        ("name", "String"),
        ("description", "Memo"),
        ("estimatedvalue", "Money"),
        ("estimatedclosedate", "DateTime"),
        ("transactioncurrencyid", "Lookup"),
    ]
}


def test_the_plan_for_a_bare_table_is_every_kit_column_then_the_key():
    status = Column("statuscode", "Status", options=tuple(Option(v, str(v)) for v in range(1, 6)))
    plan = plan_setup(requirements(SPEC), table_of({**BASE, "statuscode": status}), SPEC.key)
    assert {c.logical_name for c in plan.columns} == set(COLUMNS)
    assert plan.key == KEY
    assert not plan.manual
    assert plan.pending_key is None


def test_the_plan_leaves_to_the_customizer_what_it_cannot_create():
    table = table_of(dict(BASE))  # no statuscode, change tracking on
    plan = plan_setup(requirements(SPEC), Table("opportunity", False, table.columns, {}), SPEC.key)
    manual = [str(p) for p in plan.manual]
    assert any("change tracking is off" in p for p in manual)
    assert any(p.startswith("opportunity.statuscode: the column does not exist") for p in manual)


def test_a_key_still_being_built_is_waited_for_not_created_again():
    columns = {**BASE, **{n: Column(n, c.kind) for n, c in COLUMNS.items()}}
    pending = {KEY.logical_name: (KEY.columns, "InProgress")}
    plan = plan_setup(requirements(SPEC), table_of(columns, pending), SPEC.key)
    assert plan.key is None
    assert plan.pending_key == (KEY.logical_name, "InProgress")
    assert not plan.columns


def test_check_points_the_admin_at_crm_setup_for_a_missing_column_or_key():
    table = table_of({**BASE, KEY.columns[0]: Column(KEY.columns[0], "String")})
    key_need = requirements(SPEC)[0]
    assert plan_setup([key_need], table, SPEC.key).key == KEY
    (no_key,) = column_problems(key_need, table)
    assert describe_problem("dynamics", no_key).endswith(
        "(`referral-sync crm-setup dynamics --apply` creates it)"
    )
    gone = MetadataProblem(
        sobject="opportunity", field="rs_hot", message="the column does not exist"
    )
    assert describe_problem("dynamics", gone).startswith(
        "opportunity has no column rs_hot (Yes/No): run `referral-sync crm-setup dynamics --apply`"
    )
