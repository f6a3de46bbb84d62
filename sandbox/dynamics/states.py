"""statecode / statuscode rules for writes (crm-apis §C1, §C5).

* A statuscode belongs to one statecode (its option's ``State``); giving only a statecode
  takes that state's default statuscode; giving only a statuscode must stay in the row's
  current state (on create: state 0). A mismatch answers 400 ``0x80040203``
  "<status> is not a valid status code for state code <Table>State.<State>".
* ``statecode`` is not valid for create (the metadata's IsValidForCreate is false).
* **Opportunity**: Won (1) and Lost (2) are reached only through WinOpportunity /
  LoseOpportunity (``closing=True``); an Update asking for them is refused with
  ``0x80040203``. A closed opportunity is read-only (400 ``0x8004022e`` "The object cannot be
  updated because it is read-only.") until it is reopened: the documented SetState-by-PATCH of
  ``{"statecode": 0, "statuscode": 1|2}`` (spec §C5, entity doc "SetState" row). The simulator
  accepts a reopen only when the PATCH holds nothing but the two state columns; the real
  platform's handling of other columns in the same request is undocumented.
"""

from __future__ import annotations

from collections.abc import Mapping

from sandbox.dynamics.errors import INVALID_ARGUMENT, READ_ONLY, DataverseError
from sandbox.dynamics.schema import EntityDef

__all__ = ["OPEN", "check_state_change", "is_closed"]

OPEN = 0
STATE_COLUMNS = frozenset({"statecode", "statuscode"})


def is_closed(table: EntityDef, row: Mapping[str, object] | None) -> bool:
    return table.logical_name == "opportunity" and row is not None and row.get("statecode") != OPEN


def check_state_change(
    table: EntityDef,
    current: Mapping[str, object] | None,
    record: dict[str, object],
    given: set[str],
    *,
    closing: bool,
) -> None:
    """Check (and complete) the state columns of ``record``, the row after the write."""
    state_attr, status_attr = table.attribute("statecode"), table.attribute("statuscode")
    was_closed = is_closed(table, current)
    if not given & STATE_COLUMNS or state_attr is None or status_attr is None:
        if was_closed and given and not closing:
            raise read_only()
        return
    current_state = int(str(current.get("statecode", OPEN))) if current else OPEN
    state_value = record.get("statecode")
    state = int(str(state_value)) if state_value is not None else current_state
    if "statuscode" not in given or record.get("statuscode") is None:
        option = state_attr.option(state)
        record["statuscode"] = option.default_status if option else None
    status = int(str(record["statuscode"]))
    status_option = status_attr.option(status)
    target_state = state if "statecode" in given else current_state
    if status_option is None or status_option.state != target_state:
        state_option = state_attr.option(target_state)
        invariant = state_option.invariant if state_option else str(target_state)
        raise DataverseError(
            400,
            INVALID_ARGUMENT,
            f"{status} is not a valid status code for state code "
            f"{table.display_name.replace(' ', '')}State.{invariant}",
        )
    record["statecode"] = target_state
    if table.logical_name != "opportunity" or closing:
        return
    if target_state != OPEN:
        raise DataverseError(
            400,
            INVALID_ARGUMENT,
            "An opportunity cannot be closed by an update: use the WinOpportunity or "
            "LoseOpportunity action.",
        )
    if was_closed and given - STATE_COLUMNS:
        raise read_only()


def read_only() -> DataverseError:
    return DataverseError(400, READ_ONLY, "The object cannot be updated because it is read-only.")
