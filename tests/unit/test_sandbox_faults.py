"""Fault injection: the plan syntax, seeded dice, scripts, what a client sees, what gets logged."""

from __future__ import annotations

import json
import random
import time
from collections import Counter

import pytest
import requests

from sandbox.dynamics.errors import dataverse_responder
from sandbox.faults import (
    DEFAULT_RETRY_AFTER_S,
    DEFAULT_SLOW_S,
    DEFAULT_TIMEOUT_S,
    FaultInjector,
    FaultPlan,
    FaultRule,
    partner_center_responder,
)
from sandbox.requestlog import RequestLog
from sandbox.salesforce.errors import salesforce_responder


def ok_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def route_of(environ):
    return environ.get("PATH_INFO", "/").strip("/") or "root"


class Call:
    """Calls a wrapped WSGI app in-process and keeps what it answered."""

    def __init__(self, app):
        self.app = app

    def __call__(self, path="/referrals", method="GET"):
        seen = {}

        def start_response(status, headers, exc_info=None):
            seen["status"] = int(status.split()[0])
            seen["headers"] = dict(headers)

        body = b"".join(self.app({"PATH_INFO": path, "REQUEST_METHOD": method}, start_response))
        return seen["status"], seen["headers"], body


class Sleeps(list):
    def __call__(self, seconds):
        self.append(seconds)


def injector(plan="", seed=7, **kwargs):
    sleeps = Sleeps()
    inj = FaultInjector(FaultPlan.parse(plan), rng=random.Random(seed), sleep=sleeps, **kwargs)
    return inj, sleeps


# -- the plan syntax -----------------------------------------------------------------------


def test_parse_reads_services_routes_and_options():
    plan = FaultPlan.parse(
        "partner_center:429=0.1,500=0.05,503=0.05,reset=0.02,slow=0.05,retry_after=3;"
        " partner_center/referrals_patch:500=0.2 ; entra:503=1,slow_s=0.25"
    )
    pc = plan.rule_for("partner_center", "referrals_list")
    assert pc is not None
    assert dict(pc.probabilities) == {
        "429": 0.1,
        "500": 0.05,
        "503": 0.05,
        "reset": 0.02,
        "slow": 0.05,
    }
    assert pc.retry_after_s == 3
    assert plan.rule_for("partner_center", "referrals_patch") == FaultRule({"500": 0.2})
    entra = plan.rule_for("entra", "token")
    assert entra is not None
    assert entra.slow_s == 0.25
    assert plan.rule_for("salesforce", "query") is None


def test_empty_spec_is_no_plan():
    assert not FaultPlan.parse("")
    assert not FaultPlan.parse(" ; ")


def test_star_service_applies_to_services_without_their_own_rule():
    plan = FaultPlan.parse("*:500=0.5;entra:429=0.1")
    assert plan.rule_for("dataverse", "x") == FaultRule({"500": 0.5})
    assert plan.rule_for("entra", "token") == FaultRule({"429": 0.1})


def test_defaults_for_retry_after_and_slow():
    rule = FaultPlan.parse("svc:429=0.1").rule_for("svc", "r")
    assert rule is not None
    assert (rule.retry_after_s, rule.slow_s) == (DEFAULT_RETRY_AFTER_S, DEFAULT_SLOW_S)


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("429=0.1", "expected 'service"),
        ("svc:418=0.1", "unknown '418'"),
        ("svc:429", "not 'name=number'"),
        ("svc:429=lots", "not 'name=number'"),
        ("svc:429=-0.1", "not 'name=number'"),
        ("svc:429=1.5", "above 1"),
        ("svc:429=0.6,500=0.6", "more than 1"),
    ],
)
def test_bad_specs_are_refused_naming_the_part(spec, complaint):
    with pytest.raises(ValueError, match=complaint):
        FaultPlan.parse(spec)


def test_pick_walks_cumulative_probabilities():
    rule = FaultRule({"429": 0.25, "reset": 0.25})
    assert rule.pick(0.1) == "429"
    assert rule.pick(0.3) == "reset"
    assert rule.pick(0.6) is None


# -- random faults -------------------------------------------------------------------------


