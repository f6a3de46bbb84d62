"""``POST $batch`` (crm-apis §C3): multipart/mixed in, multipart/mixed out.

Parsing follows the documented shape: the boundary comes from the request's ``Content-Type``;
each part is ``Content-Type: application/http`` + ``Content-Transfer-Encoding: binary`` and an
HTTP request (request line with an absolute URL, ``/api/data/v9.2/…`` or ``$n``; headers; a
blank line; the body), or a change set (``multipart/mixed; boundary=changeset_…``) of such
parts. Lines may end in CRLF (the standard) or LF. At most 1000 requests per batch; change sets
may not contain GET or other change sets; ``$n`` refers to the entity created by the change set
part with ``Content-ID: n`` and must be declared first ("Content-ID Reference: '$1' does not
exist in the batch context.", 400).

Execution: parts run in order; a change set runs in one transaction and, if one of its requests
fails, is rolled back and answered by that request's error alone (an ``application/http`` part,
not a ``changesetresponse``). Without ``Prefer: odata.continue-on-error`` the batch stops at the
first failure and the whole response is that error: the outer status is the failing request's
status and the body holds only the failing part (spec §C3, the batch doc's "Handling errors"
example). With it, the outer status is 200 and every part is answered.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from http import HTTPStatus

from sandbox.dynamics.errors import DataverseError

__all__ = ["MAX_REQUESTS", "BatchPart", "ChangeSet", "InnerResponse", "parse_batch", "run_batch"]

MAX_REQUESTS = 1000
CRLF = "\r\n"
_BOUNDARY_RE = re.compile(r'boundary=(?:"([^"]+)"|([^\s;]+))', re.IGNORECASE)
_REF_RE = re.compile(r"^\$([A-Za-z0-9_-]+)")


@dataclass(slots=True)
class BatchPart:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    content_id: str | None = None


@dataclass(slots=True)
class ChangeSet:
    parts: list[BatchPart] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class InnerResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _boundary(content_type: str) -> str:
    if not content_type.lower().startswith("multipart/mixed"):
        raise DataverseError.odata(
            f"The content type '{content_type}' is not a valid multipart/mixed batch content type."
        )
    match = _BOUNDARY_RE.search(content_type)
    if match is None:
        raise DataverseError.odata("The batch request has no boundary in its Content-Type.")
    return match.group(1) or match.group(2)


def _split(text: str, boundary: str) -> list[str]:
    pieces = text.split(f"--{boundary}")
    parts: list[str] = []
    for piece in pieces[1:]:
        if piece.startswith("--"):
            return parts
        body = piece[2:] if piece.startswith(CRLF) else piece.removeprefix("\n")
        parts.append(body.removesuffix(CRLF).removesuffix("\n"))
    raise DataverseError.odata(f"The batch is missing its closing delimiter '--{boundary}--'.")


def _headers_and_body(text: str) -> tuple[dict[str, str], str]:
    normal = text.replace(CRLF, "\n")
    head, _, body = normal.partition("\n\n")
    headers: dict[str, str] = {}
    for line in head.split("\n"):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise DataverseError.odata(f"Invalid header line '{line}' in the batch.")
        headers[name.strip().lower()] = value.strip()
    return headers, body


def _request(part_headers: dict[str, str], text: str) -> BatchPart:
    if part_headers.get("content-type", "").split(";")[0].strip().lower() != "application/http":
        raise DataverseError.odata("Each batch part must have Content-Type: application/http.")
    if part_headers.get("content-transfer-encoding", "").lower() != "binary":
        raise DataverseError.odata("Each batch part must have Content-Transfer-Encoding: binary.")
    request_line, _, rest = text.replace(CRLF, "\n").lstrip("\n").partition("\n")
    words = request_line.split()
    if len(words) != 3 or not words[2].startswith("HTTP/"):
        raise DataverseError.odata(f"Invalid request line '{request_line}' in the batch.")
    headers: dict[str, str] = {}
    body = rest[1:]
    if not rest.startswith("\n") and rest.strip():
        headers, body = _headers_and_body(rest)
    return BatchPart(
        words[0].upper(), words[1], headers, body.strip().encode(), part_headers.get("content-id")
    )


def parse_batch(content_type: str, body: bytes) -> list[BatchPart | ChangeSet]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise DataverseError.odata("The batch body is not valid UTF-8.") from None
    items: list[BatchPart | ChangeSet] = []
    count = 0
    for raw in _split(text, _boundary(content_type)):
        headers, rest = _headers_and_body(raw)
        kind = headers.get("content-type", "")
        if kind.lower().startswith("multipart/mixed"):
            changeset = ChangeSet()
            for inner in _split(rest, _boundary(kind)):
                inner_headers, inner_rest = _headers_and_body(inner)
                if inner_headers.get("content-type", "").lower().startswith("multipart/"):
                    raise DataverseError.odata("Change sets cannot be nested.")
                part = _request(inner_headers, inner_rest)
                if part.method == "GET":
                    raise DataverseError.odata("GET requests are not allowed in a change set.")
                changeset.parts.append(part)
            count += len(changeset.parts)
            items.append(changeset)
        else:
            items.append(_request(headers, rest))
            count += 1
    if count > MAX_REQUESTS:
        raise DataverseError.odata(
            f"The number of requests in the batch is {count}, more than the maximum of "
            f"{MAX_REQUESTS}."
        )
    return items


class _Rollback(Exception):
    def __init__(self, response: InnerResponse) -> None:
        super().__init__("change set rolled back")
        self.response = response


def _resolve_refs(part: BatchPart, created: dict[str, str]) -> BatchPart:
    def url_for(ref: str) -> str:
        if ref not in created:
            raise DataverseError(
                400, "", f"Content-ID Reference: '${ref}' does not exist in the batch context."
            )
        return created[ref]

    url = part.url
    match = _REF_RE.match(url)
    if match:
        url = url_for(match.group(1)) + url[match.end() :]
    body = part.body
    if body:
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, dict):
            for key, value in data.items():
                if key.endswith(("@odata.bind", "@odata.id")) and isinstance(value, str):
                    ref = _REF_RE.fullmatch(value)
                    if ref:
                        data[key] = url_for(ref.group(1))
            body = json.dumps(data).encode()
    return BatchPart(part.method, url, part.headers, body, part.content_id)


def _error(exc: DataverseError) -> InnerResponse:
    return InnerResponse(
        exc.status,
        [("Content-Type", "application/json; odata.metadata=minimal")],
        json.dumps(exc.body()).encode(),
    )


def _roll_back(response: InnerResponse) -> None:
    raise _Rollback(response)


def _run_changeset(
    item: ChangeSet,
    execute: Callable[[BatchPart], InnerResponse],
    atomic: Callable[[], AbstractContextManager[None]],
) -> list[tuple[InnerResponse, str | None]]:
    """The change set's answers, or :class:`_Rollback` with the failing answer (undone)."""
    created: dict[str, str] = {}
    answers: list[tuple[InnerResponse, str | None]] = []
    with atomic():
        for part in item.parts:
            response = _execute(execute, _resolve_refs_or_error(part, created))
            if response.status >= 400:
                _roll_back(response)
            entity = {k.lower(): v for k, v in response.headers}.get("odata-entityid")
            if part.content_id and entity:
                created[part.content_id] = entity
            answers.append((response, part.content_id))
    return answers


