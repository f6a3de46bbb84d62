"""The CRM-neutral half of finding or creating a write's account and contacts.

Each adapter queries its own CRM for what exists and creates what is missing; these pure
functions do the bookkeeping both share: which distinct accounts and contacts a batch wants,
and, once found or created, which ids each write gets (or why it fails).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from connector.ports import AccountRef, ContactRef, OpportunityWrite

__all__ = ["account_ids", "contact_ids", "fitted_contact", "wanted_accounts", "wanted_contacts"]

Body = dict[str, object]


def fitted_contact(ref: ContactRef, limits: Mapping[str, int]) -> ContactRef:
    """``ref`` with each field that does not fit its CRM column made to fit, so a contact's
    long job title does not dead-letter its referral: names and the title are cut to the
    limit; a phone number too long is dropped (cut, it would be a wrong number). The e-mail is
    never changed: contacts are found by it (one too long is the CRM's to refuse)."""
    changes: dict[str, Any] = {}
    for attr, limit in limits.items():
        value = getattr(ref, attr)
        if isinstance(value, str) and len(value) > limit and attr != "email":
            changes[attr] = None if attr == "phone" else value[:limit].rstrip()
    return replace(ref, **changes) if changes else ref


def wanted_accounts(
    writes: Sequence[OpportunityWrite],
    failed: Mapping[int, str],
    key_of: Callable[[AccountRef], Hashable],
) -> dict[Hashable, AccountRef]:
    """Each distinct account the writes not yet failed name, once, by its CRM's key."""
    wanted: dict[Hashable, AccountRef] = {}
    for i, w in enumerate(writes):
        if w.account is not None and i not in failed:
            wanted.setdefault(key_of(w.account), w.account)
    return wanted


def account_ids(
    writes: Sequence[OpportunityWrite],
    failed: dict[int, str],
    key_of: Callable[[AccountRef], Hashable],
    found: Mapping[Hashable, str],
    errors: Mapping[Hashable, str],
) -> dict[int, str]:
    """Index of write → account id; a write whose account could not be made fails with why."""
    ids: dict[int, str] = {}
    for i, w in enumerate(writes):
        if w.account is not None and i not in failed:
            key = key_of(w.account)
            if key in found:
                ids[i] = found[key]
            else:
                failed[i] = errors[key]
    return ids


def wanted_contacts(
    writes: Sequence[OpportunityWrite],
    failed: Mapping[int, str],
    body_of: Callable[[ContactRef, int], Body],
    on_skip: Callable[[OpportunityWrite], None],
) -> dict[Hashable, tuple[str, Body]]:
    """E-mail (case-folded) → (what it is, the record to create). A contact without an e-mail
    cannot be found again, so it is skipped (``on_skip``) rather than created on every write."""
    wanted: dict[Hashable, tuple[str, Body]] = {}
    for i, w in enumerate(writes):
        for contact in w.contacts if i not in failed else ():
            if contact.email:
                what = f"contact {contact.last_name!r}"
                wanted.setdefault(contact.email.casefold(), (what, body_of(contact, i)))
            else:
                on_skip(w)
    return wanted


def contact_ids(
    writes: Sequence[OpportunityWrite],
    failed: dict[int, str],
    found: Mapping[Hashable, str],
    errors: Mapping[Hashable, str],
) -> dict[int, list[str]]:
    """Index of write → its contacts' ids (each once); a write whose contact failed fails."""
    ids: dict[int, list[str]] = {}
    for i, w in enumerate(writes):
        emails = [c.email.casefold() for c in w.contacts if c.email] if i not in failed else []
        problems = [errors[e] for e in emails if e in errors]
        if problems:
            failed[i] = "; ".join(problems)
        elif emails:
            ids[i] = list(dict.fromkeys(found[e] for e in emails))
    return ids
