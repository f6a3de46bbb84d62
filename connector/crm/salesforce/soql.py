"""SOQL literals, written so that no value can change the meaning of a query.

A SOQL string literal is single-quoted; inside it a backslash starts an escape sequence. The
escapes Salesforce documents ("Quoted String Escape Sequences") are ``\\n \\r \\t \\b \\f \\"
\\' \\\\``; any other character stands for itself. :func:`soql_quote` escapes the backslash
first-class (so an input backslash can never swallow the escape of the quote after it) and the
single quote (so an input quote can never close the literal early). Injection attempts such as
``x' OR Name != '`` therefore stay inside one literal, as text.
"""

from __future__ import annotations

from datetime import UTC, datetime

_ESCAPES = str.maketrans(
    {
        "\\": "\\\\",
        "'": "\\'",
        '"': '\\"',
        "\n": "\\n",
        "\r": "\\r",
        "\t": "\\t",
        "\b": "\\b",
        "\f": "\\f",
    }
)


def soql_quote(value: str) -> str:
    """``value`` as one SOQL string literal, quotes included: ``O'Brien`` → ``'O\\'Brien'``."""
    if not isinstance(value, str):
        raise TypeError(f"soql_quote takes text, got {type(value).__name__}")
    return "'" + value.translate(_ESCAPES) + "'"


def soql_datetime(moment: datetime) -> str:
    """A SOQL datetime literal in UTC, floored to the second (``2025-01-02T03:04:05Z``).

    Flooring is safe for ``>=`` comparisons: it can only include more, never less.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"refusing a naive datetime in SOQL: {moment!r}")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def soql_in(values: list[str]) -> str:
    """``('a','b')`` for an ``IN`` clause; an empty list is a caller error."""
    if not values:
        raise ValueError("an IN list needs at least one value")
    return "(" + ",".join(soql_quote(v) for v in values) + ")"
