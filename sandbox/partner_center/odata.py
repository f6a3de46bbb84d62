"""The subset of OData v4 that Partner Center documents for listing referrals.

``$filter`` is parsed by a small recursive-descent parser over a real tokenizer::

    filter     := conjunction EOF
    conjunction:= primary ("and" primary)*
    primary    := "(" conjunction ")" | comparison
    comparison := field op literal
    op         := eq | ne | gt | ge | lt | le
    literal    := 'string' | datetime | guid | null      ('' escapes a quote)

Only ``and`` is documented (spec §2), so ``or``, ``not`` and functions are refused with 400,
as are fields the documentation does not list as filterable. Datetimes may be written bare
(``updatedDateTime ge 2026-01-01T00:00:00Z``, OData v4) or quoted; GUIDs bare (as in the live
``links.relatedReferrals`` URIs) or quoted (as in the docs). Datetime fields take every
comparison; the others (GUIDs, enums, strings, the team e-mail) only ``eq``/``ne``. Enum
literals must be values of the enum. Comparisons follow OData's null rules: a missing or
unreadable stored value never satisfies ``gt/ge/lt/le`` and ``ne`` is exactly ``not eq``.

``$orderby`` takes ``createdDateTime`` and ``updatedDateTime``, ``asc`` (default) or ``desc``;
null sorts lowest. Ties are broken by ``id`` ascending (a stable order chosen by the simulator:
the real API's order on ties is UNDOCUMENTED, so the client must not rely on it).

Every problem raises :class:`ODataError` with a message for the ``invalidRequest`` envelope.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeAlias

from sandbox.partner_center.wiretime import ticks

__all__ = [
    "FILTERABLE",
    "ORDERABLE",
    "Filter",
    "ODataError",
    "OrderKey",
    "parse_filter",
    "parse_orderby",
    "sort_referrals",
]

Raw: TypeAlias = Mapping[str, Any]


class ODataError(ValueError):
    """A query the simulator (and, as far as documented, Partner Center) refuses."""


# -- fields --------------------------------------------------------------------------------


class Kind(Enum):
    DATETIME = "datetime"
    GUID = "guid"
    ENUM = "enum"
    STRING = "string"
    EMAIL = "email"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """A filterable field: its type and how to read its value(s) from a raw referral."""

    name: str
    kind: Kind
    read: Callable[[Raw], list[object]]
    enum: frozenset[str] = frozenset()


def _at(*path: str) -> Callable[[Raw], list[object]]:
    def read(raw: Raw) -> list[object]:
        node: object = raw
        for key in path:
            if not isinstance(node, Mapping):
                return [None]
            node = node.get(key)
        return [node]

    return read


def _team_emails(raw: Raw) -> list[object]:
    team = raw.get("team")
    if not isinstance(team, list):
        return []
    return [member.get("email") for member in team if isinstance(member, Mapping)]


_STATUSES = frozenset({"None", "New", "Active", "Closed"})
_SUBSTATUSES = frozenset(
    {"None", "Pending", "Received", "Accepted", "Won", "Lost", "Declined", "Expired"}
)

# Documented filterable fields only (spec §2: the 2019 page and the current examples).
FILTERABLE: dict[str, FieldSpec] = {
    spec.name: spec
    for spec in (
        FieldSpec("engagementId", Kind.GUID, _at("engagementId")),
        FieldSpec("status", Kind.ENUM, _at("status"), _STATUSES),
        FieldSpec("substatus", Kind.ENUM, _at("substatus"), _SUBSTATUSES),
        FieldSpec("updatedDateTime", Kind.DATETIME, _at("updatedDateTime")),
        FieldSpec("email", Kind.EMAIL, _team_emails),
        FieldSpec(
            "qualification",
            Kind.ENUM,
            _at("qualification"),
            frozenset({"None", "Direct", "MarketingQualified", "SalesQualified"}),
        ),
        FieldSpec("direction", Kind.ENUM, _at("direction"), frozenset({"Incoming", "Outgoing"})),
        FieldSpec(
            "customerProfile/address/country",
            Kind.STRING,
            _at("customerProfile", "address", "country"),
        ),
    )
}

ORDERABLE = frozenset({"createdDateTime", "updatedDateTime"})

_OPERATORS = frozenset({"eq", "ne", "gt", "ge", "lt", "le"})
_EQUALITY = frozenset({"eq", "ne"})

# -- tokens --------------------------------------------------------------------------------

_GUID_PATTERN = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
_TOKEN_PATTERNS: tuple[tuple[str, str], ...] = (
    ("SPACE", r"\s+"),
    ("LPAREN", r"\("),
    ("RPAREN", r"\)"),
    ("COMMA", r","),
    ("STRING", r"'(?:[^']|'')*'"),
    ("DATETIME", r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})"),
    ("GUID", _GUID_PATTERN + r"\b"),
    ("DATE", r"\d{4}-\d{2}-\d{2}\b"),
    ("NUMBER", r"-?\d+(?:\.\d+)?\b"),
    ("NAME", r"[A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)*"),
)
_LEXER = re.compile("|".join(f"(?P<{name}>{pattern})" for name, pattern in _TOKEN_PATTERNS))
_GUID = re.compile(_GUID_PATTERN)


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    text: str
    pos: int


def tokenize(text: str) -> list[Token]:
    """Tokens of ``text`` (spaces dropped) ending with an ``EOF`` token."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _LEXER.match(text, pos)
        if match is None or match.lastgroup is None:
            raise ODataError(f"unexpected character {text[pos]!r} at position {pos}")
        if match.lastgroup != "SPACE":
            tokens.append(Token(match.lastgroup, match.group(), pos))
        pos = match.end()
    tokens.append(Token("EOF", "", len(text)))
    return tokens


