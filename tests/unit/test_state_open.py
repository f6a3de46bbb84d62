"""``open_state_store`` picks the store from the URL, and says clearly when it cannot."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.errors import StateError
from connector.settings import DEFAULT_STATE_URL
from connector.state import MemoryStateStore, SqlStateStore, open_state_store


def test_memory_url_gives_a_memory_store():
    store = open_state_store("memory://")

    assert isinstance(store, MemoryStateStore)
    store.close()


def test_the_default_url_is_a_sqlite_file_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    store = open_state_store(DEFAULT_STATE_URL)
    try:
        assert isinstance(store, SqlStateStore)
        store.set_cursor("acme", "referrals", {"v": 1})
    finally:
        store.close()

    assert (tmp_path / "state" / "referral-sync.db").is_file()


def test_an_absolute_sqlite_path_is_used_as_it_is(tmp_path: Path):
    path = tmp_path / "elsewhere" / "state.db"
    open_state_store(f"sqlite:///{path}").close()

    assert path.is_file()


def test_create_dirs_false_is_passed_on(tmp_path: Path):
    with pytest.raises(StateError, match="does not exist"):
        open_state_store(f"sqlite:///{tmp_path}/missing/state.db", create_dirs=False)


@pytest.mark.parametrize(
    ("bad_url", "says"),
    [
        ("", "non-empty"),
        ("state.db", "no scheme"),
        ("memory://something", "nothing after"),
        ("nosuchdb://host/db", "unknown database scheme"),
        ("sqlite://", "does not name a database file"),
        ("sqlite:///:memory:", "does not name a database file"),
        ("postgresql://host:notaport/db", "not a database URL"),
    ],
)
def test_a_url_that_names_no_usable_store_is_a_state_error(bad_url: str, says: str):
    with pytest.raises(StateError, match=says):
        open_state_store(bad_url)


@pytest.mark.parametrize(
    "bad_url", ["postgresql://sync:hunter2@db:port/state", "post gres://sync:hunter2@db/state"]
)
def test_a_malformed_url_is_a_state_error_that_hides_the_password(bad_url: str):
    with pytest.raises(StateError, match="not a database URL") as refused:
        open_state_store(bad_url)

    assert "hunter2" not in str(refused.value)


def test_a_missing_driver_is_a_state_error_that_hides_the_password(
    monkeypatch: pytest.MonkeyPatch,
):
    # the Postgres driver is not a dependency yet: its absence is what this test relies on
    monkeypatch.setitem(__import__("sys").modules, "psycopg", None)
    monkeypatch.setitem(__import__("sys").modules, "psycopg2", None)

    with pytest.raises(StateError, match="driver") as refused:
        open_state_store("postgresql://sync:hunter2@db.internal/state")

    assert "hunter2" not in str(refused.value)
