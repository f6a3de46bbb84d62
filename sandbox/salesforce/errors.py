"""Salesforce's error shapes, and the exceptions the simulator raises to produce them.

A REST call that fails answers a **JSON array** (crm-apis §A7)::

    [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]

with ``fields`` when the error is about fields. Inside sObject Collections results each
record's ``errors`` use ``statusCode`` instead of ``errorCode`` (checked against public
samples of collection and composite replies, e.g. ``ALL_OR_NONE_OPERATION_ROLLED_BACK`` with
"Record rolled back because not all records were valid and the request was using AllOrNone
header")::

    {"id": null, "success": false, "errors": [{"statusCode": "DUPLICATE_VALUE", "message": "…",
     "fields": []}], "created": false}

The OAuth token endpoint has its own shape (``{"error": …, "error_description": …}``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sandbox.wsgi import Headers

__all__ = [
    "ROLLED_BACK",
    "ApiError",
    "OAuthError",
    "RecordError",
    "RecordRejected",
    "salesforce_responder",
]


@dataclass(frozen=True, slots=True)
class RecordError:
    """One error about one record: Salesforce's status code, message and fields."""

    code: str
    message: str
    fields: tuple[str, ...] = ()

    def rest(self) -> dict[str, Any]:
        """As an element of a REST error array (``errorCode``)."""
        return {"message": self.message, "errorCode": self.code, "fields": list(self.fields)}

    def collection(self) -> dict[str, Any]:
        """As an element of a collection result's ``errors`` (``statusCode``)."""
        return {"statusCode": self.code, "message": self.message, "fields": list(self.fields)}


ROLLED_BACK = RecordError(
    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "Record rolled back because not all records were valid and the request was using "
    "AllOrNone header",
)


class RecordRejected(Exception):
    """A write the org refused: one or more :class:`RecordError` (answered with 400)."""

    def __init__(self, *errors: RecordError) -> None:
        super().__init__("; ".join(e.message for e in errors))
        self.errors = errors


class ApiError(Exception):
    """A whole request refused: HTTP status and the REST error array (or any JSON body)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        fields: tuple[str, ...] = (),
        headers: dict[str, str] | None = None,
        body: object = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields
        self.headers = dict(headers or {})
        self._body = body

    def body(self) -> object:
        if self._body is not None:
            return self._body
        entry: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields:
            entry["fields"] = list(self.fields)
        return [entry]

    @classmethod
    def rejected(cls, exc: RecordRejected) -> ApiError:
        return cls(400, "", "", body=[e.rest() for e in exc.errors])

    @classmethod
    def not_found(cls, message: str = "The requested resource does not exist") -> ApiError:
        return cls(404, "NOT_FOUND", message)

    @classmethod
    def malformed(cls, code: str, message: str) -> ApiError:
        return cls(400, code, message)


@dataclass(slots=True)
class OAuthError(Exception):
    """A token endpoint refusal: ``{"error": …, "error_description": …}``."""

    error: str
    description: str
    status: int = 400
    extra: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "error_description": self.description}


_QUOTA_BODY = ("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")

_FAULT_BODIES = {
    429: ("REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded."),
    500: (
        "UNKNOWN_EXCEPTION",
        (
            "An unexpected error occurred. Please include this ErrorId if you contact support: "
            "1234567890-12345 (-1234567890)"
        ),
    ),
    503: ("SERVER_UNAVAILABLE", "Server temporarily unavailable. Please retry your request."),
}


def salesforce_responder(kind: str, retry_after: float | None) -> tuple[int, Headers, bytes]:
    """Injected faults in Salesforce's error-array shape (for :mod:`sandbox.faults`).

    ``quota`` is the org's spent daily quota (403 ``REQUEST_LIMIT_EXCEEDED`` "TotalRequests
    Limit exceeded.", without ``Retry-After``: Salesforce sends none); ``concurrency`` is the
    concurrent long-running request limit (403, same code, "ConcurrentPerOrgLongTxn ...").
    """
    headers: Headers = [("Content-Type", "application/json;charset=UTF-8")]
    if kind == "quota":
        status, (code, message) = 403, _QUOTA_BODY
        retry_after = None
    elif kind == "concurrency":
        status, (code, message) = 403, _FAULT_BODIES[429]
    else:
        status = int(kind)
        code, message = _FAULT_BODIES.get(status, ("UNKNOWN_EXCEPTION", "Unexpected error"))
    if retry_after is not None:
        seconds = int(retry_after) if float(retry_after).is_integer() else retry_after
        headers.append(("Retry-After", str(seconds)))
    body = json.dumps([{"message": message, "errorCode": code}]).encode()
    return status, headers, body