def _resolve_refs_or_error(part: BatchPart, created: dict[str, str]) -> BatchPart | InnerResponse:
    try:
        return _resolve_refs(part, created)
    except DataverseError as exc:
        return _error(exc)


def _execute(
    execute: Callable[[BatchPart], InnerResponse], part: BatchPart | InnerResponse
) -> InnerResponse:
    if isinstance(part, InnerResponse):
        return part
    try:
        return execute(part)
    except DataverseError as exc:
        return _error(exc)


def run_batch(
    items: list[BatchPart | ChangeSet],
    execute: Callable[[BatchPart], InnerResponse],
    atomic: Callable[[], AbstractContextManager[None]],
    *,
    continue_on_error: bool,
) -> tuple[int, str, bytes]:
    """``(status, content type, body)`` of the batch response."""
    boundary = f"batchresponse_{uuid.uuid4()}"
    chunks: list[str] = []
    for item in items:
        failed: InnerResponse | None = None
        if isinstance(item, BatchPart):
            response = _execute(execute, _resolve_refs_or_error(item, {}))
            if response.status >= 400:
                failed = response
            else:
                chunks.append(_part(response, None))
        else:
            try:
                answers = _run_changeset(item, execute, atomic)
            except _Rollback as rolled_back:
                failed = rolled_back.response
            else:
                inner = f"changesetresponse_{uuid.uuid4()}"
                body = _join(inner, [_part(r, cid) for r, cid in answers]).decode()
                chunks.append(f"Content-Type: {_type(inner)}{CRLF}{CRLF}{body}")
        if failed is not None:
            if not continue_on_error:
                return failed.status, _type(boundary), _join(boundary, [_part(failed, None)])
            chunks.append(_part(failed, None))
    return 200, _type(boundary), _join(boundary, chunks)


def _type(boundary: str) -> str:
    return f"multipart/mixed; boundary={boundary}"


def _part(response: InnerResponse, content_id: str | None) -> str:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id:
        lines.append(f"Content-ID: {content_id}")
    lines += [
        "",
        f"HTTP/1.1 {response.status} {HTTPStatus(response.status).phrase}",
        "OData-Version: 4.0",
    ]
    lines += [f"{k}: {v}" for k, v in response.headers if k.lower() not in _SKIP]
    lines += ["", response.body.decode()]
    return CRLF.join(lines)


_SKIP = frozenset({"content-length", "odata-version"})


def _join(boundary: str, chunks: list[str]) -> bytes:
    out: Iterator[str] = (f"--{boundary}{CRLF}{chunk}{CRLF}" for chunk in chunks)
    return ("".join(out) + f"--{boundary}--{CRLF}").encode()
