"""The status page's inline style sheet (no external assets: the page works offline)."""

from __future__ import annotations

__all__ = ["CSS"]

CSS = """
:root { --ok: #17663a; --ok-bg: #e3f4e8; --warn: #8a5300; --warn-bg: #fdf0d8;
  --bad: #a4161a; --bad-bg: #fde4e4; --ink: #1d2330; --muted: #5b6475; --line: #d9dde5; }
* { box-sizing: border-box; }
body { margin: 0; padding: 1.5rem 2rem 3rem; font: 15px/1.45 system-ui, -apple-system,
  "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--ink); background: #f4f6f9; }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: .5rem 1.5rem;
  margin-bottom: 1.25rem; }
h1 { font-size: 1.5rem; margin: 0; }
h2 { font-size: 1.2rem; margin: 0; }
h3 { font-size: .95rem; margin: 1.25rem 0 .4rem; color: var(--muted); text-transform: uppercase;
  letter-spacing: .04em; }
.meta, .muted { color: var(--muted); }
.summary { font-weight: 600; }
.card { background: #fff; border: 1px solid var(--line); border-left: 6px solid var(--ok);
  border-radius: 8px; padding: 1rem 1.25rem 1.25rem; margin-bottom: 1.25rem; }
.card.not-ready { border-left-color: var(--bad); }
.card-head { display: flex; flex-wrap: wrap; align-items: center; gap: .5rem 1rem; }
.crm { color: var(--muted); }
.badge { display: inline-block; padding: .1rem .6rem; border-radius: 999px; font-weight: 600;
  font-size: .9rem; }
.badge.ok { color: var(--ok); background: var(--ok-bg); }
.badge.bad { color: var(--bad); background: var(--bad-bg); }
.reason { margin: .5rem 0 0; color: var(--bad); overflow-wrap: anywhere; }
.facts { display: grid; grid-template-columns: repeat(auto-fit, minmax(15rem, 1fr));
  gap: .5rem 1.5rem; margin: .9rem 0 0; }
.facts div { min-width: 0; }
.facts dt { font-size: .8rem; color: var(--muted); text-transform: uppercase;
  letter-spacing: .04em; }
.facts dd { margin: 0; font-weight: 500; }
table { width: 100%; border-collapse: collapse; font-size: .9rem; }
th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { font-weight: 600; color: var(--muted); background: #f8f9fb; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
time { white-space: nowrap; }
td.wrap { overflow-wrap: break-word; min-width: 12rem; max-width: 36rem; }
td code { white-space: nowrap; }
code { font: .85rem ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.outcome { font-weight: 600; }
.outcome.ok { color: var(--ok); }
.outcome.partial { color: var(--warn); }
.outcome.failed { color: var(--bad); }
.outcome.running { color: var(--muted); }
.rel { color: var(--muted); white-space: nowrap; }
.warn { color: var(--warn); }
.bad { color: var(--bad); }
.empty { color: var(--muted); font-style: italic; margin: .25rem 0; }
"""
