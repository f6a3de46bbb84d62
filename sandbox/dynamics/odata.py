"""The OData query options Dataverse accepts on an entity set: ``$filter``, ``$select``,
``$orderby`` (``$top`` and paging are in :mod:`sandbox.dynamics.query`).

``$filter`` is a recursive-descent parser over a real tokenizer::

    expr       := conjunction ("or" conjunction)*
    conjunction:= unary ("and" unary)*
    unary      := "not" unary | "(" expr ")" | function | comparison
    function   := (contains | startswith | endswith) "(" column "," 'string' ")"
    comparison := column (eq | ne | gt | ge | lt | le) literal
    literal    := 'string' ('' is a quote) | number | true | false | null | guid
                | 2026-01-01T00:00:00Z (Edm.DateTimeOffset) | 2026-01-01 (Edm.Date)

Columns are the names a row's JSON uses (``_parentaccountid_value`` for a lookup). A literal
must fit the column's Edm type, else the OData reader's "A binary operator with incompatible
types was detected" (400 ``0x80060888``). String comparisons ignore case (Dataverse's
collation); a comparison with an empty (null) column is false except ``eq null`` / ``ne null``,
as in SQL. Everything the parser refuses raises :class:`DataverseError` (400).

:func:`parse_filter_plan` also tells which rows a filter can match at most (a :data:`Plan`:
``eq`` with a text or guid literal, under ``and`` and ``or``), for the store's indexes; the
predicate still decides.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sandbox.dynamics.errors import DataverseError
from sandbox.dynamics.schema import (
    BIGINT,
    BOOLEAN,
    DATETIME,
    DECIMAL,
    INTEGER,
    LOOKUP_TYPES,
    MEMO,
    MONEY,
    PICKLIST,
    STATE,
    STATUS,
    STRING,
    TEXT_TYPES,
    AttributeDef,
    EntityDef,
)
from sandbox.dynamics.values import format_datetime, parse_datetime

__all__ = [
    "Plan",
    "Predicate",
    "column_value",
    "parse_filter",
    "parse_filter_plan",
    "parse_orderby",
    "parse_select",
]

Predicate = Callable[[Mapping[str, Any]], bool]
Plan = tuple[tuple[str, frozenset[str]], ...]
"""``((column, values), …)``: every row the filter matches has, in one of these columns, one
of its values (text compared without case): the union of these lookups is a superset."""


@dataclass(frozen=True, slots=True)
class _Part:
    test: Predicate
    plan: Plan | None = None


_TOKEN_RE = re.compile(
    r"""(?P<ws>\s+)
    |(?P<string>'(?:[^']|'')*')
    |(?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b)
    |(?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2}))
    |(?P<date>\d{4}-\d{2}-\d{2}\b)
    |(?P<number>-?\d+(?:\.\d+)?\b)
    |(?P<name>[A-Za-z_][A-Za-z0-9_.]*)
    |(?P<punct>[(),])""",
    re.VERBOSE,
)
_OPS = {"eq", "ne", "gt", "ge", "lt", "le"}
_OP_KIND = {
    "eq": "Equal",
    "ne": "NotEqual",
    "gt": "GreaterThan",
    "ge": "GreaterThanOrEqual",
    "lt": "LessThan",
    "le": "LessThanOrEqual",
}
_FUNCTIONS = {"contains", "startswith", "endswith"}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str
    pos: int


@dataclass(frozen=True, slots=True)
class _Literal:
    edm: str
    value: object


def _tokenize(text: str) -> list[_Token]:
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise _syntax(text, pos)
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(_Token(kind, match.group(), pos))
        pos = match.end()
    return tokens


def _syntax(text: str, pos: int) -> DataverseError:
    return DataverseError.odata(f"Syntax error at position {pos} in '{text}'.")


def column_value(attr: AttributeDef, row: Mapping[str, Any]) -> object:
    """The JSON value of ``attr`` in a stored row (a lookup's row id)."""
    value = row.get(attr.logical_name)
    return getattr(value, "row_id", value) if attr.type in LOOKUP_TYPES else value


def _column(table: EntityDef, name: str) -> AttributeDef:
    attr = table.by_value_name(name)
    if attr is None:
        raise DataverseError.no_such_column(name, table.logical_name)
    return attr


_EDM_TYPES = {
    STRING: "Edm.String",
    MEMO: "Edm.String",
    MONEY: "Edm.Decimal",
    DECIMAL: "Edm.Decimal",
    INTEGER: "Edm.Int32",
    PICKLIST: "Edm.Int32",
    STATE: "Edm.Int32",
    STATUS: "Edm.Int32",
    BIGINT: "Edm.Int64",
    BOOLEAN: "Edm.Boolean",
}


def _edm(attr: AttributeDef) -> str:
    if attr.type == DATETIME:
        return "Edm.Date" if attr.date_only else "Edm.DateTimeOffset"
    return _EDM_TYPES.get(attr.type, "Edm.Guid")  # Uniqueidentifier and lookups


class _Parser:
    def __init__(self, table: EntityDef, text: str) -> None:
        self.table = table
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0

    def parse(self) -> _Part:
        if not self.tokens:
            raise _syntax(self.text, 0)
        part = self._or()
        if self.pos < len(self.tokens):
            raise _syntax(self.text, self.tokens[self.pos].pos)
        return part

    def _peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self, text: str | None = None) -> _Token:
        token = self._peek()
        if token is None or (text is not None and token.text != text):
            raise _syntax(self.text, token.pos if token else len(self.text))
        self.pos += 1
        return token

    def _keyword(self, word: str) -> bool:
        token = self._peek()
        if token is not None and token.kind == "name" and token.text == word:
            self.pos += 1
            return True
        return False

    def _or(self) -> _Part:
        parts = [self._and()]
        while self._keyword("or"):
            parts.append(self._and())
        if len(parts) == 1:
            return parts[0]
        tests = [p.test for p in parts]
        plans = [p.plan for p in parts]
        plan = None if None in plans else tuple(x for p in plans if p is not None for x in p)
        return _Part(lambda row: any(t(row) for t in tests), plan)

    def _and(self) -> _Part:
        parts = [self._unary()]
        while self._keyword("and"):
            parts.append(self._unary())
        if len(parts) == 1:
            return parts[0]
        tests = [p.test for p in parts]
        plans = [p.plan for p in parts if p.plan is not None]
        plan = min(plans, key=lambda p: sum(len(v) for _, v in p)) if plans else None
        return _Part(lambda row: all(t(row) for t in tests), plan)

    def _unary(self) -> _Part:
        if self._keyword("not"):
            negated = self._unary().test
            return _Part(lambda row: not negated(row))
        token = self._peek()
        if token is not None and token.text == "(":
            self._take("(")
            inner = self._or()
            self._take(")")
            return inner
        if token is None or token.kind != "name":
            raise _syntax(self.text, token.pos if token else len(self.text))
        following = self.tokens[self.pos + 1] if self.pos + 1 < len(self.tokens) else None
        if following is not None and following.text == "(":
            return self._function()
        return self._comparison()

    def _function(self) -> _Part:
        name = self._take().text
        if name not in _FUNCTIONS:
            raise DataverseError.odata(f"An unknown function with name '{name}' was found.")
        self._take("(")
        attr = _column(self.table, self._take().text)
        self._take(",")
        literal = self._literal()
        self._take(")")
        if attr.type not in TEXT_TYPES or literal.edm != "Edm.String":
            raise DataverseError.odata(
                f"No function signature for the function with name '{name}' matches the "
                "specified arguments."
            )
        needle = str(literal.value).lower()
        test: Callable[[str], bool] = {
            "contains": lambda v: needle in v,
            "startswith": lambda v: v.startswith(needle),
            "endswith": lambda v: v.endswith(needle),
        }[name]
        return _Part(
            lambda row: isinstance(v := row.get(attr.logical_name), str) and test(v.lower())
        )

    def _comparison(self) -> _Part:
        token = self._take()
        attr = _column(self.table, token.text)
        op_token = self._take()
        if op_token.text not in _OPS:
            raise _syntax(self.text, op_token.pos)
        op = op_token.text
        literal = self._literal()
        if literal.value is None:
            if op not in ("eq", "ne"):
                raise DataverseError.odata(
                    f"The operator '{op}' cannot be used with null: use eq null or ne null."
                )
            want_null = op == "eq"
            return _Part(lambda row: (column_value(attr, row) is None) == want_null)
        column_edm = _edm(attr)
        if not _compatible(column_edm, literal.edm):
            raise DataverseError.odata(
                "A binary operator with incompatible types was detected. Found operand types "
                f"'{column_edm}' and '{literal.edm}' for operator kind '{_OP_KIND[op]}'."
            )
        if op not in ("eq", "ne") and column_edm in ("Edm.Boolean", "Edm.Guid"):
            raise DataverseError.odata(
                f"The operator '{op}' is not supported for operands of type '{column_edm}'."
            )
        wanted = _normalise(literal)
        compare = _COMPARE[op]

        def test(row: Mapping[str, Any]) -> bool:
            stored = column_value(attr, row)
            if stored is None:
                return False
            if isinstance(stored, str):
                stored = stored.lower()
            return compare(stored, wanted)

        plan: Plan | None = None
        if op == "eq" and isinstance(literal.value, str):
            plan = ((attr.logical_name, frozenset((literal.value,))),)
        return _Part(test, plan)

    def _literal(self) -> _Literal:  # noqa: PLR0911 (one return per literal kind)
        token = self._take()
        kind, text = token.kind, token.text
        if kind == "string":
            return _Literal("Edm.String", text[1:-1].replace("''", "'"))
        if kind == "guid":
            return _Literal("Edm.Guid", text.lower())
        if kind == "datetime":
            moment = parse_datetime(text)
            if moment is None:
                raise _syntax(self.text, token.pos)
            return _Literal("Edm.DateTimeOffset", format_datetime(moment))
        if kind == "date":
            return _Literal("Edm.Date", text)
        if kind == "number":
            return _Literal("Edm.Decimal" if "." in text else "Edm.Int32", _number(text))
        if kind == "name" and text in ("true", "false"):
            return _Literal("Edm.Boolean", text == "true")
        if kind == "name" and text == "null":
            return _Literal("null", None)
        raise _syntax(self.text, token.pos)


