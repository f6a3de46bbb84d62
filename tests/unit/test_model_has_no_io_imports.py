"""Dependencies point inward: the model, the mapping and the wire shapes import no I/O library."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PURE_FILES = [
    *sorted((ROOT / "connector" / "model").glob("*.py")),
    *sorted((ROOT / "connector" / "mapping").glob("*.py")),
    ROOT / "connector" / "ports.py",
    ROOT / "connector" / "partner_center" / "wire.py",
    ROOT / "connector" / "partner_center" / "convert.py",
]
# Everything these files may import; anything else has to be argued for here first.
ALLOWED = {
    "__future__",
    "collections",
    "dataclasses",
    "datetime",
    "decimal",
    "enum",
    "functools",  # caches of parsed templates
    "hashlib",  # fingerprints
    "json",  # canonical text for fingerprints (no file is read)
    "re",
    "string",  # template fields
    "typing",
    "connector.errors",
    "connector.mapping",
    "connector.model",
    "connector.ports",
    "connector.partner_center.wire",
}
IO_LIBRARIES = (
    "requests",
    "msal",
    "sqlalchemy",
    "simple_salesforce",
    "yaml",
    "httpx",
    "urllib3",
    "socket",
    "ssl",
    "sqlite3",
    "werkzeug",
    "apscheduler",
    "structlog",
    "tenacity",
)


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.ImportFrom):
            found.add("connector.model")  # a relative import stays inside the package
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
            found.add("<dynamic __import__>")
    return found


def is_allowed(module: str) -> bool:
    return any(module == ok or module.startswith(ok + ".") for ok in ALLOWED)


@pytest.mark.parametrize("path", PURE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_module_imports_only_the_standard_library_and_the_model(path: Path):
    assert sorted(m for m in imported_modules(path) if not is_allowed(m)) == []


def test_the_scan_sees_every_model_module():
    names = {p.name for p in PURE_FILES}
    assert {"lifecycle.py", "referral.py", "update.py", "values.py", "__init__.py"} <= names
    assert {"parse.py", "inbound.py", "outbound.py", "spec.py", "sources.py"} <= names


def test_the_scan_would_catch_an_io_import(tmp_path: Path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom requests import Session\nimport sqlalchemy.engine\n")
    assert {m for m in imported_modules(bad) if not is_allowed(m)} == {
        "os",
        "requests",
        "sqlalchemy.engine",
    }


def test_importing_the_model_loads_no_io_library():
    code = (
        "import json, sys\n"
        "import connector.model, connector.mapping, connector.partner_center.convert\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    loaded = set(json.loads(result.stdout))
    assert sorted(m for m in loaded if m.split(".")[0] in IO_LIBRARIES) == []
