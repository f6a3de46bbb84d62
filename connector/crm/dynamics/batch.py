"""``$batch`` bodies (crm-apis §C3): requests into ``multipart/mixed``, the response back out.

Only independent parts are written (no change sets): the batch is sent with
``Prefer: odata.continue-on-error``, so Dataverse answers every part, in order, each with its
own status, and one refused row never stops the others. A change set response in an answer is
flattened into its parts. No I/O here.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

CRLF = "\r\n"
MAX_PARTS = 1000
"""Dataverse refuses a batch of more than 1000 requests."""


@dataclass(frozen=True, slots=True)
class Part:
    """One request of a batch. ``url`` is absolute (the service root's)."""

    method: str
    url: str
    body: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PartResponse:
    """One answer of a batch: status, lower-cased headers, the JSON body (None if empty)."""

    status: int
    headers: Mapping[str, str]
    body: Any  # vendor JSON, checked where used


def encode(parts: Sequence[Part]) -> tuple[str, bytes]:
    """``(Content-Type, body)`` of a batch request holding ``parts``."""
    if not 0 < len(parts) <= MAX_PARTS:
        raise ValueError(f"a batch holds 1..{MAX_PARTS} requests, got {len(parts)}")
    boundary = f"batch_{uuid.uuid4()}"
    chunks: list[str] = []
    for part in parts:
        lines = [
            f"--{boundary}",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            "",
            f"{part.method} {part.url} HTTP/1.1",
        ]
        headers = dict(part.headers)
        payload = ""
        if part.body is not None:
            headers.setdefault("Content-Type", "application/json; charset=utf-8")
            payload = json.dumps(part.body, ensure_ascii=False, default=_json_default)
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines += ["", payload]
        chunks.append(CRLF.join(lines))
    text = CRLF.join(chunks) + f"{CRLF}--{boundary}--{CRLF}"
    return f"multipart/mixed; boundary={boundary}", text.encode("utf-8")


def decode(content_type: str, body: bytes) -> list[PartResponse]:
    """The answers of a batch response, in order (change sets flattened)."""
    boundary = _boundary(content_type)
    if boundary is None:
        raise ValueError(f"not a multipart batch response: {content_type!r}")
    answers: list[PartResponse] = []
    for chunk in _split(body.decode("utf-8", "replace"), boundary):
        headers, rest = _head(chunk)
        kind = headers.get("content-type", "")
        inner = _boundary(kind)
        if inner is not None:
            answers.extend(decode(kind, rest.encode("utf-8")))
        else:
            answers.append(_response(rest))
    return answers


def _boundary(content_type: str) -> str | None:
    if not content_type.lower().startswith("multipart/mixed"):
        return None
    for param in content_type.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.lower() == "boundary" and value:
            return value.strip('"')
    return None


def _split(text: str, boundary: str) -> list[str]:
    pieces = text.replace(CRLF, "\n").split(f"--{boundary}")
    chunks = []
    for piece in pieces[1:]:
        if piece.startswith("--"):
            break
        chunks.append(piece.removeprefix("\n").removesuffix("\n"))
    return chunks


def _head(text: str) -> tuple[dict[str, str], str]:
    head, _, rest = text.partition("\n\n")
    headers = {}
    for line in head.split("\n"):
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers, rest


def _response(text: str) -> PartResponse:
    status_line, _, rest = text.lstrip("\n").partition("\n")
    words = status_line.split(maxsplit=2)
    if len(words) < 2 or not words[0].startswith("HTTP/") or not words[1].isdigit():
        raise ValueError(f"a batch part has no status line: {status_line[:80]!r}")
    headers, payload = _head(rest) if not rest.startswith("\n") else ({}, rest[1:])
    payload = payload.strip()
    parsed: Any = None
    if payload:
        try:
            parsed = json.loads(payload, parse_float=Decimal)
        except ValueError:
            parsed = payload
    return PartResponse(int(words[1]), headers, parsed)


def _json_default(value: object) -> object:
    raise TypeError(f"not JSON-able in a batch part: {type(value).__name__}")
