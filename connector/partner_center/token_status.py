"""How long the Partner Center sign-in will last, read from the token cache without using it.

The daemon signs in to Partner Center as a user (App+User: device code, password or refresh
token); msal keeps the tokens in an owner-only cache file. The access token lasts about an hour
and is renewed with the refresh token, which Entra ID revokes after it has gone unused for a
while (90 days by default, ``REFRESH_IDLE_LIFETIME``; a tenant's policy can shorten it, and a
password change or an admin revokes it at once). So the figure that matters to ops is when the
refresh token was last renewed: ``refresh_idle_expires_at`` is then + 90 days, an upper bound.

Only times and flags are read: no token value leaves this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

__all__ = ["REFRESH_IDLE_LIFETIME", "TokenStatus", "read_token_status"]

REFRESH_IDLE_LIFETIME = timedelta(days=90)


@dataclass(frozen=True, slots=True)
class TokenStatus:
    """``problem`` says in words why the cache cannot be read (else ``None``)."""

    cache: Path
    signed_in: bool
    access_token_expires_at: datetime | None = None
    refresh_token_renewed_at: datetime | None = None
    problem: str | None = None

    @property
    def refresh_idle_expires_at(self) -> datetime | None:
        renewed = self.refresh_token_renewed_at
        return None if renewed is None else renewed + REFRESH_IDLE_LIFETIME

    def days_left(self, now: datetime) -> float | None:
        """Days until the refresh token would lapse unused (``None``: no refresh token)."""
        expires = self.refresh_idle_expires_at
        return None if expires is None else (expires - now).total_seconds() / 86_400

    def as_dict(self) -> dict[str, Any]:
        def iso(moment: datetime | None) -> str | None:
            return None if moment is None else moment.isoformat()

        return {
            "cache": str(self.cache),
            "signed_in": self.signed_in,
            "access_token_expires_at": iso(self.access_token_expires_at),
            "refresh_token_renewed_at": iso(self.refresh_token_renewed_at),
            "refresh_idle_expires_at": iso(self.refresh_idle_expires_at),
            "problem": self.problem,
        }


def read_token_status(cache: Path) -> TokenStatus:
    """What ``cache`` (an msal token cache file) says; never raises for a bad file."""
    try:
        document = json.loads(cache.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return TokenStatus(cache, signed_in=False, problem="not signed in: no token cache yet")
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not JSON"
        return TokenStatus(cache, signed_in=False, problem=f"token cache unreadable ({reason})")
    if not isinstance(document, dict):
        return TokenStatus(cache, signed_in=False, problem="token cache unreadable (not an object)")
    access = _latest(document.get("AccessToken"), "expires_on")
    renewed = _latest(document.get("RefreshToken"), "last_modification_time")
    refresh_present = bool(document.get("RefreshToken"))
    if refresh_present and renewed is None:  # an older msal: no time kept; the file's will do
        renewed = datetime.fromtimestamp(cache.stat().st_mtime, UTC)
    return TokenStatus(
        cache,
        signed_in=refresh_present or access is not None,
        access_token_expires_at=access,
        refresh_token_renewed_at=renewed,
        problem=None if refresh_present else "no refresh token: sign in again",
    )


def _latest(entries: object, key: str) -> datetime | None:
    if not isinstance(entries, dict):
        return None
    stamps: list[datetime] = []
    for entry in entries.values():
        value = entry.get(key) if isinstance(entry, dict) else None
        try:
            stamps.append(datetime.fromtimestamp(int(str(value)), UTC))
        except (TypeError, ValueError, OverflowError, OSError):
            continue
    return max(stamps, default=None)
