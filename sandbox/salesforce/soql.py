"""The SOQL subset Referral Sync needs: a tokenizer, a parser, a checker and an evaluator.

Grammar (keywords in any case)::

    query     := SELECT (COUNT '(' ')' | field (',' field)*) FROM sobject
                 [WHERE cond] [ORDER BY order (',' order)*] [LIMIT n] [OFFSET n]
    field     := Name | Relationship.Name              (e.g. Account.Name)
    cond      := term ((AND term)* | (OR term)*)       (AND and OR never mix unparenthesised)
    term      := NOT term | '(' cond ')' | field op value | field [NOT] IN '(' value, … ')'
                 | field LIKE 'pattern'
    op        := = | != | <> | < | <= | > | >=
    value     := 'string' | number | true | false | null | 2026-01-31
                 | 2026-01-31T10:00:00Z (or .000+00:00, -05:00) | TODAY | YESTERDAY | TOMORROW
                 | LAST_N_DAYS:n | NEXT_N_DAYS:n
    order     := field [ASC | DESC] [NULLS FIRST | NULLS LAST]

Strings are single-quoted with SOQL's escapes (``\\' \\" \\\\ \\n \\r \\t \\b \\f``, and ``\\%``
``\\_`` inside LIKE); any other backslash is an error. As in Salesforce: text compares
case-insensitively; ``!=`` and ``NOT IN`` match nulls; date fields take date literals and
datetime fields datetime literals, unquoted (a quoted date is an error); ids take 15 or 18
characters; long text areas cannot be filtered or sorted; ``ORDER BY`` puts nulls first
ascending and last descending. Errors are :class:`SoqlError` with Salesforce's codes
(``MALFORMED_QUERY``, ``INVALID_FIELD``, ``INVALID_TYPE``, ``INVALID_QUERY_FILTER_OPERATOR``)
and its "ERROR at Row:1:Column:N" messages.

Evaluation reads only the records a ``WHERE`` can match when it can tell (:func:`_narrowed`:
``=`` and ``IN`` with text literals on the queried sObject's own fields, through the store's
indexes; ``=``, ``>``, ``>=``, ``<`` and ``<=`` with a datetime literal on its ``SystemModstamp``,
through the store's stamp order); every record read is still tested against the whole ``WHERE``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol

from sandbox.salesforce.schema import NUMBER_TYPES, FieldDef, OrgSchema, SObjectDef
from sandbox.salesforce.values import is_id, parse_date, parse_datetime

__all__ = ["Query", "QueryResult", "SoqlError", "execute", "parse", "tokenize"]

MAX_OFFSET = 2000

# -- tokens ------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2})
  | (?P<number>[+-]?\d+(?:\.\d+)?)
  | (?P<string>')
  | (?P<op>!=|<>|<=|>=|=|<|>)
  | (?P<punct>[(),])
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*(?::\d+)?)
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}
LIKE_ESCAPE = "\x00"
"""Marks ``\\%`` and ``\\_`` in a string so LIKE treats them literally."""


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # word, string, number, date, datetime, op, punct, end
    text: str
    pos: int
    value: Any = None

    def is_word(self, *words: str) -> bool:
        return self.kind == "word" and self.text.upper() in words


class SoqlError(Exception):
    """A query Salesforce would refuse: ``code`` (``errorCode``) and ``message``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _located(text: str, pos: int, message: str) -> str:
    line_start = text.rfind("\n", 0, pos) + 1
    row = text.count("\n", 0, pos) + 1
    column = pos - line_start + 1
    line_end = text.find("\n", pos)
    line = text[line_start : line_end if line_end >= 0 else len(text)]
    return f"\n{line}\n{' ' * (column - 1)}^\nERROR at Row:{row}:Column:{column}\n{message}"


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise SoqlError(
                "MALFORMED_QUERY", _located(text, pos, f"unexpected token: '{text[pos]}'")
            )
        kind = match.lastgroup or ""
        if kind == "string":
            value, end = _read_string(text, pos)
            tokens.append(Token("string", text[pos:end], pos, value))
            pos = end
            continue
        if kind != "ws":
            tokens.append(Token(kind, match.group(), pos))
        pos = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


