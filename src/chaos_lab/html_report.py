"""One HTML page per experiment and per gameday (``report.html``), self-contained: the CSS
inline, the timelines as inline PNG (``data:`` URIs), no script or font or image fetched
from anywhere (its Content-Security-Policy forbids it), so it opens as it is from a CI
artifact, a mail or a laptop offline.

An experiment's page: the verdict and how the journal ended; where and what ran (target,
preset, tool version, git revision, the experiment file's sha256); the verdict table, each
tolerance against what each run measured, BEFORE and AFTER side by side; everything measured,
side by side too; the timelines (outcomes, latency, the breakers' changes, the fault's window
shaded); the breakers' changes as a list; the answer audit where there is one (answers by
class, false answers with examples). A gameday's page: one row per experiment, then each
experiment's section.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from html import escape
from typing import TYPE_CHECKING

from chaos_lab.experiment import RunResult
from chaos_lab.report import (
    ANSWER_CLASSES,
    check_of,
    checks_of,
    ended_early,
    heading,
    measured_rows,
)

if TYPE_CHECKING:
    from chaos_lab.journal import Journal

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: #1c2128; margin: 0; background: #f6f8fa; }
main { max-width: 1400px; margin: 0 auto; padding: 24px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #d0d7de; }
h3 { font-size: 15px; margin: 18px 0 6px; }
section.experiment { background: #fff; border: 1px solid #d0d7de; border-radius: 8px;
                     padding: 8px 20px 20px; margin: 20px 0; }
table { border-collapse: collapse; margin: 6px 0 12px; background: #fff; }
th, td { border: 1px solid #d0d7de; padding: 4px 10px; text-align: left;
         vertical-align: top; }
th { background: #eef1f4; font-weight: 600; }
table.measured td + td, table.audit td + td { text-align: right;
                                             font-variant-numeric: tabular-nums; }
.pass { color: #1a7f37; font-weight: 600; }
.fail { color: #cf222e; font-weight: 600; }
.muted { color: #57606a; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 12px; color: #fff;
         font-weight: 700; letter-spacing: .03em; }
.badge.pass { background: #1a7f37; color: #fff; }
.badge.fail { background: #cf222e; color: #fff; }
.badge.status { background: #57606a; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 8px 0; }
dl.meta dt { color: #57606a; } dl.meta dd { margin: 0; font-family: ui-monospace, monospace; }
img.timeline { max-width: 100%; border: 1px solid #d0d7de; background: #fff; }
code { font-family: ui-monospace, monospace; font-size: 13px; }
"""

# Marks each timeline once it has decoded, and the page once every one has: what a headless
# browser's DOM shows (tests/test_html_report.py). Inline: nothing is fetched.
SCRIPT = """
document.addEventListener("DOMContentLoaded", function () {
  var images = Array.prototype.slice.call(document.querySelectorAll("img.timeline"));
  function mark() {
    var drawn = images.filter(function (i) { return i.complete && i.naturalWidth > 0; });
    drawn.forEach(function (i) { i.dataset.rendered = "yes"; });
    document.body.dataset.timelines = drawn.length + "/" + images.length;
  }
  images.forEach(function (i) { i.addEventListener("load", mark); });
  mark();
});
"""

POLICY = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
          "script-src 'unsafe-inline'")


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n"
            f"<script>{SCRIPT}</script>\n</head>\n<body>\n<main>\n{body}\n</main>\n"
            f"</body>\n</html>\n")


def _verdict_badge(passed: bool) -> str:
    word = "PASS" if passed else "FAIL"
    return f'<span class="badge {word.lower()} verdict">{word}</span>'


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "",
           row_class: str = "") -> str:
    """A table from cells that are HTML already (escape text before)."""
    out = [f'<table class="{cls}">' if cls else "<table>", "<thead><tr>"]
    out += [f"<th>{h}</th>" for h in head]
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append(f'<tr class="{row_class}">' if row_class else "<tr>")
        out += [f"<td>{cell}</td>" for cell in row]
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _run_heading(run: RunResult) -> str:
    switches = " ".join(f"{k}={str(v).lower()}" for k, v in run.switches.items())
    return f'{escape(heading(run))}<br><span class="muted">{escape(switches)}</span>'


