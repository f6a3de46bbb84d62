"""The ops HTTP server: routes through werkzeug's test client, then one real server over HTTP."""

from __future__ import annotations

import dataclasses
import json
import socket
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from connector.daemon.health import ConnectionHealth
from connector.daemon.http import MAX_BODY_BYTES, StatusServer, make_app
from connector.engine.report import RunReport
from connector.errors import StateError
from connector.observe.metrics import Metrics
from connector.ports import DeadLetter, Direction, RunRecord

NOW = datetime(2025, 3, 4, 12, 0, 0, tzinfo=UTC)
IN, OUT = Direction.INBOUND, Direction.OUTBOUND
CUSTOMER_EMAIL = "jane.doe@fabrikam.example"


class FixedClock:
    def now(self) -> datetime:
        return NOW


class Connections:
    """A HealthSource over a list that a test can change."""

    def __init__(self, *connections: ConnectionHealth) -> None:
        self.connections = list(connections)

    def health(self) -> list[ConnectionHealth]:
        return list(self.connections)


class BrokenStore:
    def health(self) -> list[ConnectionHealth]:
        raise StateError("database is locked")


def run(direction: Direction, *, ago: float, outcome: str = "ok", **counts: int) -> RunRecord:
    finished = NOW - timedelta(seconds=ago)
    return RunRecord(
        id=int(ago),
        connection="contoso",
        direction=direction,
        started_at=finished - timedelta(seconds=3),
        finished_at=finished,
        outcome=outcome,
        counts=counts,
        errors=("Partner Center answered 503",) if outcome == "failed" else (),
    )


def dead_letter(reason: str, record_id: str = "ref-42") -> DeadLetter:
    return DeadLetter(
        id=1,
        connection="contoso",
        direction=IN,
        record_id=record_id,
        reason=reason,
        payload={"customer": {"contacts": [{"email": CUSTOMER_EMAIL, "phone": "+1 425 555 0100"}]}},
        attempts=3,
        first_seen=NOW - timedelta(hours=2),
        last_seen=NOW - timedelta(minutes=5),
    )


def connection(
    name: str = "contoso", *, runs: tuple[RunRecord, ...] | None = None, reason: str = "bad value"
) -> ConnectionHealth:
    return ConnectionHealth(
        name=name,
        crm="salesforce",
        interval_seconds=60,
        runs=runs
        if runs is not None
        else (run(IN, ago=180, created=3, updated=2), run(OUT, ago=30)),
        dead_letters=(dead_letter(reason),),
        lag_seconds=12,
    )


def stale(name: str = "fabrikam") -> ConnectionHealth:
    return connection(name, runs=(run(IN, ago=5, outcome="failed"), run(OUT, ago=6)))