def test_seeded_dice_give_the_same_faults_every_run():
    def statuses():
        inj, _ = injector("svc:429=0.3,500=0.2", seed=42)
        call = Call(inj.wrap(ok_app, "svc", route_of))
        return [call()[0] for _ in range(50)]

    assert statuses() == statuses()


def test_fault_rates_follow_the_probabilities():
    inj, _ = injector("svc:429=0.2,503=0.1", seed=3)
    call = Call(inj.wrap(ok_app, "svc", route_of))
    counts = Counter(call()[0] for _ in range(2000))
    assert 0.16 < counts[429] / 2000 < 0.24
    assert 0.07 < counts[503] / 2000 < 0.13
    assert counts[200] + counts[429] + counts[503] == 2000


def test_a_route_rule_overrides_the_service_rule():
    inj, _ = injector("svc:500=1;svc/quiet:500=0")
    call = Call(inj.wrap(ok_app, "svc", route_of))
    assert call("/loud")[0] == 500
    assert call("/quiet")[0] == 200


def test_429_carries_retry_after_and_partner_centers_body():
    inj, _ = injector("svc:429=1,retry_after=4")
    status, headers, body = Call(inj.wrap(ok_app, "svc", route_of))()
    assert status == 429
    assert headers["Retry-After"] == "4"
    assert json.loads(body) == {
        "statusCode": 429,
        "message": "Rate limit is exceeded. Try again in 4 seconds.",
    }


def test_503_carries_retry_after_and_500_does_not():
    inj, _ = injector()
    inj.script("svc", "*", 503, 500)
    call = Call(inj.wrap(ok_app, "svc", route_of))
    assert call()[1]["Retry-After"] == "1"
    assert "Retry-After" not in call()[1]


def test_slow_delays_the_normal_reply_with_the_injected_sleep():
    inj, sleeps = injector("svc:slow=1,slow_s=0.75")
    status, _, body = Call(inj.wrap(ok_app, "svc", route_of))()
    assert (status, body) == (200, b"ok")
    assert sleeps == [0.75]


def test_latency_is_added_to_every_request():
    inj, sleeps = injector(latency_ms=40)
    call = Call(inj.wrap(ok_app, "svc", route_of))
    call()
    call()
    assert sleeps == [0.04, 0.04]


# -- scripted faults -----------------------------------------------------------------------


def test_scripted_faults_come_in_order_then_normal_replies():
    inj, _ = injector()
    inj.script("svc", "*", 429, "500", "ok", "503")
    call = Call(inj.wrap(ok_app, "svc", route_of))
    assert [call()[0] for _ in range(5)] == [429, 500, 200, 503, 200]
    assert inj.pending("svc") == 0


def test_a_route_script_is_used_before_the_service_script():
    inj, _ = injector()
    inj.script("svc", "*", 500)
    inj.script("svc", "patch", 429)
    call = Call(inj.wrap(ok_app, "svc", route_of))
    assert call("/patch")[0] == 429
    assert call("/patch")[0] == 500
    assert call("/list")[0] == 200


def test_scripts_beat_the_random_plan():
    inj, _ = injector("svc:500=1")
    inj.script("svc", "*", "ok")
    call = Call(inj.wrap(ok_app, "svc", route_of))
    assert call()[0] == 200
    assert call()[0] == 500


def test_a_scripted_429_can_name_its_retry_after():
    inj, _ = injector()
    inj.script("svc", "*", "429:7")
    assert Call(inj.wrap(ok_app, "svc", route_of))()[1]["Retry-After"] == "7"


def test_scripts_of_other_services_do_not_apply():
    inj, _ = injector()
    inj.script("other", "*", 500)
    assert Call(inj.wrap(ok_app, "svc", route_of))()[0] == 200


def test_unknown_scripted_kind_is_refused():
    inj, _ = injector()
    with pytest.raises(ValueError, match="cannot script"):
        inj.script("svc", "*", 418)


def test_clear_drops_plan_scripts_and_latency():
    inj, sleeps = injector("svc:500=1", latency_ms=10)
    inj.script("svc", "*", 429)
    inj.clear()
    assert Call(inj.wrap(ok_app, "svc", route_of))()[0] == 200
    assert sleeps == []


