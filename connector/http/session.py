"""The one way to build a ``requests.Session`` for a vendor API (and for msal's ``http_client``).

- ``trust_env=False``: the machine's ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` would otherwise
  override ``verify`` and its ``HTTPS_PROXY`` would be picked up silently.
- ``verify`` is the configured CA bundle path, or ``True`` (certifi's bundle).
- https only: a plain ``http://`` URL (first request or a redirect) is refused before any I/O.
- every request gets a timeout: the caller's, else the session default (msal passes none).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

import requests
from requests.adapters import BaseAdapter, HTTPAdapter

Timeout = float | tuple[float, float]

DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 30.0)
"""(connect, read) seconds."""


class _HttpsAdapter(HTTPAdapter):
    """The stock adapter, with a default timeout for callers that pass none."""

    def __init__(self, default_timeout: Timeout) -> None:
        super().__init__()
        self._default_timeout = default_timeout

    def send(  # noqa: PLR0917 - requests' adapter signature
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        return super().send(
            request,
            stream=stream,
            timeout=self._default_timeout if timeout is None else timeout,
            verify=verify,
            cert=cert,
            proxies=proxies,
        )


class _RefusePlainHttp(BaseAdapter):
    """Mounted on ``http://``: nothing leaves this process unencrypted."""

    def send(  # noqa: PLR0917 - requests' adapter signature
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        host = urlsplit(request.url or "").netloc
        raise requests.exceptions.InvalidSchema(f"refusing a plain-http request to {host}")

    def close(self) -> None:
        """Nothing to release."""


def build_session(
    *,
    ca_bundle: Path | str | None = None,
    default_timeout: Timeout = DEFAULT_TIMEOUT,
    on_response: Callable[[requests.Response], None] | None = None,
) -> requests.Session:
    """A session that ignores the environment, trusts ``ca_bundle`` (else certifi), https only.

    ``on_response`` sees every response (the metrics count them by status)."""
    session = requests.Session()
    if on_response is not None:
        observe = on_response

        def hook(response: requests.Response, *args: object, **kwargs: object) -> None:
            observe(response)

        session.hooks["response"].append(hook)
    session.trust_env = False
    session.verify = str(ca_bundle) if ca_bundle is not None else True
    session.mount("https://", _HttpsAdapter(default_timeout))
    session.mount("http://", _RefusePlainHttp())
    return session


def is_certificate_failure(exc: BaseException) -> bool:
    """Whether a ``requests`` ``SSLError`` is about the certificate (untrusted, expired, wrong
    host: retrying cannot help) rather than a connection cut during TLS (an EOF or a reset in
    the middle of a request: transient, like any other ``ConnectionError``)."""
    seen: set[int] = set()
    stack: list[object] = [exc]
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ssl.SSLCertVerificationError):
            return True
        stack.extend([item.__cause__, item.__context__, getattr(item, "reason", None), *item.args])
    return "certificate verify failed" in str(exc).lower()