def _judged(run: RunResult, name: str) -> str:
    check = check_of(run, name)
    if check is None:
        return '<span class="muted">-</span>'
    mark = '<span class="pass">ok</span>' if check.passed else '<span class="fail">FAIL</span>'
    return f"{escape(check.shown(check.measured))} {mark}"


def _hypothesis(run: RunResult) -> str:
    early = ended_early(run)
    if early is not None:
        gating = "" if run.gating else ' <span class="muted">(not gating: BEFORE)</span>'
        return f'<span class="fail">{escape(early)}</span>{gating}'
    if run.passed:
        return '<span class="pass">holds</span>'
    return '<span class="fail">VIOLATED</span>' + ("" if run.gating else
                                                    ' <span class="muted">(expected: BEFORE)'
                                                    "</span>")


def verdict_table(runs: list[RunResult]) -> str:
    """Each tolerance, its rule, and what each run measured against it."""
    rows = [[escape(check.title), f"<code>{escape(check.expected)}</code>",
             *(_judged(run, check.name) for run in runs)] for check in checks_of(runs)]
    table = _table(["tolerance", "must be", *(_run_heading(r) for r in runs)], rows,
                   cls="verdict", row_class="check")
    hypothesis = "".join(["<tr class=\"hypothesis\"><th>hypothesis</th><th></th>",
                          *(f"<th>{_hypothesis(r)}</th>" for r in runs), "</tr>"])
    return table.replace("</tbody></table>", f"{hypothesis}</tbody></table>")


def measured_table(runs: list[RunResult]) -> str:
    rows = [[escape(name), *(escape(c) for c in cells)] for name, cells in measured_rows(runs)]
    return _table(["measured", *(_run_heading(r) for r in runs)], rows, cls="measured")


def breakers_table(runs: list[RunResult]) -> str:
    rows = [[escape(run.label), f"{change['t']:g} s", escape(str(change["service"])),
             escape(str(change["state"]))] for run in runs for change in run.breakers]
    if not rows:
        return '<p class="muted">No breaker state was read (not reachable from here, or the ' \
               "run stopped before its traffic).</p>"
    return ('<p class="muted">Each service\'s breaker, polled once a second from its '
            "/health/deep; the first state of each is where it started.</p>"
            + _table(["run", "at", "service", "state"], rows, cls="breakers"))


def audit_section(runs: list[RunResult]) -> str:
    """The answer audit: every order try's answer held against the database after the
    drain (chaos_lab.audit)."""
    audited = [r for r in runs if r.answers or r.false_answers is not None]
    if not audited:
        return '<p class="muted">No answer audit: the runs did not get to the drain.</p>'
    rows = [[escape(r.label), *(str(r.answers.get(c, 0)) for c in ANSWER_CLASSES),
             "not audited" if r.false_answers is None else str(r.false_answers), str(r.lost),
             str(r.accepted)] for r in audited]
    out = _table(["run", *ANSWER_CLASSES, "false answers", "lost", "accepted"], rows,
                 cls="audit")
    for run in audited:
        if run.false_examples:
            examples = [[escape(str(e.get(k, ""))) for k in ("order_id", "answer", "attempt",
                                                             "final", "why")]
                        for e in run.false_examples]
            out += (f"<h3>{escape(run.label)}: false answers (the first "
                    f"{len(examples)})</h3>"
                    + _table(["order", "answer", "try", "in the database", "why false"],
                             examples, cls="false"))
    return out


def _timeline(png: bytes | None, name: str) -> str:
    if not png:
        return '<p class="muted">No timeline: no traffic ran.</p>'
    data = base64.b64encode(png).decode()
    return (f'<img class="timeline" alt="timeline of {escape(name)}: outcomes per second, '
            f'latency, breaker changes, the fault window shaded" '
            f'src="data:image/png;base64,{data}">')