# -- filter tree ---------------------------------------------------------------------------


class Filter:
    """A parsed ``$filter``: ``matches(raw referral) -> bool``."""

    def matches(self, raw: Raw) -> bool:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class And(Filter):
    parts: tuple[Filter, ...]

    def matches(self, raw: Raw) -> bool:
        return all(part.matches(raw) for part in self.parts)


@dataclass(frozen=True, slots=True)
class Comparison(Filter):
    """``field op expected``; ``expected`` is already in the field's comparable form."""

    field: FieldSpec
    op: str
    expected: object  # int ticks for datetimes, str otherwise, None for null

    def matches(self, raw: Raw) -> bool:
        values = [_comparable(self.field.kind, value) for value in self.field.read(raw)]
        if self.op == "ne":
            return not any(value == self.expected for value in values)
        if self.op == "eq":
            return any(value == self.expected for value in values)
        return any(_ordered(self.op, value, self.expected) for value in values)


def _comparable(kind: Kind, value: object) -> object:
    if value is None:
        return None
    if kind is Kind.DATETIME:
        return ticks(value)  # unreadable → None: then only ``ne`` can be true
    if not isinstance(value, str):
        return None
    return value.lower() if kind in (Kind.GUID, Kind.EMAIL) else value


def _ordered(op: str, value: object, expected: object) -> bool:
    if not isinstance(value, int) or not isinstance(expected, int):
        return False
    match op:
        case "gt":
            return value > expected
        case "ge":
            return value >= expected
        case "lt":
            return value < expected
        case _:
            return value <= expected


