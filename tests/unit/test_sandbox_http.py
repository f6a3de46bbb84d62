"""The sandbox's HTTP servers: what they do to every connection they accept, and keep-alive."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest
import requests

from sandbox.faults import FaultInjector
from sandbox.http import serve
from sandbox.testing import ca_session, random_loopback_host
from sandbox.tls import SandboxTLS


def _nodelay_app(environ, start_response):
    sock = environ["werkzeug.socket"]
    body = str(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class Peers:
    """A WSGI app that notes the TCP connection (client address) of every request it answers.

    ``/read`` reads the request body and echoes it, ``/chunked`` answers without a
    Content-Length, ``/slow`` waits ``release`` first; anything else ignores the body.
    """

    def __init__(self):
        self.seen = []
        self.release = threading.Event()
        self.arrived = threading.Event()

    def __call__(self, environ, start_response):
        self.seen.append((environ["REMOTE_ADDR"], environ["REMOTE_PORT"]))
        path = environ["PATH_INFO"]
        body = b"ok"
        if path == "/read":
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        if path == "/slow":
            self.arrived.set()
            self.release.wait(10)
        if path == "/chunked":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"one,", b"two"]
        headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        start_response("200 OK", headers)
        return [body]

    @property
    def connections(self):
        return len(set(self.seen))


@pytest.fixture
def host():
    return random_loopback_host()


@pytest.fixture
def tls(host, tmp_path):
    return SandboxTLS.create(host, tmp_path)


@pytest.fixture
def served(host, tls):
    started = []

    def start(app):
        server = serve(app, host=host, ssl_context=tls.server_context(), name="test")
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def test_accepted_connections_send_small_writes_at_once(tls, served):
    server = served(_nodelay_app)
    with ca_session(str(tls.ca_path)) as session:
        answer = session.get(server.url + "/", timeout=10)
    assert answer.status_code == 200
    assert answer.text != "0"


def test_one_session_sends_sequential_requests_over_one_connection(tls, served):
    app = Peers()
    server = served(app)
    with ca_session(str(tls.ca_path)) as session:
        for number in range(20):
            answer = session.post(f"{server.url}/read", data=f"body {number}", timeout=10)
            assert answer.text == f"body {number}"
            assert answer.headers.get("Connection") != "close"
    assert len(app.seen) == 20
    assert app.connections == 1


def test_a_body_the_app_did_not_read_does_not_spill_into_the_next_request(tls, served):
    app = Peers()
    server = served(app)
    with ca_session(str(tls.ca_path)) as session:
        for _ in range(5):
            assert session.post(f"{server.url}/ignore", data=b"x" * 70_000, timeout=10).text == "ok"
            assert session.get(f"{server.url}/read", timeout=10).text == ""
    assert app.connections == 1


def test_a_reply_without_content_length_is_chunked_on_a_kept_connection(tls, served):
    app = Peers()
    server = served(app)
    with ca_session(str(tls.ca_path)) as session:
        answers = [session.get(f"{server.url}/chunked", timeout=10) for _ in range(3)]
    assert [a.text for a in answers] == ["one,two"] * 3
    assert answers[0].headers["Transfer-Encoding"] == "chunked"
    assert app.connections == 1


def test_a_client_that_asks_to_close_gets_a_new_connection_each_time(tls, served):
    app = Peers()
    server = served(app)
    with ca_session(str(tls.ca_path)) as session:
        for _ in range(3):
            answer = session.get(f"{server.url}/", headers={"Connection": "close"}, timeout=10)
            assert answer.headers["Connection"] == "close"
    assert app.connections == 3


def test_an_injected_reset_drops_that_connection_and_the_next_request_gets_a_new_one(tls, served):
    app = Peers()
    faults = FaultInjector()
    server = served(faults.wrap(app, "svc", lambda environ: "route"))
    with ca_session(str(tls.ca_path)) as session:
        assert session.get(f"{server.url}/", timeout=10).text == "ok"
        faults.script("svc", "*", "reset")
        with pytest.raises(requests.ConnectionError):
            session.get(f"{server.url}/", timeout=10)
        assert session.get(f"{server.url}/", timeout=10).text == "ok"
        assert session.get(f"{server.url}/", timeout=10).text == "ok"
    assert len(app.seen) == 3  # the reset request never reached the app
    assert app.connections == 2


def test_stop_closes_kept_alive_connections_so_no_request_is_answered_after_it(tls, served):
    app = Peers()
    server = served(app)
    with ca_session(str(tls.ca_path)) as session:
        assert session.get(f"{server.url}/", timeout=10).text == "ok"
        server.stop()
        with pytest.raises(requests.ConnectionError):
            session.get(f"{server.url}/", timeout=10)
    assert len(app.seen) == 1


def test_stop_lets_a_reply_in_progress_finish_then_closes_its_connection(tls, served):
    app = Peers()
    server = served(app)
    answers = []
    with ca_session(str(tls.ca_path)) as session:
        client = threading.Thread(
            target=lambda: answers.append(session.get(f"{server.url}/slow", timeout=10))
        )
        client.start()
        assert app.arrived.wait(10)
        stopper = threading.Thread(target=server.stop)
        stopper.start()
        time.sleep(0.3)  # stop() has closed the idle connections and waits for the thread
        app.release.set()
        client.join(10)
        stopper.join(10)
    assert [a.status_code for a in answers] == [200]
    assert answers[0].headers["Connection"] == "close"


def test_an_idle_connection_is_closed_quietly_and_the_next_request_reconnects(
    tls, served, monkeypatch, caplog
):
    monkeypatch.setattr("sandbox.http.IDLE_TIMEOUT_S", 0.2)
    app = Peers()
    server = served(app)
    with ca_session(str(tls.ca_path)) as session, caplog.at_level("DEBUG", "sandbox.http"):
        assert session.get(f"{server.url}/", timeout=10).text == "ok"
        time.sleep(0.6)
        assert session.get(f"{server.url}/", timeout=10).text == "ok"
    assert app.connections == 2
    assert "keepalive_idle_closed" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