def _meta(journal: Journal) -> str:
    data = journal.data()
    items = [("target", data["target"]), ("preset", data["preset"]),
             ("status", data["status"] + (f" ({data.get('reason') or data.get('error')})"
                                          if data.get("reason") or data.get("error") else "")),
             ("started", data["started"]), ("ended", data.get("ended", "-")),
             ("duration", f"{data['duration_seconds']:g} s"
              if data.get("duration_seconds") is not None else "-"),
             ("tool version", data["tool_version"])]
    if "git_revision" in data:
        items.append(("git revision", data["git_revision"]
                      + (" (with uncommitted changes)" if data.get("git_dirty") else "")))
    if "experiment_file" in data:
        items += [("experiment file", data["experiment_file"]["path"]),
                  ("its sha256", data["experiment_file"]["sha256"])]
    settings = "; ".join(f"{name}: " + " ".join(f"{k}={str(v).lower()}" for k, v in sw.items())
                         for name, sw in data["settings"].items())
    items.append(("settings", settings or "-"))
    return '<dl class="meta">' + "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>"
                                        for k, v in items) + "</dl>"


def experiment_section(journal: Journal, png: bytes | None, level: int = 1) -> str:
    """An experiment's part: its page's body, or its section of a gameday's page."""
    runs = journal.runs
    h, sub = f"h{level}", f"h{level + 1}"
    fault = runs[0].fault if runs else "-"
    out = [f'<section class="experiment" id="{escape(journal.experiment)}">',
           f"<{h}>{escape(journal.experiment)} {_verdict_badge(journal.passed)} "
           f'<span class="badge status">{escape(journal.status)}</span></{h}>',
           f'<p class="muted">fault <code>{escape(fault)}</code>, {escape(journal.preset)} '
           f"preset" + (f" — {escape(journal.description)}" if journal.description else "")
           + "</p>",
           _meta(journal)]
    if runs:
        out += [f"<{sub}>Verdict</{sub}>", verdict_table(runs),
                f"<{sub}>Measured, {' / '.join(escape(r.label) for r in runs)}</{sub}>",
                measured_table(runs),
                f"<{sub}>Timelines</{sub}>", _timeline(png, journal.experiment),
                f"<{sub}>Breakers</{sub}>", breakers_table(runs),
                f"<{sub}>Answer audit</{sub}>", audit_section(runs)]
    else:
        out.append('<p class="muted">No run started.</p>')
    out.append("</section>")
    return "\n".join(out)


def experiment_page(journal: Journal, png: bytes | None) -> str:
    return _page(f"chaos-shop: {journal.experiment}: {'PASS' if journal.passed else 'FAIL'}",
                 experiment_section(journal, png))


def gameday_page(journals: list[tuple[Journal, bytes | None]], status: str,
                 started: str, ended: str | None, planned: int) -> str:
    """The gameday's verdict table, then every experiment's section."""
    passed = status in ("completed", "aborted") and len(journals) == planned \
        and all(j.passed for j, _ in journals)
    rows = []
    for journal, _ in journals:
        by_label = {r.label: r for r in journal.runs}
        rows.append([f'<a href="#{escape(journal.experiment)}">{escape(journal.experiment)}</a>',
                     f"<code>{escape(journal.runs[0].fault if journal.runs else '-')}</code>",
                     *(_brief(by_label.get(label)) for label in ("BEFORE", "AFTER")),
                     escape(journal.status), _verdict_badge(journal.passed)])
    head = ["experiment", "fault", "BEFORE: fragile settings", "AFTER: resilient settings",
            "status", "verdict"]
    body = [f"<h1>gameday {_verdict_badge(passed)} "
            f'<span class="badge status">{escape(status)}</span></h1>',
            f'<p class="muted">{len(journals)} of {planned} experiments; started {escape(started)}'
            + (f", ended {escape(ended)}" if ended else "") + "</p>",
            _table(head, rows, cls="gameday", row_class="experiment-row")]
    body += [experiment_section(journal, png, level=2) for journal, png in journals]
    return _page(f"chaos-shop gameday: {'PASS' if passed else 'FAIL'}", "\n".join(body))


def _brief(run: RunResult | None) -> str:
    if run is None:
        return '<span class="muted">-</span>'
    early = ended_early(run)
    if early is not None:
        return f'<span class="fail">{escape(early)}</span>'
    failed = [f"{c.title} {c.shown(c.measured)}" for c in run.checks if not c.passed]
    if not failed:
        return '<span class="pass">holds</span>'
    return '<span class="fail">violated</span>: ' + escape(", ".join(failed))