def _read_string(text: str, start: int) -> tuple[str, int]:
    out: list[str] = []
    pos = start + 1
    while pos < len(text):
        char = text[pos]
        if char == "'":
            return "".join(out), pos + 1
        if char == "\\":
            nxt = text[pos + 1 : pos + 2]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
            elif nxt in ("%", "_"):
                out.append(LIKE_ESCAPE + nxt)
            else:
                raise SoqlError(
                    "MALFORMED_QUERY",
                    _located(text, pos, "Invalid string literal: invalid escape sequence"),
                )
            pos += 2
            continue
        out.append(char)
        pos += 1
    raise SoqlError("MALFORMED_QUERY", _located(text, start, "unterminated string literal"))


# -- syntax ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldRef:
    path: str
    pos: int


@dataclass(frozen=True, slots=True)
class Literal:
    kind: str  # string, number, boolean, null, date, datetime, relative
    value: Any
    pos: int


@dataclass(frozen=True, slots=True)
class Compare:
    field: FieldRef
    op: str
    value: Literal


@dataclass(frozen=True, slots=True)
class InList:
    field: FieldRef
    values: tuple[Literal, ...]
    negated: bool


@dataclass(frozen=True, slots=True)
class Like:
    field: FieldRef
    pattern: Literal


@dataclass(frozen=True, slots=True)
class Not:
    operand: Cond


@dataclass(frozen=True, slots=True)
class BoolOp:
    op: str  # AND | OR
    operands: tuple[Cond, ...]


Cond = Compare | InList | Like | Not | BoolOp


@dataclass(frozen=True, slots=True)
class Order:
    field: FieldRef
    descending: bool
    nulls_first: bool


@dataclass(frozen=True, slots=True)
class Query:
    fields: tuple[FieldRef, ...]
    count_only: bool
    sobject: str
    sobject_pos: int
    where: Cond | None = None
    order_by: tuple[Order, ...] = ()
    limit: int | None = None
    offset: int | None = None


