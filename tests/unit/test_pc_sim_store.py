"""The Partner Center simulator's store: raw seeding, writes and their rules, expiry."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from swagger_check import validate_referral

import sandbox
from sandbox.partner_center import ApiError, ReferralStore, generate_referrals, load_seed_file
from sandbox.partner_center.wiretime import format_wire

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class SteppingClock:
    """Sandbox time that moves only when told to (one microsecond per reading)."""

    def __init__(self, start=START):
        self.moment = start

    def now(self):
        self.moment += timedelta(microseconds=1)
        return self.moment

    def advance(self, delta):
        self.moment += delta


def new_referral(referral_id="r1", **fields):
    raw = {
        "id": referral_id,
        "engagementId": "0ee9d55d-6a0e-4a28-a3a3-1c6e0b0e3c11",
        "eTag": '"seed-etag"',
        "status": "New",
        "substatus": "Pending",
        "createdDateTime": format_wire(START - timedelta(days=1)),
        "updatedDateTime": format_wire(START - timedelta(days=1)),
        "expirationDateTime": format_wire(START + timedelta(days=13)),
        "acceptedDateTime": None,
        "closedDateTime": None,
        "consent": {"consentToShareReferralWithMicrosoftSellers": False},
        "details": {"dealValue": 0, "currency": "USD", "notes": None},
        "team": [],
    }
    return raw | fields


@pytest.fixture
def clock():
    return SteppingClock()


@pytest.fixture
def store(clock):
    store = ReferralStore(clock)
    store.put_raw(new_referral())
    return store


def patch(store, *ops, if_match=None, referral_id="r1"):
    document = [{"op": op, "path": path, "value": value} for op, path, value in ops]
    return store.patch(referral_id, document, if_match)


def rejected(call, status=400):
    with pytest.raises(ApiError) as caught:
        call()
    assert caught.value.status == status
    return caught.value


# -- seeding and test helpers --------------------------------------------------------------


def test_seeded_referrals_are_stored_exactly_as_given():
    odd = {"id": "x", "status": "Weird", "details": "not an object", "salesStage": "100"}
    store = ReferralStore(SteppingClock())
    assert store.seed_raw([odd]) == 1
    assert store.get_raw("x") == odd
    assert store.get_raw("x") is not odd


def test_a_seeded_referral_needs_an_id():
    with pytest.raises(ValueError, match="needs a string 'id'"):
        ReferralStore(SteppingClock()).put_raw({"status": "New"})


def test_edit_merges_and_stamps_a_new_etag_and_time(store, clock):
    before = store.get_raw("r1")
    after = store.edit("r1", details={"notes": "from Microsoft"}, name="Renamed")
    assert after["details"] == {"dealValue": 0, "currency": "USD", "notes": "from Microsoft"}
    assert after["name"] == "Renamed"
    assert after["eTag"] != before["eTag"]
    assert after["eTag"][0] == after["eTag"][-1] == '"'

    assert after["updatedDateTime"] == format_wire(clock.moment)


def test_edit_can_pin_the_updated_time(store):
    after = store.edit("r1", updatedDateTime="2026-01-01T00:00:00.0000000Z")
    assert after["updatedDateTime"] == "2026-01-01T00:00:00.0000000Z"
    assert store.get_raw("r1")["updatedDateTime"] == "2026-01-01T00:00:00.0000000Z"


def test_stamp_updated_gives_many_referrals_the_same_time(store):
    store.put_raw(new_referral("r2"))
    store.stamp_updated(["r1", "r2"], datetime(2026, 2, 1, tzinfo=UTC))
    stamps = {r["updatedDateTime"] for r in store.all_raw()}
    assert stamps == {"2026-02-01T00:00:00.0000000Z"}
    assert len({r["eTag"] for r in store.all_raw()}) == 2


# -- PATCH ---------------------------------------------------------------------------------


def test_patch_writes_new_etag_and_updated_time_with_seven_digits(store, clock):
    result = patch(store, ("replace", "/details/notes", "Lorem ipsum dolor sit amet."))
    assert result["details"]["notes"] == "Lorem ipsum dolor sit amet."
    assert result["eTag"] != '"seed-etag"'
    assert result["updatedDateTime"] == format_wire(clock.moment)
    assert len(result["updatedDateTime"].split(".")[1]) == len("0000000Z")


def test_deal_value_as_a_string_is_stored_as_a_number(store):
    assert patch(store, ("replace", "/details/dealValue", "10000"))["details"]["dealValue"] == 10000
    value = patch(store, ("replace", "/details/dealValue", "2500.50"))["details"]["dealValue"]
    assert value == 2500.5


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("/details/dealValue", "ten", "must be a number"),
        ("/details/dealValue", -5, "non-negative"),
        ("/details/dealValue", True, "must be a number"),
        ("/details/currency", "usd", "ISO 4217"),
        ("/details/currency", "XYZ", "ISO 4217"),
        ("/details/closingDateTime", "next week", "ISO 8601"),
        ("/salesStage", "100", "must be one of Qualify"),
        ("/details/notes", 5, "must be a string"),
        ("/team/-", {"email": "not-an-address"}, "e-mail"),
        ("/details/requirements/solutions/-", {"name": "x"}, "needs 'id'"),
    ],
)
def test_patch_values_are_type_checked(store, path, value, message):
    error = rejected(lambda: patch(store, ("add", path, value)))
    assert message in error.message
    assert error.code == "invalidRequest"


def test_closing_date_is_normalized_to_the_wire_format(store):
    result = patch(store, ("replace", "/details/closingDateTime", "2026-06-30"))
    assert result["details"]["closingDateTime"] == "2026-06-30T00:00:00.0000000Z"


@pytest.mark.parametrize(
    "operation",
    [
        {"op": "remove", "path": "/details/notes"},
        {"op": "move", "from": "/a", "path": "/details/notes"},
        {"op": "replace", "path": "/name", "value": "x"},
        {"op": "replace", "path": "/customerProfile/name", "value": "x"},
        {"op": "replace", "path": "/details/notes"},
        {"op": "replace", "path": "/team/-", "value": {}},
        "not an object",
    ],
)
def test_unsupported_operations_and_paths_are_refused(store, operation):
    rejected(lambda: store.patch("r1", [operation], None))


@pytest.mark.parametrize("document", [[], {"op": "replace"}, "text", None])
def test_the_patch_body_must_be_a_non_empty_array(store, document):
    rejected(lambda: store.patch("r1", document, None))


def test_add_with_dash_appends_to_the_team(store):
    member = {"email": "jane.doe@contoso.com", "firstName": "Jane", "lastName": "Doe"}
    patch(store, ("add", "/team/-", member))
    result = patch(store, ("add", "/team/-", member | {"firstName": "Janet"}))
    assert [m["firstName"] for m in result["team"]] == ["Jane", "Janet"]


def test_add_creates_a_missing_parent(store):
    result = patch(store, ("add", "/customerProfile/team/-", {"email": "a@b.example"}))
    assert result["customerProfile"] == {"team": [{"email": "a@b.example"}]}


def test_a_failing_operation_leaves_the_referral_untouched(store):
    before = store.get_raw("r1")
    rejected(
        lambda: patch(
            store,
            ("replace", "/details/notes", "changed"),
            ("replace", "/details/currency", "nope"),
        )
    )
    assert store.get_raw("r1") == before


def test_stale_if_match_is_412_and_current_if_match_passes(store):
    error = rejected(
        lambda: patch(store, ("replace", "/details/notes", "x"), if_match='"old"'), 412
    )
    assert error.code == "preconditionFailed"
    etag = store.get_raw("r1")["eTag"]
    assert patch(store, ("replace", "/details/notes", "x"), if_match=etag)["details"]["notes"]


def test_without_if_match_there_is_no_concurrency_check(store):
    store.edit("r1", name="changed by Microsoft")
    assert patch(store, ("replace", "/details/notes", "x"))["details"]["notes"] == "x"


def test_unknown_id_is_404(store):
    error = rejected(
        lambda: patch(store, ("replace", "/details/notes", "x"), referral_id="no"), 404
    )
    assert error.code == "itemNotFound"


# -- lifecycle -----------------------------------------------------------------------------


def test_accepting_stamps_accepted_time(store, clock):
    result = patch(store, ("replace", "/status", "Active"), ("replace", "/substatus", "Accepted"))
    assert (result["status"], result["substatus"]) == ("Active", "Accepted")
    assert result["acceptedDateTime"] == format_wire(clock.moment)
    assert result["closedDateTime"] is None


def test_declining_stamps_closed_time(store, clock):
    result = patch(store, ("replace", "/status", "Closed"), ("replace", "/substatus", "Declined"))
    assert result["closedDateTime"] == format_wire(clock.moment)
    assert result["acceptedDateTime"] is None


def test_winning_needs_an_accepted_referral(store):
    error = rejected(
        lambda: patch(store, ("replace", "/status", "Closed"), ("replace", "/substatus", "Won"))
    )
    assert error.message.startswith("Invalid status transition: Closed/Won needs")
    assert error.target == "status"


def test_status_without_a_matching_substatus_is_refused(store):
    error = rejected(lambda: patch(store, ("replace", "/status", "Active")))
    assert "does not belong to status Active" in error.message


def test_unknown_status_is_refused(store):
    error = rejected(lambda: patch(store, ("replace", "/status", "Open")))
    assert "unknown status" in error.message


def test_a_partner_cannot_expire_a_referral(store):
    error = rejected(
        lambda: patch(store, ("replace", "/status", "Closed"), ("replace", "/substatus", "Expired"))
    )
    assert "only Partner Center expires a referral" in error.message


def test_active_cannot_go_back_to_new(store):
    patch(store, ("replace", "/status", "Active"), ("replace", "/substatus", "Accepted"))
    rejected(
        lambda: patch(store, ("replace", "/status", "New"), ("replace", "/substatus", "Pending"))
    )


def test_closed_is_terminal_for_every_write(store):
    patch(store, ("replace", "/status", "Closed"), ("replace", "/substatus", "Declined"))
    error = rejected(lambda: patch(store, ("replace", "/details/notes", "after the fact")))
    assert "no changes are permitted after a terminal state" in error.message


def test_sharing_with_microsoft_cannot_be_undone(store):
    path = "/consent/consentToShareReferralWithMicrosoftSellers"
    patch(store, ("replace", path, True))
    error = rejected(lambda: patch(store, ("replace", path, False)))
    assert "cannot be made private again" in error.message


# -- deal registrations ----------------------------------------------------------------------


def test_a_deal_registration_is_added_then_updated(store):
    registration = {
        "type": "AzureIPCoSell",
        "solutionDetails": [{"id": "SOL-1", "value": 1000, "currency": "USD"}],
        "contract": {"value": 5000, "currency": "USD", "term": "Finite"},
    }
    added = patch(store, ("add", "/registrations/-", registration))
    assert added["registrationStatus"] == "ReviewPending"
    assert added["registrations"][0]["status"] == "ReviewPending"
    updated = patch(
        store,
        ("replace", "/registrations/0/contract/value", "7500"),
        ("replace", "/registrations/0/solutionDetails/0/pricingModel", "PayAsYouGo"),
    )
    assert updated["registrations"][0]["contract"]["value"] == 7500
    assert updated["registrations"][0]["solutionDetails"][0]["pricingModel"] == "PayAsYouGo"


def test_updating_a_registration_that_does_not_exist_is_refused(store):
    error = rejected(lambda: patch(store, ("replace", "/registrations/0/contract/value", 1)))
    assert "there is no /registrations/0" in error.message


def test_a_registration_needs_its_type(store):
    rejected(lambda: patch(store, ("add", "/registrations/-", {"contract": {}})))
    rejected(lambda: patch(store, ("replace", "/registrations/-", {"type": "AzureIPCoSell"})))


# -- PUT -----------------------------------------------------------------------------------


def test_put_replaces_writable_fields_and_keeps_read_only_ones(store):
    body = store.get_raw("r1") | {"name": "New name", "createdDateTime": "1999-01-01T00:00:00Z"}
    result = store.replace("r1", body, body["eTag"])
    assert result["name"] == "New name"
    assert result["createdDateTime"] == new_referral()["createdDateTime"]


def test_put_refuses_a_changed_id_or_engagement_and_links(store):
    current = store.get_raw("r1")
    etag = current["eTag"]
    rejected(lambda: store.replace("r1", current | {"engagementId": "other"}, etag))
    rejected(lambda: store.replace("r1", {k: v for k, v in current.items() if k != "id"}, etag))
    rejected(lambda: store.replace("r1", current | {"links": {}}, etag))


def test_put_with_a_stale_etag_is_412(store):
    rejected(lambda: store.replace("r1", store.get_raw("r1"), '"stale"'), 412)


def test_put_checks_the_lifecycle_too(store):
    body = store.get_raw("r1") | {"status": "Closed", "substatus": "Won"}
    rejected(lambda: store.replace("r1", body, body["eTag"]))


# -- POST ----------------------------------------------------------------------------------

CREATE = {
    "type": "Shared",
    "name": "Contoso - Azure",
    "status": "New",
    "substatus": "Pending",
    "customerProfile": {"name": "Contoso", "address": {"country": "US"}},
    "consent": {"consentToShareReferralWithMicrosoftSellers": True},
    "details": {"dealValue": "12000", "currency": "USD"},
    "target": [{"type": "BusinessProfileLocation", "id": "msft"}],
}


def test_create_returns_an_accepted_outgoing_referral(store):
    created = store.create(CREATE)
    assert (created["status"], created["substatus"]) == ("Active", "Accepted")
    assert created["acceptedDateTime"] == created["createdDateTime"] == created["updatedDateTime"]
    assert created["direction"] == "Outgoing"
    assert created["details"]["dealValue"] == 12000
    assert created["eTag"].startswith('"')
    assert created["links"]["self"]["uri"].endswith(created["id"])
    assert store.get_raw(created["id"]) == created


def test_create_keeps_a_given_engagement_id(store):
    engagement = "65edc0b5-3485-41b7-a17e-dfa9ef4706e2"
    assert store.create(CREATE | {"engagementId": engagement})["engagementId"] == engagement


@pytest.mark.parametrize("missing", ["type", "customerProfile", "consent", "details"])
def test_create_needs_the_required_properties(store, missing):
    body = {k: v for k, v in CREATE.items() if k != missing}
    assert f"'{missing}' is required" in rejected(lambda: store.create(body)).message


@pytest.mark.parametrize(
    "change",
    [
        {"type": "Private"},
        {"status": "Closed", "substatus": "Won"},
        {"status": "New", "substatus": "Accepted"},
        {"customerProfile": {"address": {"country": "USA"}}},
        {"details": {"currency": "dollars"}},
        {"engagementId": "not-a-guid"},
    ],
)
def test_create_refuses_bad_values(store, change):
    rejected(lambda: store.create(CREATE | change))


# -- expiry --------------------------------------------------------------------------------


def test_a_new_referral_expires_once_its_expiration_passes(store, clock):
    clock.advance(timedelta(days=12))
    assert store.get_raw("r1")["status"] == "New"
    clock.advance(timedelta(days=2))
    expired = store.get_raw("r1")
    assert (expired["status"], expired["substatus"]) == ("Closed", "Expired")
    assert expired["closedDateTime"] == expired["updatedDateTime"]
    assert expired["eTag"] != '"seed-etag"'


def test_without_expiration_the_default_is_14_days_after_creation(clock):
    store = ReferralStore(clock)
    store.put_raw(new_referral(expirationDateTime=None))
    clock.advance(timedelta(days=12, hours=23))
    assert store.get_raw("r1")["status"] == "New"
    clock.advance(timedelta(hours=2))
    assert store.get_raw("r1")["substatus"] == "Expired"


def test_a_referral_added_after_a_sweep_still_expires_on_time(store, clock):
    store.expire_due()
    store.put_raw(
        new_referral("soon", expirationDateTime=format_wire(clock.moment + timedelta(hours=1)))
    )
    clock.advance(timedelta(minutes=59))
    assert store.get_raw("soon")["status"] == "New"
    clock.advance(timedelta(minutes=2))
    assert store.get_raw("soon")["substatus"] == "Expired"
    assert store.get_raw("r1")["status"] == "New"


def test_accepted_referrals_do_not_expire(store, clock):
    patch(store, ("replace", "/status", "Active"), ("replace", "/substatus", "Accepted"))
    clock.advance(timedelta(days=30))
    assert store.get_raw("r1")["status"] == "Active"


def test_an_expired_referral_refuses_a_late_accept(store, clock):
    clock.advance(timedelta(days=15))
    rejected(
        lambda: patch(
            store, ("replace", "/status", "Active"), ("replace", "/substatus", "Accepted")
        )
    )


# -- concurrency ---------------------------------------------------------------------------


def test_concurrent_writers_with_the_same_if_match_have_one_winner(store):
    etag = store.get_raw("r1")["eTag"]
    outcomes = []

    def writer(n):
        try:
            patch(store, ("replace", "/details/notes", f"writer {n}"), if_match=etag)
            outcomes.append("ok")
        except ApiError as exc:
            outcomes.append(exc.status)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Counter(outcomes) == {"ok": 1, 412: 15}


# -- generator -----------------------------------------------------------------------------


def test_generator_is_deterministic_for_a_seed():
    first = generate_referrals(20, 42, SteppingClock())
    second = generate_referrals(20, 42, SteppingClock())
    assert [r["id"] for r in first] == [r["id"] for r in second]
    assert first[3]["customerProfile"] == second[3]["customerProfile"]
    assert [r["id"] for r in generate_referrals(20, 43, SteppingClock())] != [
        r["id"] for r in first
    ]


def test_generator_mix_is_realistic():
    referrals = generate_referrals(600, 7, SteppingClock())
    lifecycles = Counter(r["status"] for r in referrals)
    assert lifecycles["New"] > lifecycles["Active"] > 0
    assert lifecycles["Closed"] > 0
    assert {r["substatus"] for r in referrals} == {
        "Pending", "Received", "Accepted", "Won", "Lost", "Declined", "Expired"
    }  # fmt: skip
    hot = [r for r in referrals if r["details"]["customerRequestedContact"]]
    assert 0.05 < len(hot) / len(referrals) < 0.2
    assert all(r["status"] == "New" for r in hot)


def test_generator_keeps_country_and_currency_consistent():
    expected = {"US": "USD", "BR": "BRL", "ES": "EUR", "IT": "EUR"}
    referrals = generate_referrals(200, 3, SteppingClock())
    pairs = {
        (r["customerProfile"]["address"]["country"], r["details"]["currency"]) for r in referrals
    }
    assert pairs == set(expected.items())


def test_generated_new_referrals_are_not_yet_expired():
    clock = SteppingClock()
    store = ReferralStore(clock)
    referrals = generate_referrals(300, 5, clock)
    store.seed_raw(referrals)
    before = Counter(r["substatus"] for r in referrals)
    after = Counter(r["substatus"] for r in store.all_raw())
    assert before == after


def test_generator_refuses_an_unknown_locale():
    with pytest.raises(ValueError, match="unknown locales"):
        generate_referrals(1, 1, SteppingClock(), locales=("fr_FR",))


def test_generated_referrals_match_the_swagger():
    for raw in generate_referrals(300, 11, SteppingClock()):
        validate_referral(raw)


def test_the_example_seed_file_holds_valid_wire_referrals():
    referrals = load_seed_file(Path(sandbox.__file__).parent / "data" / "referrals.example.json")
    for raw in referrals:
        validate_referral(raw)
    store = ReferralStore(SteppingClock())
    assert store.seed_raw(referrals) == len(referrals) == len(store)


def test_a_seed_file_may_be_an_odata_envelope(tmp_path):
    path = tmp_path / "seed.json"
    path.write_text('{"value": [{"id": "a"}]}', encoding="utf-8")
    assert load_seed_file(path) == [{"id": "a"}]
    path.write_text('[{"id": "a"}, 3]', encoding="utf-8")
    with pytest.raises(ValueError, match="expected a JSON array of referral objects"):
        load_seed_file(path)