def test_a_service_can_plug_in_its_own_error_bodies():
    def dataverse(kind, retry_after):
        body = json.dumps({"error": {"code": "0x80072322", "message": kind}}).encode()
        return int(kind), [("Retry-After", "9")], body

    inj, _ = injector(responders={"dataverse": dataverse})
    inj.script("dataverse", "*", 429)
    status, headers, body = Call(inj.wrap(ok_app, "dataverse", route_of))()
    assert (status, headers["Retry-After"]) == (429, "9")
    assert json.loads(body)["error"]["code"] == "0x80072322"


# -- timeouts, early token expiry, quotas and concurrency limits ---------------------------


class CountingApp:
    """``ok_app`` that counts its calls: did the request reach the simulator (a write made)?"""

    def __init__(self):
        self.calls = 0

    def __call__(self, environ, start_response):
        self.calls += 1
        return ok_app(environ, start_response)


def test_a_timeout_does_the_request_then_withholds_the_reply():
    app = CountingApp()
    inj, sleeps = injector("svc:timeout=1,timeout_s=4")
    with pytest.raises(ConnectionResetError):
        Call(inj.wrap(app, "svc", route_of))()
    assert app.calls == 1  # the write happened; the client never hears of it
    assert sleeps == [4]
    (entry,) = inj.log.entries()
    assert (entry.status, entry.injected) == (None, "timeout")


def test_the_default_timeout_outlasts_a_60_second_read_timeout():
    assert FaultPlan.parse("svc:timeout=1").rule_for("svc", "x").timeout_s == DEFAULT_TIMEOUT_S
    assert DEFAULT_TIMEOUT_S > 60


def test_expire_expires_the_presented_token_and_lets_the_simulator_refuse_it():
    expired = []

    def expirer(header):
        expired.append(header)
        return header is not None

    app = CountingApp()
    inj, _ = injector()
    inj.set_token_expirer("svc", expirer)
    inj.script("svc", "*", "expire", "expire")
    wrapped = inj.wrap(app, "svc", route_of)
    seen = []
    start = lambda status, headers, exc_info=None: seen.append(status)  # noqa: E731
    list(wrapped({"PATH_INFO": "/a", "HTTP_AUTHORIZATION": "Bearer t1"}, start))
    list(wrapped({"PATH_INFO": "/token"}, start))  # nothing to expire: an ordinary request
    assert expired == ["Bearer t1", None]
    assert app.calls == 2
    assert [e.injected for e in inj.log.entries()] == ["expire", None]


@pytest.mark.parametrize(
    ("responder", "kind", "status", "code", "retry_after"),
    [
        (salesforce_responder, "quota", 403, "REQUEST_LIMIT_EXCEEDED", None),
        (salesforce_responder, "concurrency", 403, "REQUEST_LIMIT_EXCEEDED", "1"),
        (dataverse_responder, "concurrency", 429, "0x80072326", "1"),
        (dataverse_responder, "quota", 429, "0x80072322", "1"),
        (partner_center_responder, "quota", 429, None, "1"),
    ],
)
def test_quota_and_concurrency_look_like_each_services_own_limits(
    responder, kind, status, code, retry_after
):
    inj, _ = injector(responders={"svc": responder})
    inj.script("svc", "*", kind)
    got, headers, body = Call(inj.wrap(ok_app, "svc", route_of))()
    assert got == status
    assert headers.get("Retry-After") == retry_after
    if code is not None:
        text = body.decode()
        assert code in text
    (entry,) = inj.log.entries()
    assert (entry.injected, entry.retry_after) == (kind, None if retry_after is None else 1.0)


def test_salesforce_quota_reads_as_the_daily_limit_and_concurrency_as_the_long_request_one():
    _, _, quota = salesforce_responder("quota", 1.0)
    _, _, concurrent = salesforce_responder("concurrency", 1.0)
    assert json.loads(quota)[0]["message"] == "TotalRequests Limit exceeded."
    assert json.loads(concurrent)[0]["message"].startswith("ConcurrentPerOrgLongTxn")
    _, _, dataverse = dataverse_responder("concurrency", 1.0)
    assert "limit of 52" in json.loads(dataverse)["error"]["message"]


# -- the request log ----------------------------------------------------------------------


