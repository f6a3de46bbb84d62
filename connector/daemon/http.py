"""The daemon's ops HTTP server: metrics, liveness, readiness, the status page, webhooks.

=================================  ====  =====================================================
GET  /metrics                      200   Prometheus text format
GET  /healthz                      200   ``{"status": "ok"}`` while the process serves (liveness)
GET  /readyz                       200   ``{"ready": true, "connections": {name: "ready"}}``
                                   503   ``{"ready": false, "connections": {name: reason}}``
GET  /status                       200   the status page (HTML, refreshes itself)
GET  /status.json                  200   the same data as JSON
POST /webhooks/partner-center/C    ...   connection C's webhook handler's response (404: none)
POST /webhooks/partner-center      ...   the same, when exactly one connection takes webhooks
=================================  ====  =====================================================

Each connection registers its own URL with its own Partner Center tenant (``referral-sync
webhooks register``), so an event is synced on the connection it belongs to and nowhere else.

Anything else is a 404 with a JSON body; a known path with the wrong method is a 405 naming the
allowed ones. A handler that raises gives a 500 (logged); a health source that raises makes
``/readyz`` answer 503. Every response says ``Cache-Control: no-store``.

Plain HTTP: it listens on loopback by default (a sidecar or Prometheus on the same host, or a
port published by the container); put TLS in front of it before exposing it any further.
:class:`StatusServer` runs werkzeug's threaded server in a daemon thread, the way the sandbox
runs its simulators: bound first (a taken port raises ``OSError``, werkzeug alone would exit the
process), access log to the ``connector.daemon.http`` logger at debug level.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeAlias
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import structlog
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler
from werkzeug.wrappers import Request, Response

from connector.daemon import status_data, status_page
from connector.daemon.health import HealthSource
from connector.observe.metrics import CONTENT_TYPE, Metrics
from connector.ports import Clock
from connector.webhooks.setup import WEBHOOK_PATH, webhook_path

__all__ = [
    "MAX_BODY_BYTES",
    "WEBHOOK_PATH",
    "StatusServer",
    "WSGIApp",
    "Webhook",
    "make_app",
    "webhook_path",
]

WSGIApp: TypeAlias = WSGIApplication
Webhook: TypeAlias = Callable[[Request], Response]

MAX_BODY_BYTES = 1 << 20  # a webhook notification is small; refuse anything near this
IDLE_TIMEOUT_S = 30.0  # a kept-alive or slow client gives its worker thread back after this
HTML = "text/html; charset=utf-8"
# Inline CSS only: even a value that escaped escaping could not run a script on this page.
PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

_access_log = logging.getLogger("connector.daemon.http")


class _Request(Request):
    max_content_length = MAX_BODY_BYTES


def make_app(
    health: HealthSource,
    metrics: Metrics,
    *,
    clock: Clock,
    webhooks: Mapping[str, Webhook] | None = None,
) -> WSGIApp:
    """The ops WSGI app over ``health`` and ``metrics`` (see the module docstring), with one
    webhook handler per connection name in ``webhooks``."""
    return _OpsApp(health, metrics, clock, dict(webhooks or {}))


class _OpsApp:
    def __init__(
        self, health: HealthSource, metrics: Metrics, clock: Clock, webhooks: dict[str, Webhook]
    ) -> None:
        self._health = health
        self._metrics = metrics
        self._clock = clock
        self._log = structlog.get_logger("connector.daemon.http")
        routes: dict[str, Callable[[Request], Response]] = {
            "/metrics": self._get_metrics,
            "/healthz": self._get_healthz,
            "/readyz": self._get_readyz,
            "/status": self._get_status,
            "/status.json": self._get_status_json,
        }
        rules = [Rule(path, endpoint=path, methods=["GET"]) for path in routes]
        for name, handler in webhooks.items():
            routes[webhook_path(name)] = handler
            rules.append(Rule(webhook_path(name), endpoint=webhook_path(name), methods=["POST"]))
        if len(webhooks) == 1:
            routes[WEBHOOK_PATH] = next(iter(webhooks.values()))
            rules.append(Rule(WEBHOOK_PATH, endpoint=WEBHOOK_PATH, methods=["POST"]))
        self._routes = routes
        self._map = Map(rules)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        response = self._dispatch(_Request(environ))
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        try:
            endpoint, _ = self._map.bind_to_environ(request.environ).match()
        except NotFound:
            return _json(404, {"error": "not found"})
        except MethodNotAllowed as exc:
            allowed = sorted(exc.valid_methods or ())
            response = _json(405, {"error": "method not allowed", "allowed": allowed})
            response.headers["Allow"] = ", ".join(allowed)
            return response
        except HTTPException as exc:
            return _json(exc.code or 400, {"error": exc.name.lower()})
        try:
            return self._routes[str(endpoint)](request)
        except HTTPException as exc:  # e.g. a webhook body over MAX_BODY_BYTES
            return _json(exc.code or 400, {"error": exc.name.lower()})
        except Exception as exc:  # noqa: BLE001 (one bad request must not take the server down)
            self._log.exception("ops_request_failed", path=request.path, error=type(exc).__name__)
            return _json(500, {"error": "internal error"})

    def _get_metrics(self, _: Request) -> Response:
        return Response(self._metrics.exposition(), status=200, content_type=CONTENT_TYPE)

    def _get_healthz(self, _: Request) -> Response:
        return _json(200, {"status": "ok"})

    def _get_readyz(self, _: Request) -> Response:
        try:
            connections = self._health.health()
        except Exception as exc:  # noqa: BLE001 (not knowing the health is not being ready)
            self._log.warning("health_unavailable", error=type(exc).__name__, detail=str(exc))
            return _json(
                503, {"ready": False, "error": f"health unavailable ({type(exc).__name__})"}
            )
        ready, reasons = status_data.readiness(connections, self._clock.now())
        body: dict[str, Any] = {"ready": ready, "connections": reasons}
        if not connections:
            body["error"] = "no connections"
        return _json(200 if ready else 503, body)

    def _get_status(self, _: Request) -> Response:
        page = status_page.render(self._health.health(), self._clock.now())
        response = Response(page, status=200, content_type=HTML)
        response.headers["Content-Security-Policy"] = PAGE_CSP
        return response

    def _get_status_json(self, _: Request) -> Response:
        return _json(200, status_data.as_json(self._health.health(), self._clock.now()))


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


class _QuietHandler(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so a Prometheus scrape reuses its connection
    timeout = IDLE_TIMEOUT_S

    def log(self, type: str, message: str, *args: object) -> None:  # noqa: A002 (werkzeug's name)
        level = logging.WARNING if type == "error" else logging.DEBUG
        _access_log.log(level, message.rstrip(), *args)


class StatusServer:
    """werkzeug's threaded server on host:port (127.0.0.1 and an OS-chosen port by default) in
    a background thread. ``start()`` raises ``OSError`` when the port cannot be bound."""

    def __init__(self, app: WSGIApp, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._app = app
        self._host = host.strip("[]")  # "[::1]" as written in a URL or --listen
        self._port = port
        self._server: ThreadedWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> StatusServer:
        if self._server is not None:
            raise RuntimeError("the status server is already running")
        sock = _bind(self._host, self._port)
        try:
            server = ThreadedWSGIServer(
                self._host,
                sock.getsockname()[1],
                self._app,
                handler=_QuietHandler,
                fd=sock.fileno(),
            )
        finally:
            sock.close()  # werkzeug works on a duplicate of the descriptor
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="referral-sync-http",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread
        _access_log.debug("status_server_started url=%s", self.url)
        return self

    @property
    def url(self) -> str:
        """``http://host:port`` (no trailing slash); only while running."""
        if self._server is None:
            raise RuntimeError("the status server is not running")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._server.port}"

    def stop(self) -> None:
        """Stop accepting, close the listening socket and wait for the server thread."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()
        self._server = self._thread = None

    def __enter__(self) -> StatusServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock
