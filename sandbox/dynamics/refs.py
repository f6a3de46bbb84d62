"""Entity references in URLs and ``@odata.bind`` values: ``opportunities(<guid>)``,
``opportunities(rs_partnercenterreferralid='R''1')``, ``/accounts(<guid>)`` or the absolute URL.

Key values are OData literals: strings in single quotes (a quote doubled inside), integers,
or a bare GUID for the primary key. Alternate-key string values may not contain the characters
Dataverse forbids in URL key values (``/ < > * % & : \\ ? +``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sandbox.dynamics.errors import INVALID_ARGUMENT, DataverseError
from sandbox.dynamics.values import is_guid

__all__ = ["API_PREFIX", "EntityRef", "parse_bind", "parse_key", "split_segment"]

API_PREFIX = "/api/data/v9.2/"
FORBIDDEN_KEY_CHARS = frozenset("/<>*%&:\\?+")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INT_RE = re.compile(r"^-?\d+$")


@dataclass(frozen=True, slots=True)
class EntityRef:
    """A table's entity set and either a primary key (``row_id``) or alternate-key values."""

    entity_set: str
    row_id: str | None = None
    key: tuple[tuple[str, str | int], ...] = ()


def split_segment(segment: str) -> tuple[str, str | None]:
    """``"opportunities(x='a')"`` → ``("opportunities", "x='a'")``; no parentheses → ``None``."""
    if "(" not in segment:
        return segment, None
    name, _, rest = segment.partition("(")
    if not rest.endswith(")"):
        raise DataverseError.odata(f"Bad Request - Error in query syntax: '{segment}'.")
    return name, rest[:-1]


def parse_key(text: str) -> tuple[str | None, tuple[tuple[str, str | int], ...]]:
    """``(row_id, ())`` for a bare GUID, else ``(None, ((column, value), ...))``."""
    stripped = text.strip()
    if is_guid(stripped.lower()):
        return stripped.lower(), ()
    pairs: list[tuple[str, str | int]] = []
    pos = 0
    while pos < len(text):
        eq = text.find("=", pos)
        if eq < 0:
            raise _bad_key(text)
        name = text[pos:eq].strip()
        if not _NAME_RE.match(name):
            raise _bad_key(text)
        value, pos = _literal(text, eq + 1)
        pairs.append((name, value))
        while pos < len(text) and text[pos] == " ":
            pos += 1
        if pos < len(text):
            if text[pos] != ",":
                raise _bad_key(text)
            pos += 1
    if not pairs:
        raise _bad_key(text)
    return None, tuple(pairs)


def _literal(text: str, pos: int) -> tuple[str | int, int]:
    while pos < len(text) and text[pos] == " ":
        pos += 1
    if pos < len(text) and text[pos] == "'":
        out: list[str] = []
        pos += 1
        while pos < len(text):
            char = text[pos]
            if char == "'":
                if text[pos + 1 : pos + 2] == "'":
                    out.append("'")
                    pos += 2
                    continue
                value = "".join(out)
                if FORBIDDEN_KEY_CHARS.intersection(value):
                    raise DataverseError(
                        400,
                        INVALID_ARGUMENT,
                        f"Invalid character in key value '{value}': alternate key values used in "
                        "a URL cannot contain / < > * % & : \\ ? +",
                    )
                return value, pos + 1
            out.append(char)
            pos += 1
        raise _bad_key(text)
    end = text.find(",", pos)
    end = len(text) if end < 0 else end
    raw = text[pos:end].strip()
    if not _INT_RE.match(raw):
        raise _bad_key(text)
    return int(raw), end


def _bad_key(text: str) -> DataverseError:
    return DataverseError.odata(f"Bad Request - Error in query syntax: invalid key '{text}'.")


def parse_bind(value: object, service_root: str) -> EntityRef:
    """An ``@odata.bind`` value: ``/set(key)``, ``set(key)`` or ``<service root>/set(key)``."""
    if not isinstance(value, str) or not value:
        raise DataverseError.odata(f"The @odata.bind value '{value}' is not a valid entity URI.")
    text = value
    for prefix in (service_root.rstrip("/") + "/", API_PREFIX, "/"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    name, key = split_segment(text)
    if key is None or "/" in name or not name:
        raise DataverseError.odata(f"The @odata.bind value '{value}' is not a valid entity URI.")
    row_id, pairs = parse_key(key)
    return EntityRef(name, row_id, pairs)
