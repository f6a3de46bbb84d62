"""Bearer tokens on every Web API call, checked against the Entra simulator's TokenStore.

The token must be live and issued for the environment's resource (its ``aud``), which is what
msal's client-credentials call with scope ``https://<org>.crm.dynamics.com/.default`` gets.
Refusals are 401 with ``WWW-Authenticate: Bearer authorization_uri=<authority>/oauth2/authorize,
resource_id=<resource>`` (plus ``error=invalid_token`` when a token was sent). A request without
a token has an empty body; a bad one has the envelope with ``0x8004A100`` (InvalidAuthTicket:
unknown token or wrong audience) or ``0x8004A101`` (ExpiredAuthTicket). The names are those of
crm-apis §C7; the hex values and messages are [UNVERIFIED].
"""

from __future__ import annotations

from werkzeug.wrappers import Request

from sandbox.dynamics.errors import EXPIRED_AUTH_TICKET, INVALID_AUTH_TICKET, DataverseError
from sandbox.tokens import TokenStore

__all__ = ["authenticate"]


def authenticate(tokens: TokenStore, request: Request, audience: str, authority: str) -> str:
    """The caller's user key (the app's client id), or a 401 :class:`DataverseError`."""
    header = request.headers.get("Authorization")
    problem = tokens.check(header, audience)
    challenge = f"Bearer authorization_uri={authority}/oauth2/authorize, resource_id={audience}/"
    if problem == "missing":
        raise DataverseError(401, "", "", headers={"WWW-Authenticate": challenge}, empty_body=True)
    if problem is not None:
        invalid = (
            'Bearer error=invalid_token, error_description="Error during token validation!", '
            + challenge.removeprefix("Bearer ")
        )
        if problem == "expired":
            code, message = (
                EXPIRED_AUTH_TICKET,
                "The user authentication failed: the token expired.",
            )
        else:
            code, message = INVALID_AUTH_TICKET, "The user authentication failed: invalid token."
        raise DataverseError(401, code, message, headers={"WWW-Authenticate": invalid})
    grant = tokens.lookup(header)
    assert grant is not None  # noqa: S101 (check() found it)
    return grant.client_id if grant.user is None else grant.user.object_id
