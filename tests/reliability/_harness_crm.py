"""The reliability harness, part 2: the CRM side as the salesperson and a comparison see it,
the seeded script of both sides' changes, and the thread that plays a phase of it."""

from __future__ import annotations

import copy
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from sandbox.app import Sandbox
from sandbox.dynamics.salesperson import CANCELED, ON_HOLD, OUT_SOLD
from sandbox.dynamics.store import SALES_USER_ID as DV_SALES_USER_ID
from sandbox.dynamics.store import Lookup
from sandbox.dynamics.tables import ALTERNATE_KEY_COLUMN
from sandbox.dynamics.tables import DECLINE_REASONS as DV_DECLINE_REASONS
from sandbox.partner_center import generate_referrals
from sandbox.salesforce.schema import DECLINE_REASONS, EXTERNAL_ID_FIELD, LOSS_REASONS

# -- the CRM side, as the salesperson and the comparison see it -----------------------------


class CrmSide(Protocol):
    name: str

    def index(self) -> dict[str, str]:
        """Referral id → CRM record id, for every opportunity that has one."""
        ...

    def apply(self, crm_id: str, move: Move) -> None: ...

    def state(self, referral_id: str, crm_id: str) -> str:
        """``new`` (not accepted yet), ``open`` (accepted, open), ``won`` or ``lost``."""
        ...

    def snapshot(self) -> dict[str, dict[str, Any]]: ...

    def counts(self) -> dict[str, int]: ...


@dataclass(frozen=True, slots=True)
class Move:
    """One scripted change. ``side`` is ``crm`` (the salesperson) or ``pc`` (Microsoft)."""

    side: str
    referral_id: str
    kind: str
    args: tuple[Any, ...] = ()


class SalesforceSide:
    name = "salesforce"
    VOLATILE = frozenset(
        {"Id", "SystemModstamp", "LastModifiedDate", "CreatedDate", "LastModifiedById",
         "CreatedById", "AccountId", "ContactId", "attributes"}
    )  # fmt: skip

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.store = sandbox.salesforce.store
        self.person = sandbox.salesforce.salesperson

    def index(self) -> dict[str, str]:
        return {
            str(r[EXTERNAL_ID_FIELD]): str(r["Id"])
            for r in self.store.records("Opportunity")
            if r.get(EXTERNAL_ID_FIELD)
        }

    def record(self, crm_id: str) -> dict[str, Any]:
        found = self.store.get("Opportunity", crm_id)
        assert found is not None
        return found

    def state(self, referral_id: str, crm_id: str) -> str:
        r = self.record(crm_id)
        if r["IsClosed"]:
            return "won" if r["IsWon"] else "lost"
        return "new" if r["StageName"] == "Prospecting" else "open"

    def apply(self, crm_id: str, move: Move) -> None:
        p = self.person
        if move.kind == "accept":
            amount, close = move.args
            p.accept(crm_id, amount, close)
        elif move.kind == "decline":
            p.decline(crm_id, DECLINE_REASONS[move.args[0] % len(DECLINE_REASONS)])
        elif move.kind == "win":
            p.win(crm_id)
        elif move.kind == "lose":
            p.lose(crm_id, LOSS_REASONS[move.args[0] % len(LOSS_REASONS)])
        elif move.kind == "edit":
            amount, close = move.args
            p.edit(crm_id, amount=amount, close_date=close)
        elif move.kind == "bad_accept":  # accepted without an amount: Partner Center refuses
            self.store.edit("Opportunity", crm_id, Amount=None, StageName="Qualification")
        elif move.kind == "fix":
            p.edit(crm_id, amount=move.args[0])
        else:
            raise ValueError(move.kind)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        accounts = {r["Id"]: r.get("Name") for r in self.store.records("Account")}
        out = {}
        for r in self.store.records("Opportunity"):
            key = str(r.get(EXTERNAL_ID_FIELD))
            fields = {k: v for k, v in r.items() if k not in self.VOLATILE}
            fields["account"] = accounts.get(r.get("AccountId"))
            out[key] = fields
        return out

    def counts(self) -> dict[str, int]:
        opps = self.store.records("Opportunity")
        keys = Counter(str(r.get(EXTERNAL_ID_FIELD)) for r in opps)
        accounts = Counter(str(r.get("Name")) for r in self.store.records("Account"))
        contacts = Counter(
            (str(r.get("Email")), str(r.get("AccountId"))) for r in self.store.records("Contact")
        )
        return {
            "opportunities": len(opps),
            "duplicate_opportunities": sum(n - 1 for n in keys.values() if n > 1),
            "accounts": sum(accounts.values()),
            "duplicate_accounts": sum(n - 1 for n in accounts.values() if n > 1),
            "contacts": sum(contacts.values()),
            "duplicate_contacts": sum(n - 1 for n in contacts.values() if n > 1),
        }


