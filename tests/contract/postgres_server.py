"""A PostgreSQL server for the state store's tests, and a fresh schema on it for each test.

Where the server comes from, in this order:

1. ``RS_TEST_POSTGRES_URL``: a server someone else runs (CI starts Debian's cluster in
   ``.ci/run``), as a SQLAlchemy URL such as
   ``postgresql+psycopg://referral_sync_test:PASSWORD@127.0.0.1:5432/referral_sync_test``. Its
   role needs the right to create schemas in that database (owning it is simplest).
2. Otherwise PostgreSQL's own programs (``initdb``, ``pg_ctl``: ``RS_TEST_POSTGRES_BIN``, else
   the newest ``/usr/lib/postgresql/*/bin``, else ``PATH``) start a throw-away cluster for this
   test session: in a temporary folder, listening on a Unix socket there only (no port to
   collide on), fsync off, a role with a password as CI has. PostgreSQL refuses to run as root,
   so as root it runs as the ``postgres`` user (``runuser``). It is stopped when the session ends.
3. Neither: the tests that need it fail (not skip), saying how to get one
   (``apt-get install -y postgresql``).

Each test gets a schema of its own (``rs_test_<random>``): the store's URL sets ``search_path``
to it (``options=-csearch_path=...``, and ``synchronous_commit=off`` for speed), and it is
dropped with everything in it afterwards.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

URL_VARIABLE = "RS_TEST_POSTGRES_URL"
BIN_VARIABLE = "RS_TEST_POSTGRES_BIN"
ROLE = "referral_sync_test"
PASSWORD = "referral-sync-test-password"  # a private throw-away cluster's; not a secret
_INSTALL_HINT = (
    f"set {URL_VARIABLE} to a PostgreSQL database the tests may create schemas in, or install "
    "PostgreSQL's server programs (Debian: apt-get install -y postgresql) so the tests can start "
    "a private cluster themselves"
)


class PostgresServer:
    """A reachable database, by its URL; :meth:`schema` makes a fresh schema on it."""

    def __init__(self, url: sa.URL) -> None:
        self.url = url
        self._admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)

    def check(self) -> None:
        """Fail the test (not skip it) when the server cannot be reached."""
        try:
            with self._admin.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError as exc:
            cause = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
            problem = f"{type(cause).__name__}: {cause}".strip()
        else:
            return
        where = self.url.render_as_string(hide_password=True)
        pytest.fail(
            f"PostgreSQL at {where} cannot be reached ({problem}); {_INSTALL_HINT}", pytrace=False
        )

    def schema_url(self, schema: str) -> sa.URL:
        """The URL of this database with ``schema`` first in the search path; commits do not
        wait for the disk (a test server's durability is not what the tests are about)."""
        options = self.url.query.get("options", "")
        if isinstance(options, tuple):
            options = " ".join(options)
        mine = f"-csearch_path={schema} -csynchronous_commit=off"
        return self.url.update_query_dict({"options": f"{options} {mine}".strip()})

    @contextlib.contextmanager
    def schema(self) -> Iterator[sa.URL]:
        """A new empty schema for one test, dropped with everything in it afterwards."""
        name = f"rs_test_{uuid.uuid4().hex[:12]}"
        with self._admin.connect() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {name}"))
        try:
            yield self.schema_url(name)
        finally:
            with self._admin.connect() as conn:
                conn.execute(sa.text(f"DROP SCHEMA {name} CASCADE"))

    def terminate_connections(self, application_name: str) -> int:
        """End every server process serving ``application_name`` (not ours): a server restart,
        as each of their connections sees it. How many were ended."""
        query = sa.text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = :name AND pid <> pg_backend_pid()"
        )
        with self._admin.connect() as conn:
            return int(conn.execute(query, {"name": application_name}).scalar_one())

    def dispose(self) -> None:
        self._admin.dispose()


def _bin_dir() -> Path | None:
    given = os.environ.get(BIN_VARIABLE)
    if given:
        return Path(given)
    installed = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if installed:
        return installed[-1].parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


class PrivateCluster:
    """A throw-away cluster in a temporary folder, on a Unix socket only (see the module)."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="rs-pg-"))  # short: a socket path has a limit
        self.data = self.root / "data"
        self._as: list[str] = []
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                self._cleanup()
                pytest.fail(
                    "PostgreSQL will not run as root and there is no postgres user to run it "
                    f"as; {_INSTALL_HINT}",
                    pytrace=False,
                )
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *command: str) -> None:
        done = subprocess.run(  # noqa: S603 -- our own fixed command line
            [*self._as, *command], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            log = self.root / "server.log"
            server_log = log.read_text(errors="replace")[-4000:] if log.exists() else ""
            self._cleanup()
            pytest.fail(
                f"could not start a private PostgreSQL cluster: {' '.join(command)} exited "
                f"{done.returncode}:\n{done.stdout}{done.stderr}{server_log}",
                pytrace=False,
            )

    def start(self) -> sa.URL:
        self._run(
            str(self.bin_dir / "initdb"),
            "--pgdata",
            str(self.data),
            "--username",
            "postgres",
            "--auth-local",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            "--no-sync",
        )
        settings = {
            "listen_addresses": "''",
            "unix_socket_directories": f"'{self.root}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        # the superuser over the socket as it is; our role only with its password, as in CI
        (self.data / "pg_hba.conf").write_text(
            "local all postgres trust\nlocal all all scram-sha-256\n"
        )
        log = self.root / "server.log"
        self._run(
            str(self.bin_dir / "pg_ctl"), "--pgdata", str(self.data), "--log", str(log),
            "--wait", "--timeout", "60", "start",
        )  # fmt: skip
        superuser = sa.URL.create(
            "postgresql+psycopg", username="postgres", database="postgres",
            query={"host": str(self.root)},
        )  # fmt: skip
        engine = sa.create_engine(superuser, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'"))
                conn.execute(sa.text(f"CREATE DATABASE {ROLE} OWNER {ROLE}"))
        finally:
            engine.dispose()
        return sa.URL.create(
            "postgresql+psycopg", username=ROLE, password=PASSWORD, database=ROLE,
            query={"host": str(self.root)},
        )  # fmt: skip

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(  # noqa: S603 -- our own fixed command line
                [*self._as, str(self.bin_dir / "pg_ctl"), "--pgdata", str(self.data),
                 "--mode", "immediate", "--wait", "stop"],
                capture_output=True, timeout=60, check=False,
            )  # fmt: skip
        self._cleanup()

    def _cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """The server this module's docstring describes, for one test session."""
    given = os.environ.get(URL_VARIABLE)
    if given:
        try:
            url = sa.make_url(given)
        except sa.exc.ArgumentError:
            pytest.fail(f"{URL_VARIABLE} is not a database URL", pytrace=False)
        server = PostgresServer(url)
        server.check()
        try:
            yield server
        finally:
            server.dispose()
        return
    bin_dir = _bin_dir()
    if bin_dir is None or not (bin_dir / "pg_ctl").exists():
        pytest.fail(
            f"no PostgreSQL server for the state store tests: {_INSTALL_HINT}", pytrace=False
        )
    cluster = PrivateCluster(bin_dir)
    try:
        server = PostgresServer(cluster.start())
        server.check()
        yield server
        server.dispose()
    finally:
        cluster.stop()
