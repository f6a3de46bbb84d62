"""Bad referrals from Partner Center, one file each: each is dead-lettered naming its field (or,
where the input is odd but usable, synced intact), nothing crashes, and the referrals around it
in the same page sync.

Cases live in ``tests/data/bad_input/referral/<case>.json``:

``merge``
    deep-merged onto ``_base.json`` (objects merge, any other value replaces);
``remove``
    dotted paths deleted afterwards;
``raw``
    instead: the item's JSON text as served, either a string, or ``{"$splice": path, "text":
    ...}`` (the base, with the JSON text ``text`` written verbatim at ``path``: for what a
    Python dict cannot hold, such as a lone surrogate or a 5,000-digit integer);
``expect``
    ``{"dead_letter": "<field>"}``: the dead letter's reason names this wire field (or CRM field,
    when the CRM refused it), or ``{"synced": {<CRM field>: value}}`` (+ ``"warning"``: an event
    that must be logged). Any value may be ``{"$repeat": text, "times": n, "then": rest}``.

Each case runs through the real Partner Center client (over an in-process transport that serves
the bytes), the real source adapter, the engine, the shipped Salesforce mapping, a fake CRM that
validates like the org, and the memory state store: a page of [good, bad, good].
"""

from __future__ import annotations

import copy
import itertools
import json
import random
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import jsonpatch
import pytest
import requests
from fakes import FakeCrm, TickingClock
from requests.adapters import BaseAdapter
from structlog.testing import capture_logs

from connector.engine import ConnectionSync
from connector.http.retry import RetryPolicy
from connector.http.session import build_session
from connector.mapping_file import default_mapping_path, load_mapping_file
from connector.partner_center.adapter import PartnerCenterSource
from connector.partner_center.client import PartnerCenterClient
from connector.ports import Direction
from connector.state import MemoryStateStore

CASES_DIR = Path(__file__).parents[1] / "data" / "bad_input" / "referral"
CASES = sorted(p for p in CASES_DIR.glob("*.json") if not p.name.startswith("_"))
BASE = "https://api.partner.test/v1.0/engagements"
SF_MAPPING = load_mapping_file(default_mapping_path("salesforce"))
GOOD_BEFORE = "00000000-0000-4000-8000-00000000000a"
GOOD_AFTER = "00000000-0000-4000-8000-00000000000b"
_SPLICE = "\u2063splice\u2063"


def expand(value: Any) -> Any:
    """``{"$repeat": text, "times": n, "then": rest}`` → the long string; recursively."""
    if isinstance(value, dict):
        if "$repeat" in value:
            return value["$repeat"] * value["times"] + value.get("then", "")
        return {k: expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v) for v in value]
    return value