def sample(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return None


def client(*connections: ConnectionHealth, **kwargs: object) -> Client:
    return Client(make_app(Connections(*connections), Metrics(), clock=FixedClock(), **kwargs))  # type: ignore[arg-type]


def test_healthz_says_ok_while_the_process_serves():
    response = client(stale()).get("/healthz")
    assert (response.status_code, response.json) == (200, {"status": "ok"})


def test_readyz_is_200_when_every_connection_is_ready():
    response = client(connection("a"), connection("b")).get("/readyz")
    assert response.status_code == 200
    assert response.json == {"ready": True, "connections": {"a": "ready", "b": "ready"}}


def test_readyz_is_503_naming_why_each_connection_is_not_ready():
    response = client(connection("a"), stale("b")).get("/readyz")
    assert response.status_code == 503
    assert response.json == {
        "ready": False,
        "connections": {
            "a": "ready",
            "b": "last inbound cycle failed: Partner Center answered 503",
        },
    }


def test_readyz_is_503_when_there_is_no_connection():
    response = client().get("/readyz")
    assert response.status_code == 503
    assert response.json["ready"] is False


def test_readyz_is_503_when_the_health_cannot_be_read():
    app = make_app(BrokenStore(), Metrics(), clock=FixedClock())
    response = Client(app).get("/readyz")
    assert response.status_code == 503
    assert response.json == {"ready": False, "error": "health unavailable (StateError)"}


def test_a_handler_that_fails_answers_500_without_the_details_and_logs_it():
    app = Client(make_app(BrokenStore(), Metrics(), clock=FixedClock()))
    with capture_logs() as logs:
        response = app.get("/status")
    assert response.status_code == 500
    assert response.json == {"error": "internal error"}
    assert [(e["event"], e["path"], e["error"]) for e in logs] == [
        ("ops_request_failed", "/status", "StateError")
    ]


def test_metrics_serves_the_prometheus_text_format():
    metrics = Metrics()
    metrics.observe_cycle(
        RunReport(connection="contoso", direction=IN, started_at=NOW, finished_at=NOW)
    )
    response = Client(make_app(Connections(), metrics, clock=FixedClock())).get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    labels = {"connection": "contoso", "direction": "inbound", "outcome": "ok"}
    assert sample(response.get_data(as_text=True), "referral_sync_cycles_total", **labels) == 1


def test_status_page_shows_each_connection_its_readiness_lag_and_last_success():
    response = client(connection("contoso"), stale("fabrikam")).get("/status")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    page = response.get_data(as_text=True)
    assert "<title>Referral Sync — status</title>" in page
    assert '<meta http-equiv="refresh" content="15">' in page
    assert "1 of 2 connections not ready" in page
    assert "✓ Ready" in page
    assert "✗ Not ready" in page
    assert "last inbound cycle failed: Partner Center answered 503" in page
    assert "12 s behind Partner Center" in page
    assert "3 min ago" in page  # contoso's last inbound success
    assert "created 3 · updated 2" in page
    assert "2025-03-04 11:57:00 UTC" in page


def test_status_page_lists_dead_letter_reasons_but_never_their_payload():
    page = client(connection(reason="CloseDate: not a date")).get("/status").get_data(as_text=True)
    assert "CloseDate: not a date" in page
    assert "ref-42" in page
    assert "jane.doe" not in page
    assert "555" not in page


def test_status_page_escapes_everything_user_provided():
    health = connection("<b>acme</b>", reason='<script>alert("pwned")</script>')
    response = client(health).get("/status")
    page = response.get_data(as_text=True)
    assert "<script" not in page
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;" in page
    assert "<b>acme</b>" not in page
    assert "&lt;b&gt;acme&lt;/b&gt;" in page
    assert "script-src" not in response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


def test_status_json_holds_the_same_data_without_payloads():
    response = client(connection("contoso"), stale("fabrikam")).get("/status.json")
    assert response.status_code == 200
    data = response.json
    assert data["ready"] is False
    assert [(c["name"], c["ready"]) for c in data["connections"]] == [
        ("contoso", True),
        ("fabrikam", False),
    ]
    contoso = data["connections"][0]
    assert contoso["lag_seconds"] == 12
    assert contoso["last_success"] == {
        "inbound": "2025-03-04T11:57:00+00:00",
        "outbound": "2025-03-04T11:59:30+00:00",
    }
    assert contoso["runs"][0]["counts"] == {"created": 3, "updated": 2}
    assert contoso["runs"][0]["duration_seconds"] == 3.0
    assert contoso["dead_letters"][0]["reason"] == "bad value"
    assert "payload" not in contoso["dead_letters"][0]
    assert CUSTOMER_EMAIL not in json.dumps(data)


def test_an_unknown_path_is_a_json_404():
    response = client().get("/admin")
    assert (response.status_code, response.json) == (404, {"error": "not found"})


def test_a_wrong_method_is_405_naming_the_allowed_ones():
    response = client().post("/metrics")
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD"


def test_every_response_forbids_caching():
    assert client().get("/healthz").headers["Cache-Control"] == "no-store"
    assert client().get("/nowhere").headers["Cache-Control"] == "no-store"


def test_without_a_webhook_handler_the_webhook_path_is_404():
    assert client().post("/webhooks/partner-center", data=b"{}").status_code == 404


def test_the_webhook_handler_gets_the_request_and_its_response_is_returned():
    seen: list[bytes] = []

    def webhook(request: Request) -> Response:
        seen.append(request.get_data())
        return Response(status=202)

    app = client(webhooks={"contoso": webhook})
    response = app.post(
        "/webhooks/partner-center/contoso", data=b'{"EventName":"referral-updated"}'
    )
    assert response.status_code == 202
    assert seen == [b'{"EventName":"referral-updated"}']
    assert app.get("/webhooks/partner-center/contoso").status_code == 405


def test_each_connection_has_its_own_webhook_route():
    seen: list[str] = []

    def handler(name: str):
        def webhook(request: Request) -> Response:
            seen.append(name)
            return Response(status=202)

        return webhook

    app = client(webhooks={"contoso": handler("contoso"), "fabrikam": handler("fabrikam")})

    assert app.post("/webhooks/partner-center/fabrikam", data=b"{}").status_code == 202
    assert app.post("/webhooks/partner-center/contoso", data=b"{}").status_code == 202
    assert seen == ["fabrikam", "contoso"]
    assert app.post("/webhooks/partner-center/nobody", data=b"{}").status_code == 404
    # with two connections the bare path cannot say which one: not served
    assert app.post("/webhooks/partner-center", data=b"{}").status_code == 404


def test_with_one_connection_the_bare_webhook_path_is_that_connection():
    app = client(webhooks={"contoso": lambda request: Response(status=202)})
    assert app.post("/webhooks/partner-center", data=b"{}").status_code == 202


def test_a_webhook_body_over_the_limit_is_refused():
    app = client(webhooks={"contoso": lambda request: Response(request.get_data())})
    response = app.post("/webhooks/partner-center/contoso", data=b"x" * (MAX_BODY_BYTES + 1))
    assert response.status_code == 413


# -- a real server ------------------------------------------------------------------------------


@pytest.fixture
def session():
    with requests.Session() as s:
        s.trust_env = False
        yield s


def test_status_server_serves_the_app_over_http_on_a_free_loopback_port(session):
    health = Connections(connection("contoso"))
    app = make_app(health, Metrics(), clock=FixedClock())
    with StatusServer(app) as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert session.get(f"{server.url}/healthz", timeout=5).json() == {"status": "ok"}
        assert session.get(f"{server.url}/readyz", timeout=5).status_code == 200
        health.connections.append(stale())  # read fresh on every request
        assert session.get(f"{server.url}/readyz", timeout=5).status_code == 503
        page = session.get(f"{server.url}/status", timeout=5)
        assert "contoso" in page.text
        assert page.headers["Content-Type"] == "text/html; charset=utf-8"


def test_a_stopped_status_server_no_longer_listens(session):
    server = StatusServer(make_app(Connections(), Metrics(), clock=FixedClock())).start()
    url = server.url
    server.stop()
    server.stop()  # a second stop is harmless
    with pytest.raises(requests.ConnectionError):
        session.get(f"{url}/healthz", timeout=5)


def test_a_port_in_use_raises_instead_of_exiting():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = StatusServer(make_app(Connections(), Metrics(), clock=FixedClock()), port=port)
        with pytest.raises(OSError, match="in use"):
            server.start()


def test_counts_in_a_report_reach_the_served_metrics(session):
    metrics = Metrics()
    report = RunReport(connection="contoso", direction=OUT, started_at=NOW, finished_at=NOW)
    report.counts = Counter({"received": 2, "accept": 1})
    metrics.observe_cycle(report)
    with StatusServer(make_app(Connections(), metrics, clock=FixedClock())) as server:
        text = session.get(f"{server.url}/metrics", timeout=5).text
    labels = {"connection": "contoso", "direction": "outbound"}
    assert sample(text, "referral_sync_records_total", **labels, action="accept") == 1
    assert sample(text, "referral_sync_records_total", **labels, action="received") == 2


def test_the_status_page_names_the_replica_syncing_and_when_the_sign_in_lapses():
    health = dataclasses.replace(
        connection(),
        lease_holder="sync-2:41:ab12cd34",
        token_expires_at=NOW + timedelta(days=80),
    )
    page = client(health).get("/status").get_data(as_text=True)
    assert "Synced by" in page
    assert "sync-2:41:ab12cd34" in page
    assert "Sign-in lapses if unused" in page
    data = client(health).get("/status.json").json
    assert data["connections"][0]["lease_holder"] == "sync-2:41:ab12cd34"
