"""The simulated environment's metadata: tables, columns, choices and alternate keys.

:class:`OrgSchema` answers ``EntityDefinitions`` (see :mod:`sandbox.dynamics.metadata`) and
holds what the store enforces: column types, ``MaxLength``, option values, which columns may be
written on create or update, the alternate keys, change tracking. Logical names are lower
case and, as in Dataverse, matched exactly. The default tables are in
:mod:`sandbox.dynamics.tables`.

Tests change it as a customizer would: :meth:`OrgSchema.remove_attribute`,
:meth:`OrgSchema.remove_option`, :meth:`OrgSchema.add_key`, :meth:`OrgSchema.remove_customizations`
(an environment where nobody has set Referral Sync up yet); :meth:`OrgSchema.reset` restores the
defaults. The Web API's own metadata writes (:mod:`sandbox.dynamics.customize`) use
:meth:`OrgSchema.add_attribute` and :meth:`OrgSchema.add_key`; a key they create is ``Pending``
until its index is built (:meth:`OrgSchema.set_key_status`), and only an ``Active`` key can
address rows or keeps them unique.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

__all__ = ["DEFAULT_SOLUTIONS", "AttributeDef", "EntityDef", "KeyDef", "OptionDef", "OrgSchema"]

# AttributeType values (the metadata's "AttributeType")
STRING = "String"
MEMO = "Memo"
MONEY = "Money"
DATETIME = "DateTime"
BOOLEAN = "Boolean"
PICKLIST = "Picklist"
STATE = "State"
STATUS = "Status"
LOOKUP = "Lookup"
CUSTOMER = "Customer"
UNIQUEIDENTIFIER = "Uniqueidentifier"
INTEGER = "Integer"
BIGINT = "BigInt"
DECIMAL = "Decimal"

LOOKUP_TYPES = frozenset({LOOKUP, CUSTOMER})
OPTION_TYPES = frozenset({PICKLIST, STATE, STATUS})
TEXT_TYPES = frozenset({STRING, MEMO})

# EntityKeyIndexStatus values (the key's index is built by a background job)
KEY_PENDING = "Pending"
KEY_IN_PROGRESS = "InProgress"
KEY_ACTIVE = "Active"
KEY_FAILED = "Failed"

DEFAULT_PUBLISHER_PREFIX = "new"
"""The customization prefix of the Default solution's publisher: what a component created
without ``MSCRM.SolutionUniqueName`` must start with."""
DEFAULT_SOLUTIONS: Mapping[str, str] = {"ReferralSync": "rs"}
"""The unmanaged solutions a partner has made (unique name → its publisher's prefix): the one
docs/dynamics-setup.md asks for, with a publisher whose prefix is ``rs``."""


@dataclass(frozen=True, slots=True)
class OptionDef:
    """One choice value. ``state`` is the statecode a statuscode belongs to; ``default_status``
    the default statuscode of a statecode; ``invariant`` a statecode's invariant name."""

    value: int
    label: str
    state: int | None = None
    default_status: int | None = None
    invariant: str | None = None


@dataclass(frozen=True, slots=True)
class AttributeDef:
    logical_name: str
    type: str
    display_name: str
    schema_name: str = ""
    required: str = "None"  # None | ApplicationRequired | SystemRequired | Recommended
    max_length: int | None = None
    date_only: bool = False
    options: tuple[OptionDef, ...] = ()
    targets: tuple[str, ...] = ()
    valid_for_create: bool = True
    valid_for_update: bool = True
    custom: bool = False
    format_name: str | None = None

    @property
    def value_name(self) -> str:
        """The name a row's JSON uses: ``_x_value`` for lookups, else the logical name."""
        return f"_{self.logical_name}_value" if self.type in LOOKUP_TYPES else self.logical_name

    def navigation_names(self) -> dict[str, str]:
        """``{navigation property: target table}`` for ``@odata.bind`` (Customer lookups have
        one per target, suffixed with the table: ``customerid_account``)."""
        if self.type == CUSTOMER:
            return {f"{self.logical_name}_{t}": t for t in self.targets}
        if self.type == LOOKUP and self.targets:
            return {self.logical_name: self.targets[0]}
        return {}

    def option(self, value: int) -> OptionDef | None:
        return next((o for o in self.options if o.value == value), None)


@dataclass(frozen=True, slots=True)
class KeyDef:
    """An alternate key. ``status`` is its EntityKeyIndexStatus; a key made through the Web API
    starts ``Pending`` at ``created_at`` and its index is ready at ``ready_at`` (sandbox time)."""

    logical_name: str
    schema_name: str
    attributes: tuple[str, ...]
    display_name: str = ""
    status: str = KEY_ACTIVE
    created_at: datetime | None = None
    ready_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.status == KEY_ACTIVE


@dataclass(frozen=True, slots=True)
class EntityDef:
    logical_name: str
    entity_set: str
    primary_id: str
    primary_name: str
    display_name: str
    object_type_code: int
    attributes: tuple[AttributeDef, ...]
    keys: tuple[KeyDef, ...] = ()
    change_tracking: bool = True
    enforced_required: tuple[str, ...] = ()
    """ApplicationRequired columns the simulator refuses to leave empty on create (see
    :mod:`sandbox.dynamics.tables` for why only these)."""
    metadata_id: str = ""

    def attribute(self, name: str) -> AttributeDef | None:
        return next((a for a in self.attributes if a.logical_name == name), None)

    def by_value_name(self, name: str) -> AttributeDef | None:
        return next((a for a in self.attributes if a.value_name == name), None)

    def navigation(self, name: str) -> tuple[AttributeDef, str] | None:
        """``(lookup column, target table)`` for a single-valued navigation property."""
        for attr in self.attributes:
            target = attr.navigation_names().get(name)
            if target is not None:
                return attr, target
        return None

    def key(self, columns: Iterable[str]) -> KeyDef | None:
        """The *active* key on exactly ``columns`` (a key whose index is not built yet cannot
        address rows)."""
        wanted = frozenset(columns)
        return next((k for k in self.keys if k.active and frozenset(k.attributes) == wanted), None)


@dataclass(slots=True)
class OrgSchema:
    """Thread-safe: metadata changes replace whole :class:`EntityDef` values."""

    defaults: tuple[EntityDef, ...]
    base_currency: str = "USD"
    solutions: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_SOLUTIONS))
    _entities: dict[str, EntityDef] = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._entities = {e.logical_name: e for e in self.defaults}

    def entity(self, logical_name: str) -> EntityDef | None:
        with self._lock:
            return self._entities.get(logical_name)

    def by_set(self, entity_set: str) -> EntityDef | None:
        with self._lock:
            return next((e for e in self._entities.values() if e.entity_set == entity_set), None)

    def entities(self) -> list[EntityDef]:
        with self._lock:
            return list(self._entities.values())

    # -- a customizer's changes --------------------------------------------------------------

    def remove_attribute(self, entity: str, column: str) -> None:
        """Delete a column (and any alternate key on it), as a customizer might by mistake."""
        self._change(
            entity,
            lambda e: replace(
                e,
                attributes=tuple(a for a in e.attributes if a.logical_name != column),
                keys=tuple(k for k in e.keys if column not in k.attributes),
            ),
        )

    def remove_option(self, entity: str, column: str, value: int) -> None:
        """Delete one value of a choice column."""

        def change(e: EntityDef) -> EntityDef:
            attrs = tuple(
                replace(a, options=tuple(o for o in a.options if o.value != value))
                if a.logical_name == column
                else a
                for a in e.attributes
            )
            return replace(e, attributes=attrs)

        self._change(entity, change)

    def add_key(self, entity: str, key: KeyDef) -> None:
        self._change(entity, lambda e: replace(e, keys=(*e.keys, key)))

    def add_attribute(self, entity: str, attr: AttributeDef) -> None:
        self._change(entity, lambda e: replace(e, attributes=(*e.attributes, attr)))

    def set_key_status(self, entity: str, key_name: str, status: str) -> None:
        def change(e: EntityDef) -> EntityDef:
            keys = tuple(
                replace(k, status=status) if k.logical_name == key_name else k for k in e.keys
            )
            return replace(e, keys=keys)

        self._change(entity, change)

    def remove_customizations(self, entity: str, prefix: str) -> None:
        """Delete every custom column whose logical name starts with ``prefix`` (``"rs_"``) and
        every key on one: the table as it is before anyone sets Referral Sync up."""
        self._change(
            entity,
            lambda e: replace(
                e,
                attributes=tuple(
                    a for a in e.attributes if not (a.custom and a.logical_name.startswith(prefix))
                ),
                keys=tuple(
                    k for k in e.keys if not any(c.startswith(prefix) for c in k.attributes)
                ),
            ),
        )

    def set_change_tracking(self, entity: str, enabled: bool) -> None:
        self._change(entity, lambda e: replace(e, change_tracking=enabled))

    def reset(self) -> None:
        with self._lock:
            self._entities = {e.logical_name: e for e in self.defaults}
            self.solutions = dict(DEFAULT_SOLUTIONS)

    def _change(self, entity: str, change: Callable[[EntityDef], EntityDef]) -> None:
        with self._lock:
            current = self._entities.get(entity)
            if current is None:
                raise KeyError(f"no table {entity!r}")
            self._entities[entity] = change(current)
