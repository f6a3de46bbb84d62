"""Typing and small helpers for the sandbox's plain-WSGI simulators."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeAlias

Environ: TypeAlias = dict[str, Any]
StartResponse: TypeAlias = Callable[..., Any]
WSGIApp: TypeAlias = Callable[[Environ, StartResponse], Iterable[bytes]]
Headers: TypeAlias = list[tuple[str, str]]

REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    412: "Precondition Failed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def status_line(status: int) -> str:
    return f"{status} {REASONS.get(status, 'Unknown')}"


def json_response(
    start_response: StartResponse,
    status: int,
    body: Mapping[str, Any] | list[Any] | None,
    headers: Mapping[str, str] | None = None,
) -> list[bytes]:
    """Send ``body`` as JSON (``None`` = empty body) and return the WSGI iterable."""
    data = b"" if body is None else json.dumps(body).encode()
    out: Headers = [("Content-Length", str(len(data)))]
    if body is not None:
        out.append(("Content-Type", "application/json; charset=utf-8"))
    out.extend((headers or {}).items())
    start_response(status_line(status), out)
    return [data]
