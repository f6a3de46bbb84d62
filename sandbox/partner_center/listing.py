"""``GET /referrals``: the query options, the pages and the opaque ``$skiptoken``.

A page holds at most 100 referrals (spec §2), or fewer when ``$top`` asks for fewer. When more
remain, ``@odata.nextLink`` carries a ``$skiptoken``: base64url of the position reached and the
whole query, signed with a per-simulator key so an edited token is refused with 400 (the real
token is opaque too). A link is followed as given: ``$skiptoken`` cannot be combined with other
query options.

The token is a *position* in the re-evaluated query, as an OData ``$skip`` is: a referral that
moves in the order between two pages (because it was written) can be skipped or seen twice.
The real API's paging under concurrent writes is UNDOCUMENTED; the client must cope with both.

:func:`page_of` answers the change feed's query (``updatedDateTime`` ranges, ``updatedDateTime
asc``) from the store's index (:mod:`sandbox.partner_center.order`) and every other query with
:func:`run_query`, the full scan; both give the same pages.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from sandbox.partner_center.fields import REFERRAL_PROPERTIES
from sandbox.partner_center.odata import (
    ODataError,
    Raw,
    parse_filter,
    parse_orderby,
    sort_referrals,
)
from sandbox.partner_center.order import Span, span_of

__all__ = [
    "PAGE_SIZE",
    "ListQuery",
    "OrderedReferrals",
    "Page",
    "PageTokens",
    "page_of",
    "parse_list_args",
    "run_query",
]

PAGE_SIZE = 100

_OPTIONS = frozenset({"$filter", "$orderby", "$select", "$top", "$skip", "$count", "$skiptoken"})


@dataclass(frozen=True, slots=True)
class ListQuery:
    """The query options of one list request, as given (re-parsed on every page)."""

    filter: str | None = None
    orderby: str | None = None
    select: str | None = None
    top: int | None = None
    skip: int = 0
    count: bool = False


@dataclass(frozen=True, slots=True)
class Page:
    value: list[Raw]
    next_position: int | None
    count: int | None


def _non_negative(name: str, text: str) -> int:
    if not text.isdigit():
        raise ODataError(f"{name} must be a non-negative integer, found {text!r}")
    return int(text)


def parse_list_args(args: Mapping[str, Sequence[str]], tokens: PageTokens) -> tuple[ListQuery, int]:
    """``(query, position)`` from the URL's query arguments; :class:`ODataError` if wrong.

    Arguments not starting with ``$`` are ignored; unknown ``$`` options (``$expand`` and
    ``$search`` included: no value of them is documented) are refused.
    """
    options: dict[str, str] = {}
    for name, values in args.items():
        if not name.startswith("$"):
            continue
        if name not in _OPTIONS:
            raise ODataError(f"query option {name} is not supported")
        if len(values) != 1:
            raise ODataError(f"query option {name} is given more than once")
        options[name] = values[0]
    if "$skiptoken" in options:
        if len(options) > 1:
            raise ODataError("$skiptoken cannot be combined with other query options")
        return tokens.decode(options["$skiptoken"])
    count_text = options.get("$count", "false")
    if count_text not in ("true", "false"):
        raise ODataError(f"$count must be true or false, found {count_text!r}")
    query = ListQuery(
        filter=options.get("$filter"),
        orderby=options.get("$orderby"),
        select=options.get("$select"),
        top=_non_negative("$top", options["$top"]) if "$top" in options else None,
        skip=_non_negative("$skip", options.get("$skip", "0")),
        count=count_text == "true",
    )
    check_query(query)
    return query, query.skip


def check_query(query: ListQuery) -> None:
    """Parse every option once, so a bad one is refused before any work."""
    if query.filter is not None:
        parse_filter(query.filter)
    if query.orderby is not None:
        parse_orderby(query.orderby)
    if query.select is not None:
        parse_select(query.select)


def parse_select(text: str) -> tuple[str, ...]:
    """``id,status,customerProfile`` → names; only top-level properties of a referral."""
    names = tuple(part.strip() for part in text.split(","))
    for name in names:
        if name not in REFERRAL_PROPERTIES:
            raise ODataError(f"'{name}' cannot be selected (not a property of a referral)")
    return names


class OrderedReferrals(Protocol):
    """What :func:`page_of` reads: the store (a :class:`~sandbox.partner_center.ReferralStore`)."""

    def snapshot(self) -> list[Raw]: ...

    def in_updated_order(self, span: Span, start: int, stop: int) -> tuple[int, list[Raw]]: ...


def page_of(
    referrals: OrderedReferrals, query: ListQuery, position: int, page_size: int = PAGE_SIZE
) -> Page:
    """The page of ``query`` at ``position``: from the index when it can answer, else scanned."""
    keys = parse_orderby(query.orderby) if query.orderby is not None else ()
    span = span_of(query.filter, keys)
    if span is None:
        return run_query(referrals.snapshot(), query, position, page_size)
    total, fetched = referrals.in_updated_order(span, position, position + page_size)
    return _page(query, position, page_size, total, lambda stop: fetched[: stop - position])


def run_query(
    referrals: Iterable[Raw], query: ListQuery, position: int, page_size: int = PAGE_SIZE
) -> Page:
    """The page of ``query`` that starts at ``position`` (an index into the whole result)."""
    matched = list(referrals)
    if query.filter is not None:
        predicate = parse_filter(query.filter)
        matched = [raw for raw in matched if predicate.matches(raw)]
    keys = parse_orderby(query.orderby) if query.orderby is not None else ()
    if keys:
        matched = sort_referrals(matched, keys)
    return _page(query, position, page_size, len(matched), lambda stop: matched[position:stop])


def _page(
    query: ListQuery,
    position: int,
    page_size: int,
    total: int,
    value_until: Callable[[int], list[Raw]],
) -> Page:
    """The page at ``position`` of a result of ``total`` referrals; ``value_until(stop)`` gives
    the result's referrals from ``position`` to ``stop``."""
    end = total if query.top is None else min(total, query.skip + query.top)
    stop = min(position + page_size, end)
    value = value_until(stop) if stop > position else []
    if query.select is not None:
        names = parse_select(query.select)
        value = [{name: raw[name] for name in names if name in raw} for raw in value]
    return Page(
        value=value,
        next_position=stop if stop < end else None,
        count=total if query.count else None,
    )


class PageTokens:
    """Makes and checks ``$skiptoken`` values; the key is random unless given."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def encode(self, query: ListQuery, position: int) -> str:
        payload = json.dumps(
            {"p": position, "q": asdict(query)}, separators=(",", ":"), sort_keys=True
        ).encode()
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def decode(self, token: str) -> tuple[ListQuery, int]:
        invalid = ODataError("$skiptoken is not valid; follow @odata.nextLink as given")
        try:
            encoded_payload, encoded_sig = token.split(".")
            payload, signature = _unb64(encoded_payload), _unb64(encoded_sig)
        except (ValueError, binascii.Error):
            raise invalid from None
        if not hmac.compare_digest(signature, self._sign(payload)):
            raise invalid
        data: Any = json.loads(payload)  # signed by us: well-formed
        return ListQuery(**data["q"]), int(data["p"])

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:16]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
