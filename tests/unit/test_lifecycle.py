"""The lifecycle rule of spec §3.3, as a table: every valid (status, substatus) → every target."""

from __future__ import annotations

import itertools

import pytest

from connector.errors import MappingError
from connector.model import ALLOWED_SUBSTATUSES, Actor, Lifecycle, Status, Substatus
from connector.model.lifecycle import transition_problem

UNSET = Lifecycle(Status.NONE, Substatus.NONE)
PENDING = Lifecycle(Status.NEW, Substatus.PENDING)
RECEIVED = Lifecycle(Status.NEW, Substatus.RECEIVED)
ACCEPTED = Lifecycle(Status.ACTIVE, Substatus.ACCEPTED)
WON = Lifecycle(Status.CLOSED, Substatus.WON)
LOST = Lifecycle(Status.CLOSED, Substatus.LOST)
DECLINED = Lifecycle(Status.CLOSED, Substatus.DECLINED)
EXPIRED = Lifecycle(Status.CLOSED, Substatus.EXPIRED)
ALL = (UNSET, PENDING, RECEIVED, ACCEPTED, WON, LOST, DECLINED, EXPIRED)

# What a partner may do from each lifecycle. Anything not listed is refused.
PARTNER_MAY = {
    UNSET: {UNSET, PENDING, RECEIVED, ACCEPTED},
    PENDING: {PENDING, RECEIVED, ACCEPTED, DECLINED},
    RECEIVED: {PENDING, RECEIVED, ACCEPTED, DECLINED},
    ACCEPTED: {ACCEPTED, WON, LOST},
    WON: {WON},
    LOST: {LOST},
    DECLINED: {DECLINED},
    EXPIRED: {EXPIRED},
}
# Partner Center itself may also expire a new referral.
SYSTEM_MAY = {
    current: allowed | ({EXPIRED} if current.status is Status.NEW else set())
    for current, allowed in PARTNER_MAY.items()
}


def test_the_table_lists_every_valid_pair():
    assert set(Lifecycle.all()) == set(ALL)
    assert set(PARTNER_MAY) == set(ALL)


@pytest.mark.parametrize(
    ("current", "target"),
    list(itertools.product(ALL, ALL)),
    ids=lambda lc: str(lc).replace("/", "-"),
)
def test_partner_transition_follows_the_table(current: Lifecycle, target: Lifecycle):
    problem = transition_problem(current, target)
    if target in PARTNER_MAY[current]:
        assert problem is None
    else:
        assert problem, f"{current} → {target} must be refused with a reason"


@pytest.mark.parametrize(
    ("current", "target"),
    list(itertools.product(ALL, ALL)),
    ids=lambda lc: str(lc).replace("/", "-"),
)
def test_system_transition_follows_the_table(current: Lifecycle, target: Lifecycle):
    problem = transition_problem(current, target, actor=Actor.SYSTEM)
    assert (problem is None) == (target in SYSTEM_MAY[current])


@pytest.mark.parametrize(
    ("current", "target", "words"),
    [
        (PENDING, EXPIRED, "only Partner Center expires"),
        (PENDING, WON, "Active"),
        (RECEIVED, LOST, "Active"),
        (ACCEPTED, DECLINED, "New"),
        (ACCEPTED, PENDING, "status Active cannot become New"),
        (WON, LOST, "terminal"),
        (DECLINED, ACCEPTED, "terminal"),
        (PENDING, UNSET, "back to"),
    ],
)
def test_refusal_says_why(current: Lifecycle, target: Lifecycle, words: str):
    problem = transition_problem(current, target)
    assert problem is not None
    assert words in problem


@pytest.mark.parametrize(
    ("status", "substatus"),
    [(s, sub) for s in Status for sub in Substatus if sub not in ALLOWED_SUBSTATUSES[s]],
)
def test_a_substatus_of_another_status_cannot_be_built(status: Status, substatus: Substatus):
    with pytest.raises(ValueError, match="does not belong"):
        Lifecycle(status, substatus)


@pytest.mark.parametrize("lifecycle", ALL, ids=str)
def test_parse_reads_every_valid_pair_by_its_api_names(lifecycle: Lifecycle):
    assert Lifecycle.parse(lifecycle.status.value, lifecycle.substatus.value) == lifecycle


@pytest.mark.parametrize(
    ("status", "substatus", "field"),
    [
        ("Open", "Pending", "status"),
        ("new", "Pending", "status"),
        (None, "Pending", "status"),
        ("", "Pending", "status"),
        (3, "Pending", "status"),
        ("Active", "Engaged", "substatus"),
        ("New", None, "substatus"),
        ("New", "Won", "substatus"),
        ("Closed", "Accepted", "substatus"),
        ("None", "Pending", "substatus"),
    ],
)
def test_parse_refuses_unknown_or_mismatched_values_naming_the_field(
    status: object, substatus: object, field: str
):
    with pytest.raises(MappingError) as caught:
        Lifecycle.parse(status, substatus)
    assert caught.value.field == field


@pytest.mark.parametrize("lifecycle", ALL, ids=str)
def test_only_closed_is_terminal(lifecycle: Lifecycle):
    assert lifecycle.is_terminal == (lifecycle.status is Status.CLOSED)


def test_lifecycle_prints_as_status_slash_substatus():
    assert str(ACCEPTED) == "Active/Accepted"
    assert Lifecycle.UNSET == UNSET
