"""The ops status page: one self-contained HTML5 document (inline CSS, no script, no assets).

Per connection a card: ready or not and why (in words, not colour alone), the lag behind
Partner Center, the last success per direction, the recent cycles and the unresolved dead
letters. A dead letter shows its reason, never its payload (the payload can hold customer
contact data). Every value that comes from a record, a CRM or the config is HTML-escaped.
Times are UTC, shown both as a timestamp and relative to ``now``.
"""

from __future__ import annotations

from datetime import datetime
from html import escape

from connector.daemon.health import ConnectionHealth, describe_duration
from connector.daemon.status_data import describe_time, summary
from connector.daemon.status_style import CSS
from connector.ports import DeadLetter, Direction, RunRecord

__all__ = ["MAIN_COUNTS", "MAX_DEAD_LETTERS", "MAX_RUNS", "REFRESH_SECONDS", "render"]

REFRESH_SECONDS = 15
MAX_RUNS = 12
MAX_DEAD_LETTERS = 50
CRM_NAMES = {"salesforce": "Salesforce", "dynamics": "Dynamics 365"}
ATTENTION_COUNTS = frozenset({"dead_lettered", "conflicts"})
# The counts ops look for first, in this order; any other non-zero count follows.
MAIN_COUNTS = (
    "received",
    "created",
    "updated",
    "unchanged",
    "accept",
    "decline",
    "win",
    "lose",
    "edit",
    "crm_id_written_back",
    "conflicts",
    "dead_lettered",
)


def render(connections: list[ConnectionHealth], now: datetime) -> str:
    """The whole page for these connections as of ``now``."""
    cards = "\n".join(_card(c, now) for c in connections) or (
        '<p class="empty">No connections are configured.</p>'
    )
    as_of = _time(now, now, relative=False)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<title>Referral Sync — status</title>
<style>{CSS}</style>
</head>
<body>
<header>
<h1>Referral Sync — status</h1>
<span class="summary">{escape(summary(connections, now))}</span>
<span class="meta">as of {as_of} · refreshes every {REFRESH_SECONDS} s</span>
</header>
<main>
{cards}
</main>
</body>
</html>
"""


def _card(health: ConnectionHealth, now: datetime) -> str:
    ready, reason = health.ready(now)
    badge = (
        '<span class="badge ok">✓ Ready</span>'
        if ready
        else '<span class="badge bad">✗ Not ready</span>'
    )
    why = "" if ready else f'<p class="reason">{escape(reason)}</p>'
    crm = CRM_NAMES.get(health.crm, health.crm)
    return f"""<section class="card{"" if ready else " not-ready"}">
<div class="card-head"><h2>{escape(health.name)}</h2><span class="crm">{escape(crm)}</span>
{badge}</div>
{why}
<dl class="facts">
{_facts(health, now)}
</dl>
<h3>Recent cycles</h3>
{_runs(health.runs, now)}
<h3>Unresolved dead letters ({len(health.dead_letters)})</h3>
{_dead_letters(health.dead_letters, now)}
</section>"""


def _facts(health: ConnectionHealth, now: datetime) -> str:
    lag = (
        "unknown (no Partner Center change seen yet)"
        if health.lag_seconds is None
        else f"{describe_duration(health.lag_seconds)} behind Partner Center"
    )
    facts = [("Lag", escape(lag))]
    for direction in Direction:
        at = health.last_success(direction)
        facts.append((f"Last {direction} success", "never" if at is None else _time(at, now)))
    facts.append(("Interval", f"every {describe_duration(health.interval_seconds)}"))
    if health.lease_holder is not None:
        facts.append(("Synced by", f"<code>{escape(health.lease_holder)}</code>"))
    if health.token_expires_at is not None:
        expired = health.token_expires_at <= now
        label = "Sign-in lapsed" if expired else "Sign-in lapses if unused"
        when = _time(health.token_expires_at, now)
        facts.append((label, f'<span class="bad">{when}</span>' if expired else when))
    return "\n".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in facts)


def _runs(runs: tuple[RunRecord, ...], now: datetime) -> str:
    if not runs:
        return '<p class="empty">No cycle has run yet.</p>'
    rows = "\n".join(_run_row(run, now) for run in runs[:MAX_RUNS])
    more = _more(len(runs) - MAX_RUNS, "older cycles: referral-sync status")
    return f"""<table>
<thead><tr><th>Direction</th><th>Started (UTC)</th><th>Duration</th><th>Outcome</th>
<th>Counts</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>{more}"""


def _run_row(run: RunRecord, now: datetime) -> str:
    if run.finished_at is None:
        outcome, took = (
            "running",
            f"{describe_duration((now - run.started_at).total_seconds())} so far",
        )
    else:
        outcome = run.outcome or "unknown"
        took = describe_duration((run.finished_at - run.started_at).total_seconds())
    error = f'<span class="bad">{escape(run.errors[0])}</span>' if run.errors else ""
    details = "<br>".join(part for part in (_counts(run), error) if part)
    return (
        f"<tr><td>{escape(str(run.direction))}</td><td>{_time(run.started_at, now)}</td>"
        f'<td class="num">{escape(took)}</td>'
        f'<td><span class="outcome {escape(outcome)}">{escape(outcome)}</span></td>'
        f'<td class="wrap">{details}</td></tr>'
    )


def _counts(run: RunRecord) -> str:
    keys = [k for k in MAIN_COUNTS if run.counts.get(k)]
    keys += sorted(k for k, n in run.counts.items() if n and k not in MAIN_COUNTS)
    if not keys:
        return '<span class="muted">nothing to do</span>' if run.outcome == "ok" else ""
    return " · ".join(_count(k, run.counts[k]) for k in keys)


def _count(key: str, n: int) -> str:
    text = f"{escape(key.replace('_', ' '))} {n}"
    return f'<span class="warn">{text}</span>' if key in ATTENTION_COUNTS else text


def _dead_letters(letters: tuple[DeadLetter, ...], now: datetime) -> str:
    if not letters:
        return '<p class="empty">None.</p>'
    rows = "\n".join(
        f"<tr><td><code>{escape(letter.record_id or '(no id)')}</code></td>"
        f"<td>{escape(str(letter.direction))}</td>"
        f'<td class="num">{letter.attempts}</td>'
        f"<td>{_time(letter.first_seen, now)}</td><td>{_time(letter.last_seen, now)}</td>"
        f'<td class="wrap">{escape(letter.reason)}</td></tr>'
        for letter in letters[:MAX_DEAD_LETTERS]
    )
    more = _more(len(letters) - MAX_DEAD_LETTERS, "the rest: referral-sync dlq list")
    return f"""<table>
<thead><tr><th>Record</th><th>Direction</th><th>Attempts</th><th>First seen (UTC)</th>
<th>Last seen (UTC)</th><th>Reason</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>{more}"""


def _more(hidden: int, where: str) -> str:
    return f'<p class="muted">… and {hidden} more ({escape(where)}).</p>' if hidden > 0 else ""


def _time(at: datetime, now: datetime, *, relative: bool = True) -> str:
    stamp, ago = describe_time(at, now)
    rel = f' <span class="rel">({escape(ago)})</span>' if relative else ""
    return f'<time datetime="{escape(at.isoformat())}">{escape(stamp)}</time>{rel}'