_CLAUSE_WORDS = ("FROM", "WHERE", "ORDER", "LIMIT", "OFFSET", "AND", "OR", "NOT", "IN", "LIKE")
_RELATIVE = re.compile(r"^(TODAY|YESTERDAY|TOMORROW|LAST_N_DAYS:\d+|NEXT_N_DAYS:\d+)$", re.I)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def fail(self, token: Token | None = None, message: str | None = None) -> SoqlError:
        token = token or self.tok
        shown = token.text or "<EOF>"
        return SoqlError(
            "MALFORMED_QUERY",
            _located(self.text, token.pos, message or f"unexpected token: {shown}"),
        )

    def advance(self) -> Token:
        token = self.tok
        self.i += 1
        return token

    def expect_word(self, word: str) -> Token:
        if not self.tok.is_word(word):
            raise self.fail()
        return self.advance()

    def expect_punct(self, char: str) -> None:
        if self.tok.kind != "punct" or self.tok.text != char:
            raise self.fail()
        self.advance()

    def field_ref(self) -> FieldRef:
        token = self.tok
        if token.kind != "word" or ":" in token.text or token.text.upper() in _CLAUSE_WORDS:
            raise self.fail()
        self.advance()
        return FieldRef(token.text, token.pos)

    def integer(self) -> int:
        token = self.tok
        if token.kind != "number" or not token.text.isdigit():
            raise self.fail()
        self.advance()
        return int(token.text)

    def query(self) -> Query:
        self.expect_word("SELECT")
        fields: list[FieldRef] = []
        count_only = False
        if self.tok.is_word("COUNT") and self.tokens[self.i + 1].text == "(":
            self.advance()
            self.expect_punct("(")
            self.expect_punct(")")
            count_only = True
        else:
            fields.append(self.field_ref())
            while self.tok.text == ",":
                self.advance()
                fields.append(self.field_ref())
        self.expect_word("FROM")
        sobject = self.tok
        if sobject.kind != "word" or "." in sobject.text:
            raise self.fail()
        self.advance()
        where = None
        if self.tok.is_word("WHERE"):
            self.advance()
            where = self.condition()
        order: list[Order] = []
        if self.tok.is_word("ORDER"):
            self.advance()
            self.expect_word("BY")
            order.append(self.order())
            while self.tok.text == ",":
                self.advance()
                order.append(self.order())
        limit = offset = None
        if self.tok.is_word("LIMIT"):
            self.advance()
            limit = self.integer()
        if self.tok.is_word("OFFSET"):
            self.advance()
            offset = self.integer()
        if self.tok.kind != "end":
            raise self.fail()
        return Query(
            tuple(fields), count_only, sobject.text, sobject.pos, where, tuple(order), limit, offset
        )

    def order(self) -> Order:
        ref = self.field_ref()
        descending = False
        if self.tok.is_word("ASC", "DESC"):
            descending = self.advance().text.upper() == "DESC"
        nulls_first = not descending
        if self.tok.is_word("NULLS"):
            self.advance()
            if not self.tok.is_word("FIRST", "LAST"):
                raise self.fail()
            nulls_first = self.advance().text.upper() == "FIRST"
        return Order(ref, descending, nulls_first)

    def condition(self) -> Cond:
        first = self.term()
        operands = [first]
        op: str | None = None
        while self.tok.is_word("AND", "OR"):
            token = self.advance()
            this = token.text.upper()
            if op is not None and this != op:
                raise self.fail(
                    token, f"unexpected token: {token.text} (use parentheses to mix AND and OR)"
                )
            op = this
            operands.append(self.term())
        return first if op is None else BoolOp(op, tuple(operands))

    def term(self) -> Cond:
        if self.tok.is_word("NOT"):
            self.advance()
            return Not(self.term())
        if self.tok.text == "(" and self.tok.kind == "punct":
            self.advance()
            inner = self.condition()
            self.expect_punct(")")
            return inner
        ref = self.field_ref()
        if self.tok.kind == "op":
            op = self.advance().text
            return Compare(ref, "!=" if op == "<>" else op, self.literal())
        negated = False
        if self.tok.is_word("NOT"):
            self.advance()
            negated = True
            if not self.tok.is_word("IN"):
                raise self.fail()
        if self.tok.is_word("IN"):
            self.advance()
            self.expect_punct("(")
            values = [self.literal()]
            while self.tok.text == ",":
                self.advance()
                values.append(self.literal())
            self.expect_punct(")")
            return InList(ref, tuple(values), negated)
        if self.tok.is_word("LIKE"):
            self.advance()
            pattern = self.literal()
            if pattern.kind != "string":
                raise self.fail(message="LIKE needs a quoted string")
            return Like(ref, pattern)
        raise self.fail()

    def literal(self) -> Literal:  # noqa: PLR0911 - one return per kind of literal
        token = self.advance()
        if token.kind == "string":
            return Literal("string", token.value, token.pos)
        if token.kind == "number":
            return Literal("number", float(token.text), token.pos)
        if token.kind == "date":
            parsed = parse_date(token.text)
            if parsed is None:
                raise self.fail(token, f"invalid date: {token.text}")
            return Literal("date", parsed, token.pos)
        if token.kind == "datetime":
            moment = parse_datetime(token.text)
            if moment is None:
                raise self.fail(token, f"invalid datetime: {token.text}")
            return Literal("datetime", moment, token.pos)
        if token.is_word("TRUE", "FALSE"):
            return Literal("boolean", token.text.upper() == "TRUE", token.pos)
        if token.is_word("NULL"):
            return Literal("null", None, token.pos)
        if token.kind == "word" and _RELATIVE.match(token.text):
            return Literal("relative", token.text.upper(), token.pos)
        raise self.fail(token)


def parse(text: str) -> Query:
    """The syntax tree of ``text`` (no schema checks), or :class:`SoqlError`."""
    return _Parser(text).query()


# -- checking against the org ------------------------------------------------------------------


