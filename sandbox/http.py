"""WSGI apps served over TLS on loopback, each in a daemon thread, quiet and stoppable.

werkzeug's development server does the HTTP; this module adds what it lacks for a sandbox:
the TLS handshake happens in the worker thread (a client that never completes it cannot stall
the accept loop), every accepted connection has ``TCP_NODELAY`` (:func:`tune_accepted`: with
Nagle's algorithm on, a reply written in pieces waits for the client's delayed ACK, 20-40 ms a
request), connections are kept alive between requests (:mod:`sandbox.keepalive`: werkzeug's
own handler closes every one), a bind failure raises ``OSError`` instead of exiting the
process, and the access log goes to the ``sandbox.http`` logger at debug level instead of
stderr.

:meth:`RunningServer.stop` stops accepting, closes the connections waiting for a request and
lets those serving one finish their reply (then closes them).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from dataclasses import dataclass, field

from werkzeug.serving import ThreadedWSGIServer

from sandbox.keepalive import IDLE_TIMEOUT_S, Connections, KeepAliveHandler
from sandbox.wsgi import WSGIApp

logger = logging.getLogger("sandbox.http")

HANDSHAKE_TIMEOUT_S = 10.0


class _QuietHandler(KeepAliveHandler):
    def log(self, type: str, message: str, *args: object) -> None:  # noqa: A002 (werkzeug's name)
        level = logging.WARNING if type == "error" else logging.DEBUG
        logger.log(level, message.rstrip(), *args)


def tune_accepted(sock: socket.socket) -> None:
    """Send small writes at once (``TCP_NODELAY``) on an accepted TCP connection."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _TLSServer(ThreadedWSGIServer):
    """werkzeug's threaded server, TLS per connection in the worker thread."""

    def __init__(self, sock: socket.socket, app: WSGIApp, ssl_context: ssl.SSLContext) -> None:
        host, port = sock.getsockname()[:2]
        super().__init__(host, port, app, handler=_QuietHandler, fd=sock.fileno())
        self.ssl_context = ssl_context  # werkzeug reads it for wsgi.url_scheme
        self.connections = Connections()

    def finish_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        assert self.ssl_context is not None  # noqa: S101 (set in __init__)
        tune_accepted(request)
        request.settimeout(HANDSHAKE_TIMEOUT_S)
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            logger.debug("tls_handshake_failed peer=%s error=%s", client_address, exc)
            return
        tls.settimeout(IDLE_TIMEOUT_S)
        try:
            super().finish_request(tls, client_address)
        finally:
            self.connections.closed(tls)
            _close_quietly(tls)

    def log(self, type: str, message: str, *args: object) -> None:  # noqa: A002 (werkzeug's name)
        level = logging.ERROR if type == "error" else logging.DEBUG
        logger.log(level, message, *args)


def _close_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@dataclass(slots=True)
class RunningServer:
    """One server thread. ``url`` is ``https://host:port`` (no trailing slash)."""

    name: str
    host: str
    port: int
    _server: _TLSServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def stop(self) -> None:
        """Stop accepting, close idle connections, close the listening socket and wait for
        the server thread (replies being written are finished, then their connections closed)."""
        if not self._thread.is_alive():
            return
        self._server.shutdown()
        self._server.connections.stop()
        self._thread.join(timeout=5)
        self._server.server_close()


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``OSError`` if the port is taken or forbidden)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def serve(
    app: WSGIApp,
    *,
    host: str,
    port: int = 0,
    ssl_context: ssl.SSLContext,
    name: str,
) -> RunningServer:
    """Serve ``app`` over TLS on ``host:port`` (0 = any free port) in a daemon thread."""
    sock = bind(host, port)
    try:
        server = _TLSServer(sock, app, ssl_context)
    finally:
        sock.close()  # werkzeug works on a duplicate of the descriptor
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.1},
        name=f"sandbox-{name}",
        daemon=True,
    )
    thread.start()
    logger.debug("server_started name=%s url=https://%s:%s", name, host, server.port)
    return RunningServer(name=name, host=host, port=server.port, _server=server, _thread=thread)
