"""HTTP/1.1 keep-alive for the sandbox's servers, on werkzeug's request handler.

werkzeug's development server answers every request with ``Connection: close``: its handler
does not know where a request body ends, so it reads whatever is left on the socket after a
reply. Every call then paid a new TCP and TLS handshake on both sides. :class:`KeepAliveHandler`
replaces that one method (``run_wsgi``): the app reads the body through a stream that ends at
``Content-Length``, the unread rest is read and dropped after the reply (so the next request
line is where it should be), and the reply is framed by its ``Content-Length`` or chunked.

A connection is closed after a reply when

- the client asks (``Connection: close``, or anything but HTTP/1.1),
- the request body was chunked (its end is not looked for), or could not be read to its end,
- the app failed, or dropped the connection itself (the fault injector's ``reset`` and
  ``timeout``),
- the server is stopping (:class:`Connections`).

A connection that waits :data:`IDLE_TIMEOUT_S` for its next request is closed. When a server
stops, the connections waiting for a request are closed at once (a request that arrives on
one is not answered), and those serving one are closed after their reply.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import socket
import ssl
import threading
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import InternalServerError
from werkzeug.serving import WSGIRequestHandler
from werkzeug.wsgi import LimitedStream

from sandbox.wsgi import Environ, Headers

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from sandbox.wsgi import WSGIApp

    _ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]

__all__ = ["IDLE_TIMEOUT_S", "Connections", "KeepAliveHandler"]

IDLE_TIMEOUT_S = 60.0
"""How long a kept-alive connection may wait for its next request (also any read or write)."""

_DROPPED = (ConnectionError, TimeoutError, ssl.SSLError)
"""What a client gone (or dropped by a fault) raises: no reply can be sent, close."""

logger = logging.getLogger("sandbox.http")


class _State(enum.Enum):
    WAITING = "waiting"  # for a request line
    SERVING = "serving"


class Connections:
    """The open connections of one server and what each is doing; :meth:`stop` ends them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[socket.socket, _State] = {}
        self._stopping = False

    @property
    def stopping(self) -> bool:
        return self._stopping

    def waiting(self, sock: socket.socket) -> bool:
        """``sock`` is about to wait for a request; ``False``: the server stops, close it."""
        return self._set(sock, _State.WAITING)

    def serving(self, sock: socket.socket) -> bool:
        """A request came on ``sock``; ``False``: the server stops, do not answer it."""
        return self._set(sock, _State.SERVING)

    def closed(self, sock: socket.socket) -> None:
        with self._lock:
            self._states.pop(sock, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._states)

    def stop(self) -> None:
        """Refuse further requests; close every connection waiting for one."""
        with self._lock:
            self._stopping = True
            waiting = [sock for sock, state in self._states.items() if state is _State.WAITING]
        for sock in waiting:
            # socket.socket's shutdown, not SSLSocket's: that one drops the TLS object under
            # the thread blocked reading it; this one just ends the read (EOF)
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def _set(self, sock: socket.socket, state: _State) -> bool:
        with self._lock:
            if self._stopping:
                return False
            self._states[sock] = state
            return True