class RowSource(Protocol):
    def records(self, sobject: str, *, include_deleted: bool = False) -> list[dict[str, Any]]: ...

    def get(
        self, sobject: str, record_id: str, *, include_deleted: bool = False
    ) -> dict[str, Any] | None: ...

    def matching(self, sobject: str, field_name: str, values: Iterable[str]) -> set[str]: ...

    def records_with_ids(
        self, sobject: str, ids: Iterable[str], *, include_deleted: bool = False
    ) -> list[dict[str, Any]]: ...

    def modified_between(
        self,
        sobject: str,
        start: datetime | None,
        end: datetime | None = None,
        *,
        start_inclusive: bool = True,
        end_inclusive: bool = False,
    ) -> set[str]: ...


@dataclass(frozen=True, slots=True)
class Resolved:
    """A field path checked against the schema: ``rel`` is the reference field followed
    (``None`` for a field of the queried sObject) and ``target`` its sObject."""

    fdef: FieldDef
    rel: FieldDef | None = None
    target: SObjectDef | None = None

    @property
    def key(self) -> tuple[str, ...]:
        if self.rel is None:
            return (self.fdef.name,)
        assert self.rel.relationship_name is not None  # noqa: S101 (only relationships resolve)
        return (self.rel.relationship_name, self.fdef.name)


_NO_COLUMN = (
    "No such column '{name}' on entity '{entity}'. If you are attempting to use a custom "
    "field, be sure to append the '__c' after the custom field name. Please reference your "
    "WSDL or the describe call for the appropriate names."
)


@dataclass(slots=True)
class _Checker:
    text: str
    org: OrgSchema
    obj: SObjectDef
    resolved: dict[str, Resolved] = field(default_factory=dict)

    def fail(self, code: str, pos: int, message: str) -> SoqlError:
        return SoqlError(code, _located(self.text, pos, message))

    def resolve(self, ref: FieldRef) -> Resolved:
        parts = ref.path.split(".")
        if len(parts) == 1:
            fdef = self.obj.field(parts[0])
            if fdef is None:
                raise self.fail(
                    "INVALID_FIELD", ref.pos, _NO_COLUMN.format(name=parts[0], entity=self.obj.name)
                )
            result = Resolved(fdef)
        elif len(parts) == 2:
            rel = self.obj.relationship(parts[0])
            target = self.org.sobject(rel.reference_to[0]) if rel else None
            if rel is None or target is None:
                raise self.fail(
                    "INVALID_FIELD",
                    ref.pos,
                    f"Didn't understand relationship '{parts[0]}' in field path. If you are "
                    "attempting to use a custom relationship, be sure to append the '__r' after "
                    "the custom relationship name. Please reference your WSDL or the describe "
                    "call for the appropriate names.",
                )
            fdef = target.field(parts[1])
            if fdef is None:
                raise self.fail(
                    "INVALID_FIELD", ref.pos, _NO_COLUMN.format(name=parts[1], entity=target.name)
                )
            result = Resolved(fdef, rel, target)
        else:
            raise self.fail("MALFORMED_QUERY", ref.pos, f"unsupported field path: {ref.path}")
        self.resolved[ref.path.lower()] = result
        return result

    def check(self, cond: Cond) -> None:
        if isinstance(cond, BoolOp):
            for operand in cond.operands:
                self.check(operand)
        elif isinstance(cond, Not):
            self.check(cond.operand)
        elif isinstance(cond, Compare):
            self.check_value(cond.field, cond.value, cond.op)
        elif isinstance(cond, InList):
            for value in cond.values:
                self.check_value(cond.field, value, "=")
        else:
            res = self.filterable(cond.field)
            if res.fdef.type not in ("string", "textarea", "picklist", "email", "phone", "url"):
                raise self.fail(
                    "INVALID_QUERY_FILTER_OPERATOR",
                    cond.field.pos,
                    f"invalid operator on {res.fdef.type} field: {res.fdef.name}",
                )

    def filterable(self, ref: FieldRef) -> Resolved:
        res = self.resolve(ref)
        if not res.fdef.describe()["filterable"]:
            raise self.fail(
                "INVALID_FIELD",
                ref.pos,
                f"field '{res.fdef.name}' can not be filtered in a query call",
            )
        return res

    def check_value(self, ref: FieldRef, value: Literal, op: str) -> None:
        fdef = self.filterable(ref).fdef
        if value.kind == "null":
            if op not in ("=", "!="):
                raise self.fail("MALFORMED_QUERY", value.pos, "invalid operator for null")
            return
        expected = _expected_kinds(fdef)
        if value.kind not in expected:
            wanted = {"datetime": "dateTime"}.get(fdef.type, fdef.type)
            if fdef.type in NUMBER_TYPES:
                wanted = "double"
            if fdef.type in ("picklist", "textarea", "email", "phone", "url", "id", "reference"):
                wanted = "string"
            quotes = "be" if wanted == "string" else "not be"
            raise self.fail(
                "INVALID_FIELD",
                value.pos,
                f"value of filter criterion for field '{fdef.name}' must be of type {wanted} "
                f"and should {quotes} enclosed in quotes",
            )
        if fdef.type in ("id", "reference") and not is_id(value.value):
            raise self.fail(
                "INVALID_QUERY_FILTER_OPERATOR", value.pos, f"invalid ID field: {value.value}"
            )