def merged(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def at_path(document: dict[str, Any], path: str) -> tuple[dict[str, Any], str]:
    *parents, last = path.split(".")
    node = document
    for part in parents:
        node = node[part]
    return node, last


def base_referral() -> dict[str, Any]:
    base = json.loads((CASES_DIR / "_base.json").read_text(encoding="utf-8"))
    base.pop("_comment")
    return base


def case_text(case: Mapping[str, Any]) -> str:
    """The bad item's JSON text, as Partner Center would put it in the page."""
    raw = case.get("raw")
    if isinstance(raw, str):
        return raw
    document = base_referral()
    if isinstance(raw, dict):
        node, key = at_path(document, raw["$splice"])
        node[key] = _SPLICE
        return json.dumps(document).replace(json.dumps(_SPLICE), expand(raw["text"]))
    document = merged(document, expand(case.get("merge", {})))
    for path in case.get("remove", []):
        node, key = at_path(document, path)
        node.pop(key, None)
    return json.dumps(document)


def good(referral_id: str, updated: str, name: str) -> str:
    document = base_referral()
    document.update(id=referral_id, updatedDateTime=updated, name=name)
    document["customerProfile"]["name"] = f"{name} Customer"
    document["customerProfile"]["team"][0]["email"] = f"buyer.{referral_id[-1]}@fabrikam.example"
    return json.dumps(document)


class PartnerCenterWire(BaseAdapter):
    """The Referrals API in process: serves the items' bytes as they are, applies patches."""

    def __init__(self, items: list[str]) -> None:
        super().__init__()
        self.items = items
        self.etags = itertools.count(1)
        self.clock = itertools.count(1)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        parts = urlsplit(request.url or "")
        tail = parts.path.removeprefix(urlsplit(BASE).path)
        if request.method == "GET" and tail == "/referrals":
            return self._answer(request, 200, '{"value": [' + ", ".join(self.items) + "]}")
        referral_id = unquote(tail.removeprefix("/referrals/"))
        index = self._find(referral_id)
        if index is None:
            return self._answer(request, 404, '{"error": {"code": "notFound", "message": "-"}}')
        if request.method == "GET":
            return self._answer(request, 200, self.items[index])
        assert request.method == "PATCH"
        document = json.loads(self.items[index])
        ops = json.loads(request.body or b"[]")
        document = jsonpatch.apply_patch(document, ops)
        document["eTag"] = f'"patched-{next(self.etags)}"'
        document["updatedDateTime"] = f"2024-06-01T00:00:{next(self.clock):02d}Z"
        self.items[index] = json.dumps(document)
        return self._answer(request, 200, self.items[index])

    def close(self) -> None:
        """Nothing to release."""

    def _find(self, referral_id: str) -> int | None:
        for index, text in enumerate(self.items):
            try:
                document = json.loads(text)
            except ValueError:
                continue
            if isinstance(document, dict) and document.get("id") == referral_id:
                return index
        return None

    def _answer(
        self, request: requests.PreparedRequest, status: int, text: str
    ) -> requests.Response:
        response = requests.Response()
        response.status_code = status
        response._content = text.encode("utf-8", "surrogatepass")
        response.headers["Content-Type"] = "application/json; charset=utf-8"
        response.url = request.url or ""
        response.request = request
        return response


class FakeAuth:
    def token(self) -> str:
        return "wire-test-token"

    def refresh(self) -> str:
        return self.token()


class World:
    def __init__(self, bad_item: str) -> None:
        self.clock = TickingClock(datetime(2024, 6, 1, 8, 0, tzinfo=UTC))
        self.wire = PartnerCenterWire(
            [
                good(GOOD_BEFORE, "2024-05-03T09:00:00Z", "Before"),
                bad_item,
                good(GOOD_AFTER, "2024-05-03T11:00:00Z", "After"),
            ]
        )
        session = build_session()
        session.mount(BASE, self.wire)
        client = PartnerCenterClient(
            BASE,
            FakeAuth(),
            session=session,
            retry=RetryPolicy(max_attempts=1, jitter=0),
            sleep=lambda seconds: None,
            rng=random.Random(1),
        )
        self.crm = FakeCrm(clock=self.clock)
        self.store = MemoryStateStore(clock=self.clock)
        self.sync = ConnectionSync(
            "bad-input",
            source=PartnerCenterSource(client, now=self.clock),
            crm=self.crm,
            store=self.store,
            spec=SF_MAPPING,
            clock=self.clock,
        )

    def opportunities(self) -> dict[str, dict[str, Any]]:
        return {r["Partner_Center_Referral_Id__c"]: r for r in self.crm.records("Opportunity")}

    def wire_referral(self, referral_id: str) -> dict[str, Any]:
        index = self.wire._find(referral_id)
        assert index is not None
        document: dict[str, Any] = json.loads(self.wire.items[index])
        return document


def load(path: Path) -> dict[str, Any]:
    case: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return case


def crm_value(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def test_the_referral_corpus_covers_every_kind_the_issue_names():
    prefixes = {path.stem.split("_")[0] for path in CASES}
    assert prefixes >= {"type", "missing", "enum", "huge", "control", "script"}
    assert len(CASES) >= 30


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_a_bad_referral_costs_only_itself(path: Path):
    case = load(path)
    assert case.get("_comment"), "every case says what it is"
    world = World(case_text(case))

    with capture_logs() as events:
        result = world.sync.run_cycle()
        world.sync.run_cycle()  # the page read again: still no crash, nothing twice

    assert not result.inbound.failed, result.inbound.errors
    assert not result.outbound.failed, result.outbound.errors
    opportunities = world.opportunities()
    for neighbour in (GOOD_BEFORE, GOOD_AFTER):
        assert neighbour in opportunities, "the rest of the page syncs"
        crm_id = opportunities[neighbour]["Id"]
        assert world.wire_referral(neighbour)["externalReferenceId"] == crm_id
    letters = world.store.dead_letters("bad-input")
    expect = expand(case["expect"])
    if "dead_letter" in expect:
        field = expect["dead_letter"]
        assert len(opportunities) == 2, "the bad referral made no opportunity"
        [letter] = letters
        assert letter.direction is Direction.INBOUND
        assert field in letter.reason, letter.reason
        assert letter.payload is not None
    else:
        assert letters == [], [letter.reason for letter in letters]
        [bad] = [r for key, r in opportunities.items() if key not in (GOOD_BEFORE, GOOD_AFTER)]
        for name, value in expect["synced"].items():
            assert crm_value(bad.get(name)) == value, name
        if "warning" in expect:
            assert expect["warning"] in [e["event"] for e in events]
    assert len(world.crm.records("Opportunity")) == len(opportunities), "no duplicate"
