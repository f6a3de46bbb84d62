"""The sandbox's HTTP servers: what they do to every connection they accept."""

from __future__ import annotations

import socket

from sandbox.http import serve
from sandbox.testing import ca_session, random_loopback_host
from sandbox.tls import SandboxTLS


def _nodelay_app(environ, start_response):
    sock = environ["werkzeug.socket"]
    body = str(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def test_accepted_connections_send_small_writes_at_once(tmp_path):
    host = random_loopback_host()
    tls = SandboxTLS.create(host, tmp_path)
    server = serve(_nodelay_app, host=host, ssl_context=tls.server_context(), name="nodelay")
    try:
        with ca_session(str(tls.ca_path)) as session:
            answer = session.get(server.url + "/", timeout=10)
        assert answer.status_code == 200
        assert answer.text != "0"
    finally:
        server.stop()
