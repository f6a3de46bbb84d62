"""The daemon as a process, for the tests that run ``referral-sync run`` for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sandbox.app import Sandbox
from sandbox.testing import random_loopback_host

ROOT = Path(__file__).resolve().parents[1]


def start_daemon(config: Path, *args: str) -> subprocess.Popen[str]:
    """``referral-sync run --config CONFIG ARGS``; stderr (the JSON log) kept for the test."""
    return subprocess.Popen(  # noqa: S603 - our own command
        [sys.executable, "-m", "connector", "run", "--config", str(config), *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_PROXY": "127.0.0.1,localhost"},
    )


def log_records(stderr: str) -> list[dict[str, Any]]:
    """The JSON log lines of a daemon's stderr, in order."""
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def wait_until(check: Callable[[], object], timeout: float = 60) -> float:
    """Poll ``check`` until it is true; how long that took (AssertionError past ``timeout``)."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - started


def own_sandbox(tmp_path_factory: Any) -> Iterator[Sandbox]:
    """A sandbox for one test module whose daemon runs as a process: the process keeps the wall
    clock, and the session's shared sandbox clock may have been moved ahead by other tests (a
    webhook dated ahead of the receiver's clock is refused as from the future, rightly)."""
    with Sandbox(
        tmp_path_factory.mktemp("own-sandbox"), host=random_loopback_host(), fault_seed=7
    ) as running:
        yield running
