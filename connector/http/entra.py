"""Talking to Entra ID through msal, for every client that signs in there.

msal hides the HTTP reply behind a dict (``{"error": ...}``), so a throttled or failing token
endpoint would read like a refused sign-in. :class:`EntraHttp` is the HTTP client msal is given:
it notes each thread's last reply, so a 429 or 5xx becomes :class:`RateLimited` /
:class:`TransientError` (with Retry-After) for the one retry layer, and it keeps Entra's
``Retry-After`` in a :class:`~connector.http.gate.RetryAfterGate`: until it has passed no token
request is sent (the next cycle's neither). msal's own replay of throttled replies is switched
off (:data:`NoThrottleReplay`): it counts whole seconds and hides the reply; ours does not.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import msal
import requests

from connector.errors import AuthError, RateLimited, TransientError
from connector.http.gate import RetryAfterGate
from connector.http.retry import parse_retry_after
from connector.http.session import is_certificate_failure

__all__ = ["EntraHttp", "NoThrottleReplay", "entra_errors"]


@contextlib.contextmanager
def entra_errors(authority: str) -> Iterator[None]:
    """Entra unreachable or failing (5xx, a connection cut during TLS) is transient; a
    certificate failure is not (retrying cannot help)."""
    try:
        yield
    except requests.exceptions.SSLError as exc:
        if not is_certificate_failure(exc):
            raise TransientError(f"Entra unreachable: {type(exc).__name__}") from exc
        raise AuthError(f"TLS failure talking to {authority}: {type(exc).__name__}") from exc
    except requests.exceptions.RequestException as exc:
        raise TransientError(f"Entra unreachable: {type(exc).__name__}") from exc
    except msal.exceptions.MsalServiceError as exc:
        raise TransientError(f"Entra failed: {exc}") from exc


class NoThrottleReplay(dict[Any, Any]):
    """msal's HTTP cache without its replay of a 429 or a 5xx.

    msal remembers a throttled or failed token request and answers identical ones from memory
    (for ``Retry-After`` whole seconds, or 60 s without one in a public client) as if Entra had
    refused the sign-in. :class:`EntraHttp` waits out ``Retry-After`` itself and the retry
    layer backs off from a 5xx, so such replies are not kept; the rest (discovery documents,
    a 400's replay) is msal's as before.
    """

    def __setitem__(self, key: Any, value: Any) -> None:  # noqa: ANN401 - msal's values
        status = getattr(value, "status_code", None)
        if isinstance(status, int) and (status == 429 or status >= 500):
            return
        super().__setitem__(key, value)


class EntraHttp:
    """The HTTP client msal is given (``post``/``get``/``close`` over a requests session)."""

    def __init__(self, session: requests.Session, authority: str) -> None:
        self._session = session
        self._authority = authority
        self._local = threading.local()
        self.gate = RetryAfterGate()
        """Held by Entra's ``Retry-After``: no token request before it has passed."""

    def post(self, url: str, **kwargs: Any) -> requests.Response:  # noqa: ANN401 - msal's
        self._hold_back()
        return self._noted(self._session.post(url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> requests.Response:  # noqa: ANN401 - msal's
        self._hold_back()
        return self._noted(self._session.get(url, **kwargs))

    def _hold_back(self) -> None:
        """No request while Entra's Retry-After lasts, msal's second try within one call too."""
        left = self.gate.remaining()
        if left > 0:
            raise RateLimited(f"Entra asked us to wait; {left:.1f} s left", retry_after=left)

    def close(self) -> None:
        self._session.close()

    def call(self, fn: Callable[[], object]) -> dict[str, Any]:
        """Run one msal call; its dict answer (msal's "nothing", None, is ``{}``).

        Raises :class:`RateLimited` without calling while Entra's ``Retry-After`` lasts, and
        when the call's reply was a 429; :class:`TransientError` when it was a 5xx."""
        self._hold_back()
        self._local.reply = None
        try:
            with entra_errors(self._authority):
                result = fn()
        except TransientError:  # msal raises on some 5xx: say what Entra said, Retry-After too
            problem = self._throttled()
            if problem is None:
                raise
            raise problem from None
        answer = dict(result) if isinstance(result, dict) else {}
        # A 429/5xx reply, whatever msal made of it (an "error" dict, or none at all): Entra's.
        if "access_token" not in answer and (problem := self._throttled()) is not None:
            raise problem
        return answer

    def _throttled(self) -> TransientError | None:
        """This thread's last reply as an error, if it was a 429 or a 5xx (holding the gate)."""
        reply: requests.Response | None = getattr(self._local, "reply", None)
        problem = None if reply is None else _throttled(reply)
        if problem is not None and problem.retry_after:
            self.gate.hold(problem.retry_after)
        return problem

    def _noted(self, response: requests.Response) -> requests.Response:
        self._local.reply = response
        problem = _throttled(response)
        if problem is not None and problem.retry_after:
            self.gate.hold(problem.retry_after)  # at once: msal may try again within the call
        return response


def _throttled(reply: requests.Response) -> TransientError | None:
    status = reply.status_code
    if status != 429 and status < 500:
        return None
    retry_after = parse_retry_after(
        reply.headers.get("Retry-After"), server_date=reply.headers.get("Date")
    )
    if status == 429:
        return RateLimited("Entra answered 429 (too many requests)", retry_after=retry_after)
    return TransientError(f"Entra answered {status}", retry_after=retry_after)