NAME_COLUMNS = {
    "account": "name",
    "contact": "emailaddress1",
    "transactioncurrency": "isocurrencycode",
}
"""What a Dataverse lookup is compared by: the row it points at, by a column that is not an id."""


class DynamicsSide:
    name = "dynamics"
    VOLATILE = frozenset(
        {"opportunityid", "versionnumber", "modifiedon", "createdon", "_modifiedby_value",
         "_createdby_value", "_customerid_value", "_parentaccountid_value",
         "_parentcontactid_value", "actualclosedate", "@odata.etag", "overriddencreatedon",
         "_ownerid_value", "_transactioncurrencyid_value"}
    )  # fmt: skip

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.store = sandbox.dataverse.store
        self.person = sandbox.dataverse.salesperson

    def index(self) -> dict[str, str]:
        return {
            str(r[ALTERNATE_KEY_COLUMN]): str(r["opportunityid"])
            for r in self.store.rows("opportunity")
            if r.get(ALTERNATE_KEY_COLUMN)
        }

    def record(self, crm_id: str) -> dict[str, Any]:
        found = self.store.get("opportunity", crm_id)
        assert found is not None
        return dict(found)

    def state(self, referral_id: str, crm_id: str) -> str:
        r = self.record(crm_id)
        if r["statecode"] == 1:
            return "won"
        if r["statecode"] == 2:
            return "lost"
        return "new" if r["statuscode"] == ON_HOLD else "open"

    def apply(self, crm_id: str, move: Move) -> None:
        p = self.person
        if move.kind == "accept":
            value, close = move.args
            p.accept(crm_id, value, close)
        elif move.kind == "decline":
            p.decline(crm_id, DV_DECLINE_REASONS[move.args[0] % len(DV_DECLINE_REASONS)].value)
        elif move.kind == "win":
            p.win(crm_id)
        elif move.kind == "lose":
            p.lose(crm_id, (CANCELED, OUT_SOLD)[move.args[0] % 2])
        elif move.kind == "edit":
            value, close = move.args
            p.edit(crm_id, value=value, close_date=close)
        elif move.kind == "bad_accept":  # In Progress without an estimate: Partner Center refuses
            self.store.write(
                "opportunity", crm_id, {"statuscode": 1, "estimatedvalue": None},
                user_id=_dv_sales_user(),
            )  # fmt: skip
        elif move.kind == "fix":
            p.edit(crm_id, value=move.args[0])
        else:
            raise ValueError(move.kind)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        names: dict[tuple[str, str], object] = {}
        for table, name in NAME_COLUMNS.items():
            names |= {(table, r[f"{table}id"]): r.get(name) for r in self.store.rows(table)}

        def comparable(value: object) -> object:
            if isinstance(value, Lookup):  # ids differ between runs; what they point at must not
                return (value.table, names.get((value.table, value.row_id), value.row_id))
            return value

        return {
            str(r.get(ALTERNATE_KEY_COLUMN)): {
                k: comparable(v) for k, v in r.items() if k not in self.VOLATILE
            }
            for r in self.store.rows("opportunity")
        }

    def counts(self) -> dict[str, int]:
        opps = self.store.rows("opportunity")
        keys = Counter(str(r.get(ALTERNATE_KEY_COLUMN)) for r in opps)
        accounts = Counter(str(r.get("name")) for r in self.store.rows("account"))
        contacts = Counter(
            (str(r.get("emailaddress1")), str(r.get("_parentcustomerid_value")))
            for r in self.store.rows("contact")
        )
        return {
            "opportunities": len(opps),
            "duplicate_opportunities": sum(n - 1 for n in keys.values() if n > 1),
            "accounts": sum(accounts.values()),
            "duplicate_accounts": sum(n - 1 for n in accounts.values() if n > 1),
            "contacts": sum(contacts.values()),
            "duplicate_contacts": sum(n - 1 for n in contacts.values() if n > 1),
        }


