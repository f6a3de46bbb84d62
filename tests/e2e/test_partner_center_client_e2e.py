"""The Partner Center client stack (real msal, real requests, TLS) against the sandbox."""

from __future__ import annotations

import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeClock
from swagger_check import swagger_hook

from connector.errors import AuthError, ConflictError, RecordRejected, TransientError
from connector.http.retry import RetryPolicy
from connector.http.session import build_session
from connector.model import Action, PartnerUpdate, Status, Substatus
from connector.partner_center.adapter import PartnerCenterSource
from connector.partner_center.auth import PartnerCenterAuth
from connector.partner_center.client import PartnerCenterClient
from connector.ports import ChangeCursor
from sandbox.app import Sandbox
from sandbox.partner_center import generate_referrals

pytestmark = pytest.mark.e2e
PC_AUDIENCE = "https://api.partner.microsoft.com"


@dataclass
class Stack:
    auth: PartnerCenterAuth
    client: PartnerCenterClient
    source: PartnerCenterSource
    time: FakeClock


def make_auth(sandbox: Sandbox, tmp_path: Path, mode: str = "device_code") -> PartnerCenterAuth:
    entra = sandbox.info["entra"]
    app = entra["partner_center"]
    secret: dict[str, Any] = {}
    if mode == "password":
        secret = {
            "client_secret": app["client_secret"],
            "username": app["username"],
            "password": app["password"],
        }
    return PartnerCenterAuth(
        authority=entra["authority"],
        client_id=app["client_id"],
        token_cache_path=tmp_path / "cache" / "pc-token-cache.json",
        session=build_session(ca_bundle=sandbox.info["ca_bundle"]),
        mode=mode,  # type: ignore[arg-type]
        prompt=lambda message: None,
        **secret,
    )


@pytest.fixture
def stack(sandbox: Sandbox, tmp_path: Path) -> Callable[..., Stack]:
    def build(*, max_attempts: int = 6, mode: str = "device_code") -> Stack:
        auth = make_auth(sandbox, tmp_path, mode)
        if mode == "device_code":
            auth.login()
        fake = FakeClock()
        session = build_session(ca_bundle=sandbox.info["ca_bundle"])
        session.hooks["response"].append(swagger_hook)  # every reply the client sees is checked
        client = PartnerCenterClient(
            sandbox.info["partner_center"]["base_url"],
            auth,
            session=session,
            retry=RetryPolicy(max_attempts=max_attempts, max_total_s=600, base_s=0.5, cap_s=8),
            sleep=fake.sleep,
            clock=fake,
        )
        return Stack(auth, client, PartnerCenterSource(client), fake)

    return build


@pytest.fixture
def store(sandbox: Sandbox) -> Any:
    sandbox.partner_center.store.clear()
    return sandbox.partner_center.store


def pc_requests(sandbox: Sandbox, **criteria: Any) -> int:
    return int(sandbox.log.count(service="partner_center", **criteria))


# -- sign-in ------------------------------------------------------------------------------------


def test_device_code_sign_in_then_silent_tokens_from_an_owner_only_cache(sandbox, tmp_path):
    auth = make_auth(sandbox, tmp_path)
    user = auth.login()
    assert user == sandbox.info["entra"]["partner_center"]["username"]
    cache = tmp_path / "cache" / "pc-token-cache.json"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    # a new process (a new auth object) signs in silently from the cache
    again = make_auth(sandbox, tmp_path)
    token = again.token()
    assert (
        sandbox.tokens.check(f"Bearer {token}", audience="https://api.partner.microsoft.com")
        is None
    )


def test_expired_access_token_is_refreshed_with_the_refresh_token(sandbox, tmp_path):
    auth = make_auth(sandbox, tmp_path)
    auth.login()
    first = auth.token()
    sandbox.tokens.expire_all()
    refreshed = auth.refresh()
    assert refreshed != first
    assert (
        sandbox.tokens.check(f"Bearer {refreshed}", audience="https://api.partner.microsoft.com")
        is None
    )


