"""Canonical values for tests: one realistic referral, changed per test with keywords."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from connector.model import (
    Address,
    Contact,
    Customer,
    Deal,
    Lifecycle,
    Referral,
    Status,
    Substatus,
)

REFERRAL_ID = "9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f"
NEW = Lifecycle(Status.NEW, Substatus.PENDING)
RECEIVED = Lifecycle(Status.NEW, Substatus.RECEIVED)
ACTIVE = Lifecycle(Status.ACTIVE, Substatus.ACCEPTED)
WON = Lifecycle(Status.CLOSED, Substatus.WON)
LOST = Lifecycle(Status.CLOSED, Substatus.LOST)
DECLINED = Lifecycle(Status.CLOSED, Substatus.DECLINED)
EXPIRED = Lifecycle(Status.CLOSED, Substatus.EXPIRED)

CONTOSO = Customer(
    name="Contoso Ltd",
    address=Address(
        line1="1 Microsoft Way", city="Redmond", state="WA", postal_code="98052", country="US"
    ),
    contacts=(Contact(first_name="Ada", last_name="Ng", email="ada.ng@contoso.example"),),
)


def referral(**changes: Any) -> Referral:
    base = Referral(
        id=REFERRAL_ID,
        engagement_id="e0e0e0e0-0000-4000-8000-000000000001",
        customer=CONTOSO,
        lifecycle=NEW,
        created_at=datetime(2026, 5, 2, 9, 30, tzinfo=UTC),
        updated_at=datetime(2026, 5, 3, 10, 0, tzinfo=UTC),
        expires_at=datetime(2026, 5, 16, 9, 30, tzinfo=UTC),
        name="Contoso ERP migration",
        deal=Deal(value=Decimal(25000), currency="USD", close_date=date(2026, 9, 30)),
        microsoft_notes="Customer wants a demo in June.",
        etag='"6a00"',
    )
    return dataclasses.replace(base, **changes)
