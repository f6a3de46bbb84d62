"""Helpers for tests and scripts that talk to a sandbox (the sandbox ships its own test aids)."""

from __future__ import annotations

import random

import requests


def random_loopback_host() -> str:
    """``127.x.y.z`` with x, y, z in 1..254: its port 443 is almost surely free."""
    return "127." + ".".join(str(random.randint(1, 254)) for _ in range(3))


def ca_session(ca_bundle: str) -> requests.Session:
    """A session that trusts ``ca_bundle`` and ignores the environment.

    ``trust_env=False`` matters: ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` would otherwise
    override ``verify``, and ``HTTPS_PROXY`` would send loopback traffic to a proxy.
    """
    session = requests.Session()
    session.trust_env = False
    session.verify = ca_bundle
    return session
