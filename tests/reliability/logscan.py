"""The whole-suite log scan: no secret, token, password, private key or unmasked customer e-mail
in any log line the test suite produces.

:class:`LogScanner` holds what to look for: the exact secrets registered (every sandbox started
by the suite registers its client secrets, passwords and private key) and generic shapes of
tokens (JWTs, Entra refresh tokens, Salesforce session ids, bearer headers, PEM private keys,
``secret=value`` pairs). E-mail addresses count only in log lines (stderr, captured log records,
a subprocess's stderr, JSON event lines on stdout): a command may print a dead letter's payload
to the person who asked for it, but a log line masks contacts (``j***@contoso.com``).

:class:`LogScanPlugin` feeds it everything the suite writes, tees it to one owner-only file per
session, and fails the session (exit status 1, with a report that never repeats the secret)
when anything is found:

- the captured stdout, stderr and log records of every test phase (``report.sections``);
- what a test takes out of ``capsys``/``capfd`` itself (``readouterr`` is teed), which never
  reaches a report section;
- the stdout and stderr of subprocesses a test runs (``Popen.communicate``, which
  ``subprocess.run`` uses too).

With capturing turned off (``-s``) there are no sections to read: the summary says so.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

__all__ = ["Finding", "LogScanPlugin", "LogScanner", "sandbox_secrets"]

_GENERIC: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("JWT", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")),
    ("private key", re.compile(r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----")),
    ("bearer token", re.compile(r"\b[Bb]earer\s+(?!\[redacted\])[A-Za-z0-9._~+/=-]{20,}")),
    ("Entra refresh token", re.compile(r"\b0\.(?:sbx\.|A[A-Za-z0-9_-]{10})[A-Za-z0-9_-]{20,}")),
    ("Salesforce session id", re.compile(r"\b00D[A-Za-z0-9]{12,15}![A-Za-z0-9._-]{20,}")),
    ("device code", re.compile(r"\bDAQABAAEAAA[A-Za-z0-9_-]{20,}")),
    ("sandbox client secret", re.compile(r"\b(?:pc|dv)~[A-Za-z0-9_-]{20,}")),
    ("sandbox password", re.compile(r"\bSbx-[A-Za-z0-9_-]{16}(?![A-Za-z0-9_-])")),
    ("password in a URL", re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@]+:(?!\*\*\*@)[^/\s@]+@")),
    (
        "secret assignment",
        re.compile(
            r"""(?ix)\b(?:client_secret|password|passwd|access_token|refresh_token|assertion)
            ["']?\s*[=:]\s*["']?(?!\[redacted\]|\*|<|None\b|null\b|true\b|false\b)
            [A-Za-z0-9._~+/!-]{8,}"""
        ),
    ),
)
_EMAIL = re.compile(
    r"(?<![\w.%+-])([A-Za-z0-9._%+-]+)@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})"
)
_MASKED_LOCAL = re.compile(r"^[A-Za-z0-9._%+-]\*\*\*$")
_SECRET_KEY = re.compile(r"secret|password|passwd|token|assertion", re.I)
_MIN_SECRET = 8


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    where: str
    excerpt: str  # the line, the secret itself replaced by a hint of its shape

    def __str__(self) -> str:
        return f"{self.where}: {self.kind}: {self.excerpt}"


def _hint(value: str) -> str:
    return f"<{value[:3]}…{len(value)} chars>"


class LogScanner:
    """What counts as a leak, and every leak found so far."""

    def __init__(self) -> None:
        self._secrets: dict[str, str] = {}
        self._not_customers: set[str] = set()
        self.findings: list[Finding] = []
        self.lines = 0

    def register(self, value: str, label: str) -> None:
        """An exact secret to look for (values shorter than 8 characters are too common)."""
        if isinstance(value, str) and len(value) >= _MIN_SECRET:
            self._secrets[value] = label

    def allow_address(self, address: str) -> None:
        """An e-mail address that is not a customer's (a sandbox user name)."""
        self._not_customers.add(address.casefold())

    def scan(self, text: str, where: str, *, log_lines: bool) -> list[Finding]:
        """Findings in ``text``; ``log_lines``: every line is a log line (e-mails count)."""
        found: list[Finding] = []
        for line in text.splitlines():
            self.lines += 1
            found.extend(self._secrets_in(line, where))
            if log_lines or _is_json_event(line):
                found.extend(self._emails_in(line, where))
        self.findings.extend(found)
        return found

    def _secrets_in(self, line: str, where: str) -> Iterator[Finding]:
        for value, label in self._secrets.items():
            if value in line:
                yield Finding(f"registered secret ({label})", where, _excerpt(line, value))
        for kind, pattern in _GENERIC:
            for match in pattern.finditer(line):
                yield Finding(kind, where, _excerpt(line, match.group(0)))

    def _emails_in(self, line: str, where: str) -> Iterator[Finding]:
        for match in _EMAIL.finditer(line):
            local, address = match.group(1), match.group(0)
            if _MASKED_LOCAL.match(local) or address.casefold() in self._not_customers:
                continue
            yield Finding("unmasked e-mail", where, _excerpt(line, address))


def _is_json_event(line: str) -> bool:
    text = line.strip()
    if not text.startswith("{"):
        return False
    try:
        parsed = json.loads(text)
    except ValueError:
        return False
    return isinstance(parsed, dict) and "event" in parsed


def _excerpt(line: str, secret: str, width: int = 160) -> str:
    shown = line.replace(secret, _hint(secret)).strip()
    return shown if len(shown) <= width else shown[: width - 1] + "…"


def sandbox_secrets(info: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(value, label) of every credential in a ``sandbox.json`` dict, private key included."""

    def walk(node: object, path: str) -> Iterator[tuple[str, str]]:
        if isinstance(node, Mapping):
            for key, value in node.items():
                where = f"{path}.{key}" if path else str(key)
                if isinstance(value, str) and _SECRET_KEY.search(str(key)):
                    yield value, where
                elif str(key) == "private_key_path" and isinstance(value, str):
                    yield from _key_lines(Path(value), where)
                else:
                    yield from walk(value, where)

    yield from walk(info, "sandbox")


def _key_lines(path: Path, label: str) -> Iterator[tuple[str, str]]:
    """A PEM key's base64 lines: any one of them in a log is the key leaking."""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return
    for line in text.splitlines():
        if line and not line.startswith("-----"):
            yield line, label


class LogScanPlugin:
    """Scans everything the session writes; fails the session on any finding."""

    name = "logscan"

    def __init__(self, scanner: LogScanner | None = None, tee: Path | None = None) -> None:
        self.scanner = scanner or LogScanner()
        if tee is None:
            fd, name = tempfile.mkstemp(prefix="referral-sync-logscan-", suffix=".log")
            os.close(fd)
            tee = Path(name)
        self.tee_path = tee
        fd = os.open(tee, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._tee = os.fdopen(fd, "w", encoding="utf-8", errors="replace")
        self._done: set[tuple[str, str]] = set()
        self._current = "(collection)"
        self._sections = 0
        self._undo: list[tuple[object, str, object]] = []

    # -- feeding it ---------------------------------------------------------------------

    def feed(self, text: str, where: str, *, log_lines: bool) -> None:
        if not text:
            return
        self._tee.write(f"=== {where}\n{text.rstrip()}\n")
        self.scanner.scan(text, where, log_lines=log_lines)

    def watch_sandboxes(self, sandbox_class: type) -> None:
        """Every sandbox the session starts registers its credentials once it is up."""
        plugin = self

        def make(original: Any) -> Any:
            def start(sandbox: Any) -> Any:
                started = original(sandbox)
                plugin.register_sandbox(sandbox.info)
                return started

            return start

        self._patch(sandbox_class, "start", make)

    def register_sandbox(self, info: Mapping[str, Any]) -> None:
        for value, label in sandbox_secrets(info):
            self.scanner.register(value, label)
        for path in (("entra", "partner_center", "username"), ("salesforce", "username")):
            node: object = info
            for key in path:
                node = node.get(key) if isinstance(node, Mapping) else None
            if isinstance(node, str):
                self.scanner.allow_address(node)

    # -- hooks --------------------------------------------------------------------------

    def pytest_configure(self, config: pytest.Config) -> None:
        self._patch(pytest.CaptureFixture, "readouterr", self._teed_readouterr)
        self._patch(subprocess.Popen, "communicate", self._teed_communicate)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        for owner, attribute, original in reversed(self._undo):
            setattr(owner, attribute, original)
        self._undo.clear()
        self._tee.close()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Iterator[None]:
        self._current = item.nodeid
        try:
            return (yield)
        finally:
            self._current = "(between tests)"

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for title, content in report.sections:
            key = (report.nodeid, title)
            if key in self._done or not title.startswith("Captured "):
                continue
            self._done.add(key)
            self._sections += 1
            stdout = title.startswith("Captured stdout")
            self.feed(content, f"{report.nodeid} [{title}]", log_lines=not stdout)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self._tee.flush()
        if self.scanner.findings:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any, config: pytest.Config) -> None:
        findings = self.scanner.findings
        write = terminalreporter.write_line
        if not findings:
            note = "" if self._sections or config.option.capture != "no" else " (capture off)"
            write(
                f"log scan: {self.scanner.lines} lines, no secret and no unmasked e-mail{note}"
                f" (tee: {self.tee_path})"
            )
            return
        terminalreporter.section("log scan: secrets or customer e-mails in the logs", red=True)
        for finding in _first(findings, 50):
            write(str(finding))
        if len(findings) > 50:
            write(f"... and {len(findings) - 50} more")
        write(
            f"{len(findings)} finding(s) in {self.scanner.lines} lines; all of it: {self.tee_path}"
        )

    # -- the taps -----------------------------------------------------------------------

    def _patch(self, owner: type, attribute: str, make: Any) -> None:
        original = getattr(owner, attribute)
        self._undo.append((owner, attribute, original))
        setattr(owner, attribute, make(original))

    def _teed_readouterr(self, original: Any) -> Any:
        plugin = self

        def readouterr(fixture: pytest.CaptureFixture[Any]) -> Any:
            result = original(fixture)
            out, err = (_text(part) for part in (result.out, result.err))
            plugin.feed(out, f"{plugin._current} [readouterr out]", log_lines=False)
            plugin.feed(err, f"{plugin._current} [readouterr err]", log_lines=True)
            return result

        return readouterr

    def _teed_communicate(self, original: Any) -> Any:
        plugin = self

        def communicate(process: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> Any:
            out, err = original(process, *args, **kwargs)
            command = _command_name(process.args)
            plugin.feed(_text(out), f"{plugin._current} [{command} stdout]", log_lines=False)
            plugin.feed(_text(err), f"{plugin._current} [{command} stderr]", log_lines=True)
            return out, err

        return communicate


def _text(data: object) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode("utf-8", errors="replace")
    return str(data)


def _command_name(args: object) -> str:
    parts = [str(a) for a in args] if isinstance(args, list | tuple) else str(args).split()
    shown = [p for p in parts[:4] if not p.endswith(("python", "python3"))]
    return "subprocess " + " ".join(shown)[:60]


def _first(items: Iterable[Finding], n: int) -> list[Finding]:
    return list(items)[:n]
