"""Configuration files with every kind of mistake, one file each: start-up stops with a
:class:`ConfigError` that names the file (or the environment variable) and the key, and nothing
else is raised.

Cases live in ``tests/data/bad_input/config/<case>.toml``. Their first comment lines say what
is wrong (``# <what>``), which keys the problems must name (``# expect: key, key``: each is the
``key`` or the ``source`` of one problem) and the environment to load them with (``# env:
NAME=value``; ``PC_SECRET``, ``SF_SECRET`` and ``DV_SECRET`` are always set). Secret files they
refer to are in ``files/``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.errors import ConfigError
from connector.settings import load_settings

CASES_DIR = Path(__file__).parents[1] / "data" / "bad_input" / "config"
CASES = sorted(CASES_DIR.glob("*.toml"))
ENV = {"PC_SECRET": "pc-secret-value", "SF_SECRET": "sf-secret-value", "DV_SECRET": "dv-value"}


def header(path: Path) -> tuple[list[str], dict[str, str]]:
    expect: list[str] = []
    env = dict(ENV)
    for raw in path.read_bytes().splitlines():
        line = raw.decode("utf-8", errors="replace")
        if not line.startswith("#"):
            break
        if line.startswith("# expect:"):
            expect = [key.strip() for key in line.removeprefix("# expect:").split(",")]
        elif line.startswith("# env:"):
            name, _, value = line.removeprefix("# env:").strip().partition("=")
            env[name] = value
    return expect, env


def test_the_config_corpus_is_large_and_every_case_says_what_it_expects():
    assert len(CASES) >= 30
    for path in CASES:
        assert header(path)[0], f"{path.name} has no '# expect:' line"


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_a_bad_config_stops_start_up_naming_the_file_and_the_key(path: Path):
    expect, env = header(path)

    with pytest.raises(ConfigError) as caught:
        load_settings(path, env)

    problems = caught.value.problems
    named = {p.key for p in problems} | {p.source for p in problems}
    assert set(expect) <= named, [str(p) for p in problems]
    for problem in problems:
        assert problem.source in (str(path), *env), problem
        assert problem.message, problem
    assert all(value not in str(caught.value) for value in ENV.values()), "no secret in errors"
