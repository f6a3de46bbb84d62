"""Partner Center's documented error envelope, and the one exception the simulator raises.

Every 4xx/5xx the simulator produces itself has the body of the Partner API error page
(spec §1 "Response codes and error body")::

    {"error": {"code": "invalidRequest", "message": "...", "target": "referral"}}

``code`` is one of the documented values (``accessDenied``, ``generalException``,
``invalidRequest``, ``itemNotFound``, ``preconditionFailed``, ``resourceModified``,
``serviceNotAvailable``, ``unauthenticated``); ``message`` is at most 1,024 characters.
Throttling (429) has another shape and comes from :mod:`sandbox.faults`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ApiError", "error_body"]

MAX_MESSAGE = 1024


def error_body(code: str, message: str, target: str = "referral") -> dict[str, Any]:
    """The documented ``{"error": {...}}`` body."""
    return {"error": {"code": code, "message": message[:MAX_MESSAGE], "target": target}}


class ApiError(Exception):
    """An answer other than success: the HTTP status, the envelope's code and message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        target: str = "referral",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.target = target
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.target)

    @classmethod
    def invalid(cls, message: str, *, target: str = "referral") -> ApiError:
        """400 ``invalidRequest``: the body or the query is wrong."""
        return cls(400, "invalidRequest", message, target=target)

    @classmethod
    def not_found(cls, referral_id: str) -> ApiError:
        return cls(404, "itemNotFound", f"Referral {referral_id} was not found.")