def _number(text: str) -> float | int:
    return float(text) if "." in text else int(text)


def _compatible(column: str, literal: str) -> bool:
    numeric = {"Edm.Decimal", "Edm.Int32", "Edm.Int64"}
    if column in numeric:
        return literal in numeric
    return column == literal


def _normalise(literal: _Literal) -> object:
    value = literal.value
    return value.lower() if isinstance(value, str) else value


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: bool(a == b),
    "ne": lambda a, b: bool(a != b),
    "gt": lambda a, b: bool(a > b),
    "ge": lambda a, b: bool(a >= b),
    "lt": lambda a, b: bool(a < b),
    "le": lambda a, b: bool(a <= b),
}


def parse_filter(table: EntityDef, text: str) -> Predicate:
    return _Parser(table, text).parse().test


def parse_filter_plan(table: EntityDef, text: str) -> tuple[Predicate, Plan | None]:
    """The filter's predicate and, when it can tell, the lookups that find every row it may
    match."""
    part = _Parser(table, text).parse()
    return part.test, part.plan


def parse_select(table: EntityDef, text: str | None) -> list[AttributeDef] | None:
    """The selected columns (``None`` = all). Lookups must be named ``_x_value``."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise DataverseError.odata(f"Syntax error in $select: '{text}'.")
    return [_column(table, n) for n in names]


def parse_orderby(table: EntityDef, text: str) -> list[tuple[AttributeDef, bool]]:
    """``[(column, descending), ...]``."""
    out = []
    for raw in text.split(","):
        parts = raw.split()
        if not parts or len(parts) > 2 or (len(parts) == 2 and parts[1] not in ("asc", "desc")):
            raise DataverseError.odata(f"Syntax error in $orderby: '{text}'.")
        out.append((_column(table, parts[0]), len(parts) == 2 and parts[1] == "desc"))
    return out