_EXPECTED_KINDS = {
    "date": ("date", "relative"),
    "datetime": ("datetime", "relative"),
    "boolean": ("boolean",),
    **dict.fromkeys(NUMBER_TYPES, ("number",)),
}


def _expected_kinds(fdef: FieldDef) -> tuple[str, ...]:
    return _EXPECTED_KINDS.get(fdef.type, ("string",))


# -- evaluation --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueryResult:
    sobject: str
    records: list[dict[str, Any]]
    count_only: bool

    @property
    def total_size(self) -> int:
        return len(self.records)


@dataclass(slots=True)
class _Row:
    """A record with its related records, for evaluation."""

    record: dict[str, Any]
    related: dict[str, dict[str, Any] | None]

    def value(self, res: Resolved) -> object:
        if res.rel is None:
            return self.record.get(res.fdef.name)
        assert res.rel.relationship_name is not None  # noqa: S101
        parent = self.related.get(res.rel.relationship_name)
        return None if parent is None else parent.get(res.fdef.name)


def _typed(fdef: FieldDef, stored: object) -> Any:  # noqa: ANN401 - comparable, per field type
    """Stored wire values as comparable Python values."""
    if stored is None:
        return None
    if fdef.type == "date":
        return parse_date(str(stored))
    if fdef.type == "datetime":
        return parse_datetime(str(stored))
    if fdef.type in ("id", "reference"):
        return str(stored)[:15]
    if isinstance(stored, str):
        return stored.lower()
    return stored


def _literal_value(fdef: FieldDef, lit: Literal) -> Any:  # noqa: ANN401 - as _typed
    if lit.kind == "string":
        text = str(lit.value).replace(LIKE_ESCAPE, "")
        return text[:15] if fdef.type in ("id", "reference") else text.lower()
    return lit.value


def _relative_range(keyword: str, today: date) -> tuple[date, date]:
    """``[first, last]`` days of TODAY, LAST_N_DAYS:n… (org time zone: UTC)."""
    name, _, number = keyword.partition(":")
    n = int(number or 0)
    ranges = {
        "TODAY": (today, today),
        "YESTERDAY": (today - timedelta(days=1), today - timedelta(days=1)),
        "TOMORROW": (today + timedelta(days=1), today + timedelta(days=1)),
        "LAST_N_DAYS": (today - timedelta(days=n), today),
        "NEXT_N_DAYS": (today, today + timedelta(days=n)),
    }
    return ranges[name]


def _compare(fdef: FieldDef, stored: object, op: str, lit: Literal, now: datetime) -> bool:
    value = _typed(fdef, stored)
    if lit.kind == "null":
        return (value is None) == (op == "=")
    if value is None:
        return op == "!="
    if lit.kind == "relative":
        first, last = _relative_range(str(lit.value), now.astimezone(UTC).date())
        low: Any = first
        high: Any = last + timedelta(days=1)
        if fdef.type == "datetime":
            low = datetime.combine(first, time(), UTC)
            high = datetime.combine(last + timedelta(days=1), time(), UTC)
        inside = bool(low <= value < high)
        outcomes = {
            "=": inside,
            "!=": not inside,
            "<": bool(value < low),
            "<=": bool(value < high),
            ">": bool(value >= high),
            ">=": bool(value >= low),
        }
        return outcomes[op]
    target = _literal_value(fdef, lit)
    ops: dict[str, Callable[[Any, Any], bool]] = {
        "=": lambda a, b: bool(a == b),
        "!=": lambda a, b: bool(a != b),
        "<": lambda a, b: bool(a < b),
        "<=": lambda a, b: bool(a <= b),
        ">": lambda a, b: bool(a > b),
        ">=": lambda a, b: bool(a >= b),
    }
    return ops[op](value, target)


