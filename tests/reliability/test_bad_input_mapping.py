"""Mapping files with every kind of mistake, one file each: loading stops with a
:class:`ConfigError` naming the file and the path in it (or the line, for YAML itself), quickly,
and nothing else is raised.

Cases live in ``tests/data/bad_input/mapping/<case>.yaml``; their first comment lines say what
is wrong and what the problems must name (``# expect: fields.Name.source, lifecycle``; ``line``
stands for a YAML syntax problem's ``line N, column M``).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from connector.errors import ConfigError
from connector.mapping_file import load_mapping_file

CASES_DIR = Path(__file__).parents[1] / "data" / "bad_input" / "mapping"
CASES = sorted(CASES_DIR.glob("*.yaml"))


def expected(path: Path) -> list[str]:
    for raw in path.read_bytes().splitlines():
        line = raw.decode("utf-8", errors="replace")
        if line.startswith("# expect:"):
            return [key.strip() for key in line.removeprefix("# expect:").split(",")]
    raise AssertionError(f"{path.name} has no '# expect:' line")


def names(key: str, expectation: str) -> bool:
    return key.startswith("line ") if expectation == "line" else key == expectation


def test_the_mapping_corpus_is_large_and_covers_yaml_itself():
    stems = {path.stem for path in CASES}
    assert len(CASES) >= 30
    assert {"syntax_duplicate_field", "syntax_alias_bomb", "syntax_not_utf8"} <= stems


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_a_bad_mapping_is_refused_naming_the_file_and_the_path(path: Path):
    started = time.monotonic()

    with pytest.raises(ConfigError) as caught:
        load_mapping_file(path)

    assert time.monotonic() - started < 2.0, "refused quickly (no alias bomb expanded)"
    problems = caught.value.problems
    for expectation in expected(path):
        assert any(names(p.key, expectation) for p in problems), [str(p) for p in problems]
    assert all(p.source == str(path) for p in problems)
    assert all(len(p.message) < 1000 for p in problems), "a bounded message (nothing expanded)"


def test_the_shipped_mappings_have_no_duplicate_keys_either():
    for crm in ("salesforce", "dynamics"):
        load_mapping_file(Path(__file__).parents[2] / "mappings" / f"{crm}.yaml")
