"""The sign-in's expiry as ``status`` and ``check`` report it, read from msal's cache file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from connector.partner_center.token_status import REFRESH_IDLE_LIFETIME, read_token_status

RENEWED = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def cache_file(tmp_path, **sections):
    path = tmp_path / "cache.json"
    path.write_text(json.dumps(sections), encoding="utf-8")
    return path


def test_a_cache_with_a_refresh_token_lapses_90_days_after_its_last_renewal(tmp_path):
    path = cache_file(
        tmp_path,
        AccessToken={
            "a": {"secret": "AT-value", "expires_on": str(int(RENEWED.timestamp()) + 3600)}
        },
        RefreshToken={
            "r": {"secret": "RT-value", "last_modification_time": str(int(RENEWED.timestamp()))}
        },
    )
    status = read_token_status(path)
    assert status.signed_in
    assert status.problem is None
    assert status.access_token_expires_at == RENEWED + timedelta(hours=1)
    assert status.refresh_idle_expires_at == RENEWED + REFRESH_IDLE_LIFETIME
    assert status.days_left(RENEWED + timedelta(days=80)) == 10
    assert "RT-value" not in json.dumps(status.as_dict())
    assert "AT-value" not in json.dumps(status.as_dict())


def test_no_cache_file_means_not_signed_in_yet(tmp_path):
    status = read_token_status(tmp_path / "missing.json")
    assert (status.signed_in, status.problem) == (False, "not signed in: no token cache yet")
    assert status.days_left(RENEWED) is None


def test_a_corrupt_cache_is_reported_not_raised(tmp_path):
    path = tmp_path / "cache.json"
    path.write_text("{not json", encoding="utf-8")
    assert read_token_status(path).problem == "token cache unreadable (not JSON)"


def test_a_cache_without_a_refresh_token_asks_for_a_new_sign_in(tmp_path):
    status = read_token_status(cache_file(tmp_path, AccessToken={}, RefreshToken={}))
    assert status.problem == "no refresh token: sign in again"