class KeepAliveHandler(WSGIRequestHandler):
    """werkzeug's handler, keeping the connection open between requests (module docstring).

    The server must have a ``connections`` attribute (:class:`Connections`).
    """

    protocol_version = "HTTP/1.1"
    _idle = False  # waiting for a request line (a timeout then is the idle timeout)

    def handle_one_request(self) -> None:
        if not self._connections.waiting(self.connection):
            self.close_connection = True
            return
        self._idle = True
        super().handle_one_request()

    def log_error(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's name
        if self._idle and format.startswith("Request timed out"):
            # a kept-alive connection no request came on: closed, as planned, not an error
            logger.debug("keepalive_idle_closed peer=%s", self.client_address)
            return
        super().log_error(format, *args)

    def run_wsgi(self) -> None:
        self._idle = False
        if not self._connections.serving(self.connection):
            self.close_connection = True
            return
        if self.request_version != "HTTP/1.1":
            self.close_connection = True
        if self.headers.get("Expect", "").lower().strip(" \t") == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.environ = environ = self.make_environ()
        body = self._bounded_body(environ)
        reply = _Reply(self, environ)
        try:
            reply.run(self.server.app)
        except _DROPPED as exc:
            self.close_connection = True
            self.connection_dropped(exc, environ)
        except Exception:  # any app failure is a 500 (if nothing was sent yet), as werkzeug does
            self.close_connection = True
            logger.exception("request_failed path=%s", environ.get("PATH_INFO"))
            if not reply.sent:
                with contextlib.suppress(Exception):
                    _Reply(self, environ).run(InternalServerError())
        if not self.close_connection and not _drained(body):
            self.close_connection = True

    @property
    def closing(self) -> bool:
        """Whether the connection closes after this reply (known when the headers go out)."""
        return self.close_connection or self._connections.stopping

    @property
    def _connections(self) -> Connections:
        connections: Connections = getattr(self.server, "connections")  # noqa: B009 - see class doc
        return connections

    def _bounded_body(self, environ: Environ) -> LimitedStream | None:
        """Give the app a body that ends at ``Content-Length``; ``None`` if it cannot be (the
        connection is then closed after the reply)."""
        if environ.get("wsgi.input_terminated"):  # chunked: werkzeug's reader, left as it is
            self.close_connection = True
            return None
        length = environ.get("CONTENT_LENGTH") or "0"
        if not length.isdigit():
            self.close_connection = True
            return None
        stream = LimitedStream(environ["wsgi.input"], int(length))  # self.rfile
        environ["wsgi.input"] = stream
        return stream


def _drained(body: LimitedStream | None) -> bool:
    """Read what the app left of the body; ``False`` if it could not be (then close)."""
    if body is None:
        return False
    try:
        body.exhaust()
    except Exception:  # noqa: BLE001 - a client gone mid-body: the connection just closes
        return False
    return True


class _Reply:
    """One response: the status line and headers on the first write, the body framed."""

    def __init__(self, handler: KeepAliveHandler, environ: Environ) -> None:
        self._handler = handler
        self._environ = environ
        self._status: str | None = None
        self._headers: Headers = []
        self.sent = False
        self._chunked = False

    def run(self, app: WSGIApp | Callable[..., Any]) -> None:
        result = app(self._environ, self._start_response)
        try:
            for data in result:
                self._write(data)
            if not self.sent:
                self._write(b"")
            if self._chunked:
                self._handler.wfile.write(b"0\r\n\r\n")
        finally:
            close = getattr(result, "close", None)
            if callable(close):
                close()

    def _start_response(
        self, status: str, headers: Headers, exc_info: _ExcInfo | None = None
    ) -> Callable[[bytes], None]:
        if exc_info:
            if self.sent:
                raise exc_info[1].with_traceback(exc_info[2])
        elif self._status is not None:
            raise AssertionError("Headers already set")
        self._status, self._headers = status, list(headers)
        return self._write

    def _write(self, data: bytes) -> None:
        handler = self._handler
        if not self.sent:
            self._send_head()
        if data:
            if self._chunked:
                handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            else:
                handler.wfile.write(data)
        handler.wfile.flush()

    def _send_head(self) -> None:
        handler = self._handler
        if self._status is None:
            raise AssertionError("write() before start_response")
        self.sent = True
        code_text, _, message = self._status.partition(" ")
        code = int(code_text)
        handler.send_response(code, message)
        names = set()
        for name, value in self._headers:
            handler.send_header(name, value)
            names.add(name.lower())
        bodiless = (
            self._environ["REQUEST_METHOD"] == "HEAD" or 100 <= code < 200 or code in (204, 304)
        )
        if "content-length" not in names and not bodiless:
            self._chunked = True
            handler.send_header("Transfer-Encoding", "chunked")
        if handler.closing:
            handler.send_header("Connection", "close")  # also sets close_connection
        handler.end_headers()