def _dv_sales_user() -> str:
    return str(DV_SALES_USER_ID)


def crm_side(sandbox: Sandbox, crm: str) -> CrmSide:
    return SalesforceSide(sandbox) if crm == "salesforce" else DynamicsSide(sandbox)


# -- the script -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScriptSize:
    referrals: int
    phases: int = 3
    crm_share: float = 0.12  # of the referrals touched, per phase, by the salesperson
    pc_share: float = 0.05  # by Microsoft
    new_share: float = 0.02  # new referrals Microsoft sends, per phase


@dataclass(slots=True)
class Script:
    """The seeded referrals and, per phase, Microsoft's new ones (generated on demand, from the
    seed and a fixed clock); moves are decided at the start of each phase from the (converged,
    so identical in every correct run) state."""

    seed: int
    size: ScriptSize
    seeded: list[dict[str, Any]]
    clock: FixedClock
    bad: set[str] = field(default_factory=set)  # referrals scripted to be refused (dead letters)

    @classmethod
    def make(cls, seed: int, size: ScriptSize) -> Script:
        clock = FixedClock(datetime.now(UTC))  # stopped: the same dates in every run and phase
        return cls(seed, size, generate_referrals(size.referrals, seed, clock), clock)

    def copy(self) -> Script:
        """The same script for another run at the same time (its own record of refusals)."""
        return Script(self.seed, self.size, copy.deepcopy(self.seeded), self.clock)

    def arrivals(self, phase: int) -> list[dict[str, Any]]:
        count = max(1, int(self.size.referrals * self.size.new_share))
        return generate_referrals(count, self.seed * 1000 + phase + 1, self.clock)

    def moves(  # noqa: PLR0912 - the script's rules, one after the other
        self, phase: int, referrals: list[dict[str, Any]], crm: CrmSide
    ) -> list[Move]:
        """The phase's moves: decided from the referrals' and opportunities' current state."""
        rng = random.Random(self.seed * 1000 + phase)
        by_id = {r["id"]: r for r in referrals}
        ids = sorted(by_id)
        index = crm.index()
        moves: list[Move] = []
        touched: set[str] = set()
        n_crm = max(2, int(len(ids) * self.size.crm_share))
        n_pc = max(2, int(len(ids) * self.size.pc_share))

        def amount() -> float:
            return float(rng.randrange(5_000, 500_000, 500))

        def close_date() -> str:
            return (date(2027, 1, 1) + timedelta(days=rng.randint(0, 365))).isoformat()

        # The salesperson first: on referrals whose opportunity state is known.
        if phase == 0:  # during the backfill: New referrals, acted on once their opportunity exists
            new = [i for i in ids if by_id[i].get("status") == "New"]
            picks = rng.sample(new, min(n_crm, len(new)))
            # Accepted in the CRM without an amount, on referrals without a value either: Partner
            # Center would refuse it, so it must be dead-lettered (and, once fixed, sent).
            valueless = [i for i in picks if not by_id[i]["details"].get("dealValue")]
            bad = set(valueless[: max(1, len(picks) // 25)])
            for rid in picks:
                if rid in bad:
                    moves.append(Move("crm", rid, "bad_accept"))
                    self.bad.add(rid)
                elif rng.random() < 0.8:
                    moves.append(Move("crm", rid, "accept", (amount(), close_date())))
                else:
                    moves.append(Move("crm", rid, "decline", (rng.randrange(10),)))
                touched.add(rid)
        else:
            states = {rid: crm.state(rid, index[rid]) for rid in ids if rid in index}
            for number, rid in enumerate(sorted(self.bad)):
                if number % 2 == 0 and states.get(rid) == "open" and rid not in touched:
                    moves.append(Move("crm", rid, "fix", (amount(),)))
                    touched.add(rid)
            open_ = [i for i, s in states.items() if s == "open" and i not in self.bad]
            new = [i for i, s in states.items() if s == "new" and by_id[i].get("status") == "New"]
            for rid in rng.sample(open_, min(n_crm // 2, len(open_))):
                kind = rng.choices(["win", "lose", "edit"], weights=[2, 1, 3])[0]
                args: tuple[Any, ...] = (
                    (amount(), close_date()) if kind == "edit" else (rng.randrange(10),)
                )
                moves.append(Move("crm", rid, kind, args))
                touched.add(rid)
            for rid in rng.sample(new, min(n_crm // 2, len(new))):
                moves.append(Move("crm", rid, "accept", (amount(), close_date())))
                touched.add(rid)
        # Then Microsoft, on referrals the salesperson leaves alone this phase.
        free = [i for i in ids if i not in touched and by_id[i].get("status") != "Closed"]
        for rid in rng.sample(free, min(n_pc, len(free))):
            if by_id[rid].get("status") == "New" and rng.random() < 0.25:
                moves.append(Move("pc", rid, "expire"))
            elif by_id[rid].get("status") == "Active" and rng.random() < 0.15:
                moves.append(Move("pc", rid, "close_lost"))
            else:
                moves.append(
                    Move("pc", rid, "notes", (f"Microsoft, phase {phase}: {rng.randrange(10**6)}",))
                )
        rng.shuffle(moves)
        return moves


def apply_pc(sandbox: Sandbox, move: Move) -> None:
    store = sandbox.partner_center.store
    if move.kind == "notes":
        store.edit(move.referral_id, inviteContext={"notes": move.args[0]})
    elif move.kind == "expire":
        store.edit(move.referral_id, status="Closed", substatus="Expired")
    elif move.kind == "close_lost":
        store.edit(move.referral_id, status="Closed", substatus="Lost")
    else:
        raise ValueError(move.kind)


@dataclass(frozen=True, slots=True)
class FixedClock:
    """A clock that does not move: the script's generated dates depend only on its seed."""

    at: datetime

    def now(self) -> datetime:
        return self.at


STALL_S = 300.0
"""How long the driver waits, with no move made and no new opportunity in the CRM, before it
says the referrals whose opportunity the salesperson waits for were lost."""


class Driver(threading.Thread):
    """Plays a phase's moves while the daemon works: Microsoft's at a steady pace once the
    referral has its CRM id, the salesperson's as soon as the opportunity exists (during the
    backfill neither may be there yet)."""

    def __init__(
        self, sandbox: Sandbox, crm: CrmSide, moves: list[Move], arrivals: list[dict[str, Any]]
    ) -> None:
        super().__init__(name="script-driver", daemon=True)
        self.sandbox, self.crm = sandbox, crm
        self.pending = list(moves)
        self.arrivals = list(arrivals)
        self.error: BaseException | None = None
        self.stall_s = STALL_S

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def _run(self) -> None:
        progress = time.monotonic()
        known: dict[str, str] = {}
        while self.pending or self.arrivals:
            if time.monotonic() - progress > self.stall_s:
                waiting = sorted({m.referral_id for m in self.pending})
                raise AssertionError(
                    f"{len(waiting)} referrals never reached the CRM in {self.stall_s:.0f} s "
                    f"(their opportunity does not exist; the salesperson waits): {waiting[:20]}"
                )
            left_before, known_before = len(self.pending) + len(self.arrivals), len(known)
            if self.arrivals:  # shared with the partner now: the change feed shows them now
                store = self.sandbox.partner_center.store
                store.seed_raw(self.arrivals[:5])
                store.stamp_updated([r["id"] for r in self.arrivals[:5]], self.sandbox.clock.now())
                del self.arrivals[:5]
            index = known = self.crm.index()
            left = []
            done = 0
            for move in self.pending:
                if move.side == "pc" and done < 5 and self._settled(move.referral_id):
                    apply_pc(self.sandbox, move)
                    done += 1
                elif move.side == "crm" and move.referral_id in index and done < 5:
                    self.crm.apply(index[move.referral_id], move)
                    done += 1
                else:
                    left.append(move)
            self.pending = left
            if len(self.pending) + len(self.arrivals) < left_before or len(known) > known_before:
                progress = time.monotonic()  # a move made, or the daemon created opportunities
            time.sleep(0.02)

    def _settled(self, referral_id: str) -> bool:
        """Whether Microsoft may change the referral now: the daemon has written its CRM id
        back (during the backfill it may not have yet). Closing a referral before the daemon
        wrote its CRM id makes that write-back moot (a closed referral takes none), so whether
        the link is there in the end would depend on timing, not on the daemon."""
        raw = self.sandbox.partner_center.store.get_raw(referral_id)
        return raw is None or bool(raw.get("externalReferenceId"))
