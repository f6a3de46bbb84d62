"""WinOpportunity and LoseOpportunity (crm-apis §C5): the only way to close an opportunity.

``POST /WinOpportunity`` ``{"Status": 3, "OpportunityClose": {"subject": …,
"opportunityid@odata.bind": "/opportunities(<id>)", "actualrevenue": …, "actualend": …}}``
answers 204. ``Status`` is the target statuscode and must belong to Won (state 1) for Win or
Lost (state 2) for Lose. The call creates a completed ``opportunityclose`` row and sets the
opportunity's statecode/statuscode, ``actualvalue`` (from ``actualrevenue`` when given) and
``actualclosedate`` (``actualend``, else today in sandbox time), all in one transaction.
An opportunity that is not open answers 400 ``0x80040203``. The salesperson simulator closes
rows through :func:`close_opportunity` too.
"""

from __future__ import annotations

from collections.abc import Mapping

from sandbox.dynamics.errors import INVALID_ARGUMENT, DataverseError
from sandbox.dynamics.payload import Resolver, parse_body
from sandbox.dynamics.store import API_USER_ID, Lookup, RowStore

__all__ = ["LOSE", "WIN", "close_opportunity"]

WIN = "WinOpportunity"
LOSE = "LoseOpportunity"
_TARGET_STATE = {WIN: 1, LOSE: 2}
_PARAMETERS = frozenset({"Status", "OpportunityClose"})


def close_opportunity(
    store: RowStore,
    action: str,
    body: Mapping[str, object],
    resolve: Resolver,
    service_root: str,
    *,
    user_id: str = API_USER_ID,
) -> str:
    """Run ``action`` with ``body``; the new opportunityclose row's id."""
    for name in body:
        if name not in _PARAMETERS and not name.startswith("@"):
            raise DataverseError.odata(
                f"The parameter '{name}' in the request payload is not a valid parameter for the "
                f"operation '{action}'."
            )
    status, close = body.get("Status"), body.get("OpportunityClose")
    for name, value in (("Status", status), ("OpportunityClose", close)):
        if value is None:
            raise DataverseError.odata(
                f"The parameter '{name}' of the operation '{action}' is required but is missing."
            )
    if not isinstance(status, int) or isinstance(status, bool):
        raise DataverseError.odata(
            f"Cannot convert the literal '{status}' to the expected type 'Edm.Int32'."
        )
    if not isinstance(close, Mapping):
        raise DataverseError.odata(
            "The parameter 'OpportunityClose' must be an object of type "
            "'Microsoft.Dynamics.CRM.opportunityclose'."
        )
    close_table = store.schema.entity("opportunityclose")
    opp_table = store.schema.entity("opportunity")
    assert close_table is not None  # noqa: S101 (a default table)
    assert opp_table is not None  # noqa: S101 (a default table)
    changes = parse_body(close_table, close, resolve, service_root)
    target = changes.get("opportunityid")
    if not isinstance(target, Lookup):
        raise DataverseError(
            400, INVALID_ARGUMENT, "The opportunityclose must reference the opportunity to close."
        )
    state = _TARGET_STATE[action]
    status_attr = opp_table.attribute("statuscode")
    option = status_attr.option(status) if status_attr is not None else None
    if option is None or option.state != state:
        invariant = "Won" if state == 1 else "Lost"
        raise DataverseError(
            400,
            INVALID_ARGUMENT,
            f"{status} is not a valid status code for state code OpportunityState.{invariant}",
        )
    with store.atomic():
        opportunity = store.get("opportunity", target.row_id)
        if opportunity is None:
            raise DataverseError.not_found("opportunity", target.row_id)
        if opportunity.get("statecode") != 0:
            raise DataverseError(
                400,
                INVALID_ARGUMENT,
                "Cannot close the opportunity because it is not in the correct state: it is "
                "already closed.",
            )
        close_id, _ = store.write(
            "opportunityclose",
            None,
            {**changes, "statecode": 1, "statuscode": 2},
            user_id=user_id,
            closing=True,
        )
        closed = store.get("opportunityclose", close_id)
        assert closed is not None  # noqa: S101 (just written)
        update: dict[str, object] = {
            "statecode": state,
            "statuscode": status,
            "actualclosedate": closed.get("actualend") or store.clock.now().date().isoformat(),
        }
        if closed.get("actualrevenue") is not None:
            update["actualvalue"] = closed["actualrevenue"]
        store.write("opportunity", target.row_id, update, user_id=user_id, closing=True)
    return close_id
