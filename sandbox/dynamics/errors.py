"""Dataverse's error envelope, its codes, and the exception the simulator raises to send one.

Every failing Web API call answers ``{"error": {"code": "0x…", "message": "…"}}`` (crm-apis §C7);
``code`` is unrelated to the HTTP status and is sometimes empty (the conditional-upsert
replies of §C2). The codes used here, and where they come from:

================  ================================================  ============================
code              meaning                                           source
================  ================================================  ============================
0x80040217        ObjectDoesNotExist (row by id, lookup target)     brief, §C7 (404)
0x80060891        no row with these alternate key values            third-party Dataverse client
0x80040237        DuplicateRecord: key value already used (412)     brief; §C7 412 DuplicateRecord
0x80060882        ConcurrencyVersionMismatch (If-Match etag, 412)   §C2 message, §C7 name
0x80044331        validation (required, length, type)               §C7 example, batch doc
0x8004431A        option set value outside the valid range          third-party Dataverse client
0x80040203        InvalidArgument (actions, state changes)          third-party Dataverse client
0x8004022e        the row is read-only (closed opportunity)         third-party Dataverse client
0x80048d19        bad payload (``_x_value`` written directly)       third-party Dataverse client
0x80060888        OData parse error (unknown property, bad query)   the Web API's OData reader
0x80044352        ExpiredVersionStamp (delta token too old)         [UNVERIFIED] from memory
0x8004A100/101    InvalidAuthTicket / ExpiredAuthTicket (401)       §C7 names; hex [UNVERIFIED]
0x80072322/21/26  service protection (429)                          §C6
================  ================================================  ============================
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from sandbox.wsgi import Headers

__all__ = [
    "BAD_PAYLOAD",
    "CONCURRENCY_MISMATCH",
    "DUPLICATE_RECORD",
    "EXPIRED_VERSION_STAMP",
    "INVALID_ARGUMENT",
    "KEY_NOT_FOUND",
    "NOT_FOUND",
    "ODATA",
    "OPTION_OUT_OF_RANGE",
    "READ_ONLY",
    "VALIDATION",
    "DataverseError",
    "dataverse_responder",
]

NOT_FOUND = "0x80040217"
KEY_NOT_FOUND = "0x80060891"
DUPLICATE_RECORD = "0x80040237"
CONCURRENCY_MISMATCH = "0x80060882"
VALIDATION = "0x80044331"
OPTION_OUT_OF_RANGE = "0x8004431A"
INVALID_ARGUMENT = "0x80040203"
READ_ONLY = "0x8004022e"
BAD_PAYLOAD = "0x80048d19"
ODATA = "0x80060888"
EXPIRED_VERSION_STAMP = "0x80044352"
INVALID_AUTH_TICKET = "0x8004A100"
EXPIRED_AUTH_TICKET = "0x8004A101"


class DataverseError(Exception):
    """A refused request: HTTP status, envelope code and message (and extra headers)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        empty_body: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.empty_body = empty_body

    def body(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}

    @classmethod
    def odata(cls, message: str, status: int = 400) -> DataverseError:
        return cls(status, ODATA, message)

    @classmethod
    def not_found(cls, entity: str, row_id: str) -> DataverseError:
        return cls(404, NOT_FOUND, f"{entity} With Id = {row_id} Does Not Exist")

    @classmethod
    def validation(cls, message: str) -> DataverseError:
        return cls(400, VALIDATION, f"A validation error occurred.  {message}")

    @classmethod
    def unknown_property(cls, name: str, entity: str) -> DataverseError:
        return cls.odata(
            f"The property '{name}' does not exist on type 'Microsoft.Dynamics.CRM.{entity}'. "
            "Make sure to only use property names that are defined by the type."
        )

    @classmethod
    def no_such_column(cls, name: str, entity: str) -> DataverseError:
        return cls.odata(
            f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{entity}'."
        )


_CONCURRENCY = ("0x80072326", "Number of concurrent requests exceeded the limit of 52.")

_FAULT_MESSAGES = {
    429: (
        "0x80072322",
        "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
    ),
    500: ("0x80040216", "An unexpected error occurred."),
    503: ("0x80040216", "The service is temporarily unavailable. Please retry later."),
}


def dataverse_responder(kind: str, retry_after: float | None) -> tuple[int, Headers, bytes]:
    """Injected faults in Dataverse's envelope (for :mod:`sandbox.faults`); a 429 (and
    ``quota``) looks like the request-count service protection limit, ``concurrency`` like the
    52-concurrent-requests one (crm-apis §C6), both with ``Retry-After``."""
    if kind == "concurrency":
        status, (code, message) = 429, _CONCURRENCY
    else:
        status = 429 if kind == "quota" else int(kind)
        code, message = _FAULT_MESSAGES.get(status, ("0x80040216", "An unexpected error occurred."))
    headers: Headers = [
        ("Content-Type", "application/json; odata.metadata=minimal"),
        ("OData-Version", "4.0"),
    ]
    if retry_after is not None:
        seconds = int(retry_after) if float(retry_after).is_integer() else retry_after
        headers.append(("Retry-After", str(seconds)))
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return status, headers, body