def _like(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == LIKE_ESCAPE:
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
        i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


@dataclass(slots=True)
class _Evaluator:
    checker: _Checker
    now: datetime

    def matches(self, cond: Cond, row: _Row) -> bool:
        if isinstance(cond, BoolOp):
            results = (self.matches(c, row) for c in cond.operands)
            return all(results) if cond.op == "AND" else any(results)
        if isinstance(cond, Not):
            return not self.matches(cond.operand, row)
        return self._leaf(cond, row)

    def _leaf(self, cond: Compare | InList | Like, row: _Row) -> bool:
        res = self.checker.resolved[cond.field.path.lower()]
        stored = row.value(res)
        if isinstance(cond, Compare):
            return _compare(res.fdef, stored, cond.op, cond.value, self.now)
        if isinstance(cond, InList):
            hit = any(_compare(res.fdef, stored, "=", v, self.now) for v in cond.values)
            if cond.negated:
                return not hit
            return hit
        if stored is None:
            return False
        return bool(_like(str(cond.pattern.value)).fullmatch(str(stored)))


def _sort(rows: list[_Row], orders: Sequence[Order], checker: _Checker) -> None:
    for order in reversed(orders):
        res = checker.resolved[order.field.path.lower()]
        present = [r for r in rows if r.value(res) is not None]
        absent = [r for r in rows if r.value(res) is None]
        present.sort(key=lambda r: _typed(res.fdef, r.value(res)), reverse=order.descending)
        rows[:] = absent + present if order.nulls_first else present + absent


def execute(
    text: str,
    org: OrgSchema,
    source: RowSource,
    *,
    now: datetime,
    version: str,
    include_deleted: bool = False,
) -> QueryResult:
    """Run ``text`` against ``source``: the records as the REST API returns them."""
    query = parse(text)
    obj = org.sobject(query.sobject)
    if obj is None:
        raise SoqlError(
            "INVALID_TYPE",
            _located(
                text,
                query.sobject_pos,
                f"sObject type '{query.sobject}' is not supported. If you are attempting to use "
                "a custom object, be sure to append the '__c' after the entity name. Please "
                "reference your WSDL or the describe call for the appropriate names.",
            ),
        )
    checker = _Checker(text, org, obj)
    selected = [checker.resolve(ref) for ref in query.fields]
    if query.where is not None:
        checker.check(query.where)
    for order in query.order_by:
        res = checker.resolve(order.field)
        if not res.fdef.describe()["sortable"]:
            raise checker.fail(
                "INVALID_FIELD",
                order.field.pos,
                f"field '{res.fdef.name}' can not be sorted in a query call",
            )
    if query.offset is not None and query.offset > MAX_OFFSET:
        raise SoqlError(
            "NUMBER_OUTSIDE_VALID_RANGE",
            f"Maximum SOQL offset allowed is {MAX_OFFSET}",
        )
    narrowed = None if query.where is None else _narrowed(query.where, checker, source)
    records = (
        source.records(obj.name, include_deleted=include_deleted)
        if narrowed is None
        else source.records_with_ids(obj.name, narrowed, include_deleted=include_deleted)
    )
    rows = [_Row(record, _related(record, obj, checker, source)) for record in records]
    evaluator = _Evaluator(checker, now)
    if query.where is not None:
        rows = [r for r in rows if evaluator.matches(query.where, r)]
    _sort(rows, query.order_by, checker)
    if query.offset:
        rows = rows[query.offset :]
    if query.limit is not None:
        rows = rows[: query.limit]
    if query.count_only:
        return QueryResult(obj.name, [{} for _ in rows], count_only=True)
    return QueryResult(obj.name, [_shape(r, obj, selected, version) for r in rows], False)


_UNINDEXED_TYPES = frozenset({"date", "datetime", "boolean", *NUMBER_TYPES})


def _narrowed(  # noqa: PLR0911 - one answer per kind of condition
    cond: Cond, checker: _Checker, source: RowSource
) -> set[str] | None:
    """Ids of a superset of the records ``cond`` matches, or ``None`` if it cannot tell."""
    if isinstance(cond, Compare):
        if cond.op == "=" and cond.value.kind == "string":
            return _probe(cond.field, (cond.value,), checker, source)
        return _stamp_range(cond, checker, source)
    if isinstance(cond, InList):
        if not cond.negated and all(v.kind == "string" for v in cond.values):
            return _probe(cond.field, cond.values, checker, source)
        return None
    if isinstance(cond, BoolOp):
        parts = [_narrowed(c, checker, source) for c in cond.operands]
        if cond.op == "AND":
            known = [p for p in parts if p is not None]
            return set.intersection(*known) if known else None
        if any(p is None for p in parts):
            return None
        return set().union(*[p for p in parts if p is not None])
    return None  # NOT and LIKE: no index answers them


def _probe(
    ref: FieldRef, values: Sequence[Literal], checker: _Checker, source: RowSource
) -> set[str] | None:
    res = checker.resolved[ref.path.lower()]
    if res.rel is not None or res.fdef.type in _UNINDEXED_TYPES:
        return None
    texts = [str(v.value).replace(LIKE_ESCAPE, "") for v in values]
    return source.matching(checker.obj.name, res.fdef.name, texts)


_STAMP_FIELD = "SystemModstamp"
"""The one field whose ranges the source answers from a sorted order."""


def _stamp_range(cond: Compare, checker: _Checker, source: RowSource) -> set[str] | None:
    """Ids with ``SystemModstamp`` in the range ``cond`` states, if it states one."""
    res = checker.resolved[cond.field.path.lower()]
    if res.rel is not None or res.fdef.name != _STAMP_FIELD or cond.value.kind != "datetime":
        return None
    moment: datetime = cond.value.value
    name = checker.obj.name
    if cond.op in (">", ">="):
        return source.modified_between(name, moment, None, start_inclusive=cond.op == ">=")
    if cond.op in ("<", "<="):
        return source.modified_between(name, None, moment, end_inclusive=cond.op == "<=")
    if cond.op == "=":
        return source.modified_between(name, moment, moment, end_inclusive=True)
    return None  # !=: nearly every row


def _related(
    record: dict[str, Any], obj: SObjectDef, checker: _Checker, source: RowSource
) -> dict[str, dict[str, Any] | None]:
    related: dict[str, dict[str, Any] | None] = {}
    for res in checker.resolved.values():
        if res.rel is None or res.target is None:
            continue
        assert res.rel.relationship_name is not None  # noqa: S101
        ref_id = record.get(res.rel.name)
        related[res.rel.relationship_name] = (
            source.get(res.target.name, ref_id, include_deleted=True) if ref_id else None
        )
    return related


def _attributes(sobject: str, record_id: object, version: str) -> dict[str, str]:
    return {"type": sobject, "url": f"/services/data/v{version}/sobjects/{sobject}/{record_id}"}


def _shape(row: _Row, obj: SObjectDef, selected: list[Resolved], version: str) -> dict[str, Any]:
    out: dict[str, Any] = {"attributes": _attributes(obj.name, row.record.get("Id"), version)}
    for res in selected:
        if res.rel is None:
            out[res.fdef.name] = row.record.get(res.fdef.name)
            continue
        assert res.rel.relationship_name is not None  # noqa: S101
        assert res.target is not None  # noqa: S101
        name = res.rel.relationship_name
        parent = row.related.get(name)
        if parent is None:
            out[name] = None
            continue
        nested = out.get(name) or {
            "attributes": _attributes(res.target.name, parent["Id"], version)
        }
        nested[res.fdef.name] = parent.get(res.fdef.name)
        out[name] = nested
    return out
