"""The one error tree of Referral Sync, grouped by how the caller recovers.

::

    ReferralSyncError
    ├── ConfigError        stop at start-up; lists every problem (file, key, what is wrong)
    ├── AuthError          credentials refused even after one token refresh; stop this connection
    ├── TransientError     back off and retry (the request layer does it, nobody else)
    │   ├── RateLimited    the server said when to come back: ``retry_after`` seconds
    │   ├── TokenRefused   a token renewed a moment ago was refused too (revoked early?):
    │   │                  the next attempt renews again; ``AuthError`` if every attempt does
    │   └── OutcomeUnknown a create failed in a way that may have made it: not re-sent; the
    │                      next cycle finds what exists and creates only what does not
    ├── PermanentError     retrying cannot help
    │   ├── RecordRejected the server refused this one record: dead-letter it, go on
    │   └── ConflictError  a concurrent change made our update invalid (412 re-read, rule says no)
    │       └── PreconditionFailed  the eTag we sent is stale (HTTP 412): re-read, re-decide
    ├── MappingError       this record cannot be mapped (names field and value): dead-letter
    └── StateError         the state store is unusable: halt

Adapters translate vendor errors into this tree through one classifier table each; nothing
above the adapters sees ``requests``, ``msal`` or ``simple_salesforce`` exceptions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


class ReferralSyncError(Exception):
    """Base of every error Referral Sync raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with a configuration or mapping file."""

    source: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.key}: {self.message}"


class ConfigError(ReferralSyncError):
    """The configuration cannot be used; every problem found is listed, not only the first."""

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        self.problems: tuple[ConfigProblem, ...] = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} configuration problem(s):\n{lines}")


class AuthError(ReferralSyncError):
    """Credentials were refused, after one refresh where a refresh was possible."""


class TransientError(ReferralSyncError):
    """A fault that may pass: timeouts, resets, 5xx. Retried with backoff at the request layer."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(TransientError):
    """The server asked us to slow down and (usually) said for how long."""


class TokenRefused(TransientError):
    """A token issued after a 401 was refused too (HTTP 401 again). A token revoked early can
    be, so the request is tried again with yet another one; when every attempt of the request
    ends so, the retry layer raises :class:`AuthError` (credentials really refused)."""


class OutcomeUnknown(TransientError):
    """A request that is not safe to repeat (a create) failed after it may have been done (a
    read timeout, a reset, a 5xx): sending it again could make a second record. Not retried at
    the request; the cycle fails, and the next one finds what exists before creating."""


def outcome_unknown(error: TransientError, *, idempotent: bool) -> TransientError:
    """``error`` as it should reach the retry layer: unchanged for a request that is safe to
    repeat or one the server refused before doing anything (it said when to come back, or the
    connection was never made), else :class:`OutcomeUnknown`."""
    if idempotent or error.retry_after is not None or isinstance(error, RateLimited):
        return error
    if _never_connected(error):
        return error
    unknown = OutcomeUnknown(
        f"{error}; not sent again: it may have been done (the next cycle looks first)"
    )
    unknown.__cause__ = error
    return unknown


def _never_connected(error: BaseException) -> bool:
    """A connect timeout or refusal in the cause chain (by name: no I/O library here)."""
    seen: BaseException | None = error
    while seen is not None:
        if type(seen).__name__ in ("ConnectTimeout", "NewConnectionError"):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class PermanentError(ReferralSyncError):
    """Retrying the same request cannot succeed."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class RecordRejected(PermanentError):
    """The server refused one record (validation, invalid transition): dead-letter it."""


class ConflictError(PermanentError):
    """The record changed under us and our update no longer applies to what is there now."""


class PreconditionFailed(ConflictError):
    """The record's eTag no longer matches ours (HTTP 412): re-read it and decide again."""


class MappingError(ReferralSyncError):
    """A record cannot be turned into the canonical model or mapped to the other side."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"{field}: {reason} (got {shown})")


class StateError(ReferralSyncError):
    """The state store cannot be read or written: the daemon halts rather than lose track."""