def test_password_grant_through_user_realm_discovery(sandbox, tmp_path):
    assert sandbox.info["entra"]["user_realm_discovery"] is True  # CI runs as root: port 443 binds
    auth = make_auth(sandbox, tmp_path, mode="password")
    token = auth.token()
    assert (
        sandbox.tokens.check(f"Bearer {token}", audience="https://api.partner.microsoft.com")
        is None
    )


def test_device_code_mode_without_a_signed_in_account_says_how_to_sign_in(sandbox, tmp_path):
    with pytest.raises(AuthError, match="referral-sync login partner-center"):
        make_auth(sandbox, tmp_path).token()


# -- the change feed ----------------------------------------------------------------------------


def test_1050_referrals_with_20_tied_timestamps_arrive_once_each_over_11_pages(
    sandbox, store, stack
):
    referrals = generate_referrals(1050, 7, sandbox.clock)
    store.seed_raw(referrals)
    ids = [r["id"] for r in referrals]
    tied = datetime(2026, 6, 1, 12, 0, 0, 1234, tzinfo=UTC)
    store.stamp_updated(ids[500:520], tied)
    pc = stack()
    sandbox.log.clear()

    delivered: list[str] = []
    pages = 0
    cursor = ChangeCursor()
    for page in pc.source.changes_since(cursor):
        pages += 1
        delivered.extend(r.id for r in page.referrals)
        assert page.rejected == ()
        cursor = page.cursor
    assert pages == 11
    assert pc_requests(sandbox, route="referrals_list") == 11
    assert len(delivered) == 1050
    assert sorted(delivered) == sorted(ids)

    # a second call from the saved cursor returns only what changed since
    sandbox.clock.advance(timedelta(minutes=1))
    store.edit(ids[3], name="Renamed by Microsoft")
    store.edit(ids[510], details={"notes": "edited"})
    again = [r.id for page in pc.source.changes_since(cursor) for r in page.referrals]
    assert sorted(again) == sorted([ids[3], ids[510]])


def test_a_poll_with_nothing_new_costs_one_request(sandbox, store, stack):
    store.seed_raw(generate_referrals(250, 3, sandbox.clock))
    pc = stack()
    cursor = ChangeCursor()
    for page in pc.source.changes_since(cursor):
        cursor = page.cursor
    sandbox.log.clear()
    assert [r for page in pc.source.changes_since(cursor) for r in page.referrals] == []
    assert pc_requests(sandbox) == 1


# -- updates --------------------------------------------------------------------------------


def new_referral(sandbox: Sandbox, store: Any) -> dict[str, Any]:
    raw = next(
        r
        for r in generate_referrals(40, 11, sandbox.clock)
        if r["status"] == "New" and r.get("name")
    )
    store.seed_raw([raw])
    return raw


def accept(referral_id: str) -> PartnerUpdate:
    return PartnerUpdate(
        referral_id=referral_id,
        action=Action.ACCEPT,
        deal_value=Decimal("125000.75"),
        currency="EUR",
        close_date=datetime(2027, 6, 30, tzinfo=UTC).date(),
        partner_notes="Qualified with the customer's CIO",
        external_reference_id="0061x00000AbCdE",
    )


def test_stale_etag_gets_412_and_is_recovered_by_reread_and_reapply(sandbox, store, stack):
    raw = new_referral(sandbox, store)
    pc = stack()
    current = pc.source.get(raw["id"])
    store.edit(raw["id"], name="Renamed by Microsoft")
    sandbox.log.clear()

    written = pc.source.update(accept(raw["id"]), current)

    assert (written.status, written.substatus) == (Status.ACTIVE, Substatus.ACCEPTED)
    assert written.name == "Renamed by Microsoft"
    assert written.deal.value == Decimal("125000.75")
    assert written.external_reference_id == "0061x00000AbCdE"
    assert pc_requests(sandbox, route="referrals_patch", status=412) == 1
    assert pc_requests(sandbox, route="referrals_patch") == 2
    stored = store.get_raw(raw["id"])
    assert stored["eTag"] == written.etag
    assert stored["acceptedDateTime"]