# -- parser --------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.index = 0

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def take(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def expect(self, kind: str, what: str) -> Token:
        token = self.current
        if token.kind != kind:
            raise ODataError(f"expected {what} at position {token.pos}, found {_show(token)}")
        return self.take()

    def parse(self) -> Filter:
        if self.current.kind == "EOF":
            raise ODataError("$filter is empty")
        result = self.conjunction()
        if self.current.kind != "EOF":
            token = self.current
            if token.kind == "NAME" and token.text in ("or", "not"):
                raise ODataError(f"operator '{token.text}' is not supported in $filter")
            raise ODataError(f"expected 'and' at position {token.pos}, found {_show(token)}")
        return result

    def conjunction(self) -> Filter:
        parts = [self.primary()]
        while self.current.kind == "NAME" and self.current.text == "and":
            self.take()
            parts.append(self.primary())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def primary(self) -> Filter:
        if self.current.kind == "LPAREN":
            self.take()
            inner = self.conjunction()
            self.expect("RPAREN", "')'")
            return inner
        return self.comparison()

    def comparison(self) -> Filter:
        token = self.expect("NAME", "a field name")
        if token.text == "not":
            raise ODataError("operator 'not' is not supported in $filter")
        if self.current.kind == "LPAREN":
            raise ODataError(f"function '{token.text}' is not supported in $filter")
        spec = FILTERABLE.get(token.text)
        if spec is None:
            known = ", ".join(FILTERABLE)
            raise ODataError(f"field '{token.text}' cannot be filtered on (filterable: {known})")
        op_token = self.expect("NAME", "a comparison operator")
        op = op_token.text
        if op not in _OPERATORS:
            raise ODataError(f"unknown operator '{op}' at position {op_token.pos}")
        if op not in _EQUALITY and spec.kind is not Kind.DATETIME:
            raise ODataError(f"operator '{op}' cannot be used on '{spec.name}' (only eq, ne)")
        literal = self.take()
        return Comparison(spec, op, _literal_for(spec, op, literal))


def _show(token: Token) -> str:
    return "the end" if token.kind == "EOF" else repr(token.text)


def _unquote(token: Token) -> str:
    return token.text[1:-1].replace("''", "'")


def _literal_for(spec: FieldSpec, op: str, token: Token) -> object:
    """The literal converted to what :meth:`Comparison.matches` compares against."""
    if token.kind == "NAME" and token.text == "null":
        if op not in _EQUALITY:
            raise ODataError(f"null cannot be compared with '{op}'")
        return None
    where = f"'{spec.name}' at position {token.pos}"
    if spec.kind is Kind.DATETIME:
        if token.kind == "DATETIME" or (token.kind == "STRING" and "T" in token.text):
            value = ticks(token.text if token.kind == "DATETIME" else _unquote(token))
            if value is not None:
                return value
        raise ODataError(f"{where} needs a datetime with a time zone, found {_show(token)}")
    if spec.kind is Kind.GUID:
        text = token.text if token.kind == "GUID" else _unquote(token)
        if token.kind in ("GUID", "STRING") and _GUID.fullmatch(text):
            return text.lower()
        raise ODataError(f"{where} needs a GUID, found {_show(token)}")
    if token.kind != "STRING":
        raise ODataError(f"{where} needs a quoted string, found {_show(token)}")
    text = _unquote(token)
    if spec.kind is Kind.ENUM and text not in spec.enum:
        known = ", ".join(sorted(spec.enum))
        raise ODataError(f"'{text}' is not a valid {spec.name} (known: {known})")
    return text.lower() if spec.kind is Kind.EMAIL else text


def parse_filter(text: str) -> Filter:
    """Parse a ``$filter`` value; :class:`ODataError` says what is wrong and where."""
    return _Parser(text).parse()


# -- ordering ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderKey:
    field: str
    descending: bool = False


def parse_orderby(text: str) -> tuple[OrderKey, ...]:
    """``updatedDateTime asc, createdDateTime desc`` → keys; unknown fields are refused."""
    tokens = tokenize(text)
    keys: list[OrderKey] = []
    index = 0
    while True:
        token = tokens[index]
        if token.kind != "NAME":
            raise ODataError(f"expected a field name in $orderby at position {token.pos}")
        if token.text not in ORDERABLE:
            known = ", ".join(sorted(ORDERABLE))
            raise ODataError(f"'{token.text}' cannot be used in $orderby (orderable: {known})")
        if any(key.field == token.text for key in keys):
            raise ODataError(f"'{token.text}' appears twice in $orderby")
        index += 1
        descending = False
        if tokens[index].kind == "NAME" and tokens[index].text in ("asc", "desc"):
            descending = tokens[index].text == "desc"
            index += 1
        keys.append(OrderKey(token.text, descending))
        if tokens[index].kind == "EOF":
            return tuple(keys)
        if tokens[index].kind != "COMMA":
            raise ODataError(f"expected ',' in $orderby at position {tokens[index].pos}")
        index += 1


def sort_referrals(referrals: Iterable[Raw], keys: Sequence[OrderKey]) -> list[Raw]:
    """Sorted by ``keys``, then by ``id`` ascending on ties; null datetimes sort lowest."""
    result = sorted(referrals, key=lambda raw: str(raw.get("id")))
    for key in reversed(keys):
        # ``reverse=True`` keeps sort stability: ties stay in ascending id order
        result.sort(key=_datetime_sort_key(key.field), reverse=key.descending)
    return result


def _datetime_sort_key(name: str) -> Callable[[Raw], tuple[int, int]]:
    def key(raw: Raw) -> tuple[int, int]:
        return _datetime_key(raw.get(name))

    return key


def _datetime_key(value: object) -> tuple[int, int]:
    parsed = ticks(value)
    return (0, 0) if parsed is None else (1, parsed)