def test_every_request_is_logged_with_its_outcome():
    log = RequestLog()
    inj, _ = injector(log=log)
    inj.script("svc", "*", "429:2")
    call = Call(inj.wrap(ok_app, "svc", route_of))
    call("/a")
    call("/a", method="POST")
    first, second = log.entries()
    assert (first.status, first.injected, first.retry_after, first.route) == (429, "429", 2, "a")
    assert (second.status, second.injected, second.method) == (200, None, "POST")
    assert first.time <= second.time
    assert log.count(service="svc", route="a") == 2
    assert log.count(status=429) == 1
    assert log.count(method="post") == 1


def test_retry_after_sent_by_the_app_itself_is_logged():
    def throttling_app(environ, start_response):
        start_response("429 Too Many Requests", [("Retry-After", "5"), ("Content-Length", "0")])
        return [b""]

    inj, _ = injector()
    Call(inj.wrap(throttling_app, "svc", route_of))()
    (entry,) = inj.log.entries()
    assert (entry.status, entry.retry_after, entry.injected) == (429, 5.0, None)


def test_a_listener_hears_each_entry_as_it_is_recorded():
    log = RequestLog()
    heard = []
    log.add_listener(heard.append)
    inj, _ = injector(log=log)
    call = Call(inj.wrap(ok_app, "svc", route_of))
    call("/a")
    log.remove_listener(heard.append)
    call("/b")
    assert [e.route for e in heard] == ["a"]


def test_log_clear_empties_it():
    log = RequestLog()
    inj, _ = injector(log=log)
    Call(inj.wrap(ok_app, "svc", route_of))()
    log.clear()
    assert len(log) == 0


# -- over the wire (the session sandbox's Entra server) -------------------------------------


def discovery_url(sandbox):
    return f"{sandbox.info['entra']['authority']}/v2.0/.well-known/openid-configuration"


@pytest.mark.e2e
def test_a_reset_is_a_connection_error_for_requests(sandbox, ca_session):
    sandbox.faults.script("entra", "discovery", "reset")
    with pytest.raises(requests.ConnectionError):
        ca_session.get(discovery_url(sandbox), timeout=5)
    assert ca_session.get(discovery_url(sandbox), timeout=5).status_code == 200
    statuses = [(e.status, e.injected) for e in sandbox.log.entries(service="entra")]
    assert statuses == [(None, "reset"), (200, None)]


@pytest.mark.e2e
def test_a_429_over_the_wire_has_retry_after(sandbox, ca_session):
    sandbox.faults.set_plan("entra/discovery:429=1,retry_after=2")
    response = ca_session.get(discovery_url(sandbox), timeout=5)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"


@pytest.mark.e2e
def test_a_slow_reply_times_out_a_client_with_a_short_timeout(sandbox, ca_session):
    sandbox.faults.set_plan("entra/discovery:slow=1,slow_s=0.6")
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        ca_session.get(discovery_url(sandbox), timeout=0.2)
    assert time.monotonic() - started < 0.6


@pytest.mark.e2e
def test_a_timeout_over_the_wire_is_a_read_timeout_for_the_client(sandbox, ca_session):
    sandbox.faults.set_plan("entra/discovery:timeout=1,timeout_s=0.6")
    with pytest.raises(requests.ReadTimeout):
        ca_session.get(discovery_url(sandbox), timeout=0.2)
    [entry] = sandbox.log.entries(service="entra")
    assert (entry.status, entry.injected) == (None, "timeout")


@pytest.mark.e2e
def test_an_expired_token_stays_refused_until_a_new_one_is_fetched(sandbox, ca_session):
    def token():
        value, _ = sandbox.tokens.issue_access_token(
            client_id="c", audience="https://api.partner.microsoft.com", scopes=(), user=None
        )
        return {"Authorization": f"Bearer {value}"}

    url = f"{sandbox.info['partner_center']['base_url']}/referrals"
    first = token()
    sandbox.faults.script("partner_center", "*", "expire")
    assert ca_session.get(url, headers=first, timeout=5).status_code == 401
    assert ca_session.get(url, headers=first, timeout=5).status_code == 401
    assert ca_session.get(url, headers=token(), timeout=5).status_code != 401
