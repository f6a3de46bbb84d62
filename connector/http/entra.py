"""What an msal call's failure means, for every client that signs in through Entra ID."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import msal
import requests

from connector.errors import AuthError, TransientError
from connector.http.session import is_certificate_failure

__all__ = ["entra_errors"]


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
