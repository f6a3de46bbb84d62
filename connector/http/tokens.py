"""After a 401: renew the access token once for all the threads that met it.

Several threads share one client and one token (the engine's concurrent write-backs). When the
token is refused (revoked or expired early) each of them meets a 401; renewing it in each would
send a burst of token requests and hand out several new tokens for one. :class:`TokenRenewal`
serialises the renewals: a thread whose refused token is no longer the current one takes the
current one (renewed by another thread meanwhile); only the first renews.
"""

from __future__ import annotations

import threading
from typing import Protocol

__all__ = ["TokenRenewal"]


class TokenSource(Protocol):
    def token(self) -> str: ...

    def refresh(self) -> str: ...


class TokenRenewal:
    def __init__(self, source: TokenSource) -> None:
        self._source = source
        self._lock = threading.Lock()

    def after_401(self, refused: str) -> str:
        """A token to try instead of ``refused``: the current one if another thread renewed it
        since, else a new one (a transient failure to renew propagates, for the retry layer)."""
        with self._lock:
            current = self._source.token()
            return current if current != refused else self._source.refresh()