def test_closed_to_active_is_a_permanent_error_with_the_servers_message_not_retried(
    sandbox, store, stack
):
    raw = new_referral(sandbox, store)
    store.edit(raw["id"], status="Closed", substatus="Lost")
    pc = stack()
    sandbox.log.clear()
    ops = [
        {"op": "replace", "path": "/status", "value": "Active"},
        {"op": "replace", "path": "/substatus", "value": "Accepted"},
    ]
    with pytest.raises(RecordRejected) as caught:
        pc.client.patch(raw["id"], ops, if_match=None)
    assert caught.value.status == 400
    assert "Closed" in str(caught.value)
    assert pc_requests(sandbox, route="referrals_patch") == 1
    assert pc.time.sleeps == []


def test_update_computed_on_a_stale_copy_of_a_referral_closed_meanwhile_is_a_conflict(
    sandbox, store, stack
):
    raw = new_referral(sandbox, store)
    pc = stack()
    current = pc.source.get(raw["id"])
    store.edit(raw["id"], status="Closed", substatus="Expired")
    sandbox.log.clear()
    with pytest.raises(ConflictError):
        pc.source.update(accept(raw["id"]), current)
    assert pc_requests(sandbox, route="referrals_patch") == 1  # the 412; no second write


# -- retries --------------------------------------------------------------------------------


def test_429_with_retry_after_2_is_not_retried_before_2_seconds(sandbox, store, stack):
    raw = new_referral(sandbox, store)
    pc = stack()
    sandbox.faults.script("partner_center", "referrals_get", "429:2")
    sandbox.log.clear()
    assert pc.client.get(raw["id"])["id"] == raw["id"]
    assert pc_requests(sandbox, route="referrals_get") == 2
    assert len(pc.time.sleeps) == 1
    assert pc.time.sleeps[0] >= 2.0


def test_five_transient_failures_then_success_succeeds(sandbox, store, stack):
    raw = new_referral(sandbox, store)
    pc = stack(max_attempts=6)
    sandbox.faults.script("partner_center", "referrals_get", 500, 503, "reset", 429, 503)
    sandbox.log.clear()
    assert pc.client.get(raw["id"])["id"] == raw["id"]
    assert pc_requests(sandbox, route="referrals_get") == 6
    assert len(pc.time.sleeps) == 5


def test_transient_failures_past_the_cap_raise_transient_error(sandbox, store, stack):
    raw = new_referral(sandbox, store)
    pc = stack(max_attempts=3)
    sandbox.faults.script("partner_center", "referrals_get", 503, 503, 503, 503)
    sandbox.log.clear()
    with pytest.raises(TransientError):
        pc.client.get(raw["id"])
    assert pc_requests(sandbox, route="referrals_get") == 3


def test_expired_token_gets_one_refresh_and_the_call_succeeds(sandbox, store, stack):
    raw = new_referral(sandbox, store)
    pc = stack()
    pc.client.get(raw["id"])
    sandbox.tokens.expire_all()
    sandbox.log.clear()
    assert pc.client.get(raw["id"])["id"] == raw["id"]
    assert pc_requests(sandbox, route="referrals_get", status=401) == 1
    assert pc_requests(sandbox, route="referrals_get", status=200) == 1


def test_a_referral_changed_between_two_pages_shifts_nothing_out_of_the_feed(sandbox, store, stack):
    referrals = generate_referrals(250, 5, sandbox.clock)
    store.seed_raw(referrals)
    pc = stack()
    delivered: list[str] = []
    for number, page in enumerate(pc.source.changes_since(ChangeCursor())):
        delivered.extend(r.id for r in page.referrals)
        if number == 0:  # Microsoft changes a referral we already read: the list shifts
            sandbox.clock.advance(timedelta(seconds=1))
            store.edit(page.referrals[0].id, name="Changed while we were paging")
    assert set(delivered) == {r["id"] for r in referrals}
