"""The report page's stylesheet, inlined into every page (the page needs no network)."""

from __future__ import annotations

CSS = """
:root { --fg: #1d2330; --muted: #5b6475; --line: #e3e7ee; --bg: #f4f5f8; --card: #fff; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", sans-serif; }
main { max-width: 1060px; margin: 0 auto; padding: 24px 20px 40px; }
header h1 { font-size: 21px; margin: 0 0 4px; word-break: break-all; }
.sub, .muted, footer { color: var(--muted); }
.sub { margin: 0; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: 16px 20px; margin: 16px 0; }
h2 { font-size: 15px; margin: 18px 0 10px; }
section > h2:first-child { margin-top: 0; }
h2 small { color: var(--muted); font-weight: 400; }
figure { margin: 0 0 22px; }
figcaption { font-weight: 600; margin: 0 0 4px; }
svg.chart { display: block; width: 100%; height: auto; }
svg .plot { fill: #fbfcfd; stroke: var(--line); }
svg .grid { stroke: #e9ecf2; stroke-width: 1; }
svg .tick, svg .unit { font-size: 11px; fill: var(--muted); font-family: inherit; }
svg path { fill: none; stroke-width: 1.4; stroke-linejoin: round; stroke-linecap: round; }
svg path.band { fill-opacity: .22; stroke-width: .7; stroke-opacity: .45; }
svg .clock { font-size: 10px; opacity: .8; }
svg .hover rect { fill: transparent; }
svg .hover rect:hover { fill: rgba(29, 35, 48, .06); }
.note { font-size: 12px; color: var(--muted); margin: 2px 0 0; }
nav.toc { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 13px; margin: 10px 0 0; }
nav.toc a { color: #2f55b8; text-decoration: none; }
nav.toc a:hover { text-decoration: underline; }
section h2[id] { scroll-margin-top: 8px; }
.errkey { color: #c2410c; font-weight: 600; }
.legend { display: flex; flex-wrap: wrap; gap: 2px 16px; font-size: 12px; margin-top: 2px; }
.legend i { display: inline-block; width: 10px; height: 10px; border-radius: 2px;
  margin-right: 5px; vertical-align: -1px; }
.legend small { color: var(--muted); }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line);
  vertical-align: top; overflow-wrap: anywhere; }
th { width: 190px; color: var(--muted); font-weight: 500; }
table.grid th { width: auto; }
details { margin: 10px 0; }
summary { cursor: pointer; font-weight: 600; }
ul.pkgs { columns: 3 220px; font-size: 12px; color: var(--muted); margin: 8px 0; }
.tail { max-height: 560px; overflow: auto; border-radius: 8px; background: #11161f;
  display: flex; flex-direction: column-reverse; }  /* opens scrolled to the last line */
pre { background: #11161f; color: #d7dce5; padding: 12px 14px; border-radius: 8px;
  margin: 0; white-space: pre-wrap; overflow-wrap: anywhere;
  font: 12px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
pre .err { color: #ff9c8f; }
.problems { border-color: #f3c7a5; background: #fff8f2; }
.problems li { color: #9a3412; }
footer { font-size: 12px; margin-top: 8px; }
@media (max-width: 600px) {
  main { padding: 12px 8px 24px; }
  section { padding: 12px 10px; }
  th { width: 110px; }
  .legend { font-size: 11px; }
  /* A phone shrinks a 960-wide chart's ticks to 4 px: keep them legible, scroll sideways. */
  figure { overflow-x: auto; }
  svg.chart { min-width: 680px; }
}
"""
