"""A self-contained HTML report (tables + charts, works offline) and a CSV of the leaderboard. Pure functions."""

from __future__ import annotations

import html
import time

from compression.core.errors import LabError
from compression.evaluation import advisor
from compression.presentation import figures, inspection, tables


def leaderboard_csv(rows: list[dict]) -> str:
    df = tables.frame(rows)
    if df.empty:
        return ""
    keep = ["name", "kind", "parent", "method", "accuracy", "ci_low", "ci_high", "f1", "agreement", "ece", "size_mb",
            "params", "nonzero_params", "latency_p50_ms", "latency_p95_ms", "throughput", "cpu_seconds_per_1000",
            "peak_memory_mb", "speedup", "size_ratio", "retention"]
    return df[[c for c in keep if c in df]].to_csv(index=False)


PRINT_CHART_PX = 680  # A4 (186 mm) and Letter (192 mm) between 12 mm margins hold ~700 CSS px: charts redraw to fit

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;line-height:1.4}
h1{font-size:1.6rem}
h2{margin-top:2rem}
table{border-collapse:collapse;font-size:13px}
th,td{padding:4px 8px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
.n{text-align:right;white-space:nowrap}
td.t{min-width:6em}
.wide{overflow-x:auto}
.chart{max-width:1000px}
.note,.muted{color:#555}
.matrices{display:flex;flex-wrap:wrap;gap:0 2rem}
table.confusion caption{text-align:left;font-weight:600;padding:4px 0}
table.confusion td.hit{font-weight:700;background:#eef2f8}
ul.provenance li{margin-bottom:.5rem}
@page{margin:14mm 12mm}
@media print{
  body{margin:0;font-size:10pt}
  h1{font-size:16pt}
  h2{font-size:13pt;break-after:avoid}
  .wide{overflow:visible}
  table{width:100%;font-size:8pt}
  th,td{padding:2px 3px}
  td.t{overflow-wrap:break-word;min-width:0}
  thead{display:table-header-group}
  tr,.chart,.summary{break-inside:avoid}
  .chart{max-width:100%}
  table.confusion{width:auto}
  .matrices,table.examples tr{break-inside:avoid}
  .modebar-container{display:none!important}
}
"""

# Plotly draws at the width the screen gave it; before printing, redraw every chart at the page's width (and back).
PRINT_SCRIPT = """<script>
(function(){
  function fit(width){
    document.querySelectorAll('.chart .js-plotly-plot').forEach(function(gd){
      Plotly.relayout(gd, width ? {width: width} : {width: null, autosize: true});
    });
  }
  window.addEventListener('beforeprint', function(){ fit(%d); });
  window.addEventListener('afterprint', function(){ fit(null); });
})();
</script>""" % PRINT_CHART_PX


def html_report(rows: list[dict], title: str = "BERT Compression Lab report", note: str = "",
                losses: list[dict] | None = None) -> str:
    """A page a stakeholder can open offline or print: a plain-language summary and the pick per deployment scenario
    first, then the leaderboard, charts, what the best variants lose, every measurement and where the speed figures
    came from. ``losses``: :func:`compression.evaluation.inspection.inspect` results, one per variant to show
    (:func:`loss_picks` says which); None or empty for a run without stored per-example predictions."""
    df = tables.frame(rows)
    charts = [figures.accuracy_vs_latency(df), figures.accuracy_vs_size(df), figures.latency_bars(df),
              figures.size_bars(df)]
    chart_html = "".join(
        '<div class="chart">' + fig.to_html(full_html=False, include_plotlyjs="inline" if i == 0 else False,
                                            config={"displaylogo": False}) + "</div>"
        for i, fig in enumerate(charts))
    board = table_html(tables.leaderboard(rows), "board")
    full = tables.leaderboard(rows, full=True)
    quality = [c for c in QUALITY_COLUMNS if c in full]  # two tables of ~10 columns each fit a printed page
    speed = ["variant"] + [c for c in full.columns if c not in quality and c != "status"]  # status: leaderboard
    e = html.escape
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{e(title)}</title>
<style>{STYLE}</style></head><body>
<h1>{e(title)}</h1><p class="note">{e(note)} Generated {e(time.strftime("%Y-%m-%d %H:%M %Z"))}.
Accuracy, F1, agreement and ECE on the test split; speed on the machine described under Provenance.</p>
<section class="summary"><h2>Summary</h2>{summary_html(rows)}</section>
<h2>Leaderboard</h2><div class="wide">{board}</div>
<h2>Charts</h2>{chart_html}
<h2>What the best variants lose</h2>{losses_html(losses or [], rows)}
<h2>All measurements</h2><h3>Quality</h3><div class="wide">{table_html(full[quality], "board full")}</div>
<h3>Size and speed</h3><div class="wide">{table_html(full[speed], "board full")}</div>
<h2>Provenance</h2>{provenance_html(rows)}
{PRINT_SCRIPT}</body></html>"""


QUALITY_COLUMNS = ["variant", "technique", "kind", "parent", "accuracy %", "95% CI", "vs teacher", "McNemar p",
                   "retention %", "macro-F1", "agreement %", "ECE"]
TEXT_COLUMNS = {"variant", "technique", "kind", "parent", "status", "gold", "text"}


def table_html(df, css_class: str) -> str:
    """A DataFrame as an escaped HTML table whose figures stay on one line (right-aligned) while names may wrap:
    what lets a 20-column table fit a printed page without splitting a number."""
    e = html.escape
    kinds = ["t" if c in TEXT_COLUMNS else "n" for c in df.columns]
    head = "".join(f"<th class='{k}'>{e(str(c))}</th>" for k, c in zip(kinds, df.columns))
    body = "".join("<tr>" + "".join(f"<td class='{k}'>{e(str(v))}</td>" for k, v in zip(kinds, row)) + "</tr>"
                   for row in df.itertuples(index=False))
    return f"<table class='{e(css_class)}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def summary_html(rows: list[dict], min_retention: float = 0.97) -> str:
    """What the numbers mean, in two sentences, and the variant to ship for each deployment scenario."""
    e = html.escape
    teacher = next((r for r in rows if r.get("kind") == "teacher"), None)
    if not rows:
        return "<p>No variants yet: build a recipe, then export the report again.</p>"
    if not (teacher and teacher.get("accuracy")):
        return ("<p>These results hold no teacher with a test accuracy, so nothing can be compared against it; the "
                "leaderboard below lists the variants as measured.</p>")
    broken = sum(1 for r in rows if (r.get("status") or "ok") != "ok")
    facts = [f"{teacher['accuracy']:.1%} test accuracy"]
    facts += [f"{teacher['latency_p50_ms']:,.1f} ms per sentence (p50)"] if teacher.get("latency_p50_ms") else []
    facts += [f"{teacher['size_mb']:,.1f} MB"] if teacher.get("size_mb") else []
    text = (f"This report compares {len(rows) - 1} compressed variant(s) with the teacher, <b>{e(teacher['name'])}</b> "
            f"({e(', '.join(facts))}). For each deployment scenario below, the pick is the variant that does best "
            f"on what that scenario cares about, among the healthy variants that keep at least {min_retention:.0%} "
            f"of the teacher's accuracy.")
    if broken:
        text += f" {broken} variant(s) failed their integrity check and are never picked."
    return f"<p>{text}</p>{scenario_table(advisor.scenario_summary(rows, min_retention))}"


def scenario_table(summary: list[dict]) -> str:
    """``advisor.scenario_summary`` as an HTML table: scenario, what counts, pick, accuracy kept, speed-up, size."""
    e = html.escape
    head = ("<table class='scenarios'><thead><tr><th>scenario</th><th>what counts</th><th>pick</th>"
            "<th>accuracy kept</th><th>speed-up (p50)</th><th>size</th></tr></thead><tbody>")
    body = []
    for s in summary:
        what = f"{s['objective']}" + (f": {s['value_text']}" if s["value_text"] else "")
        if s["variant"] is None:
            cells = [f"none — {e(s['reason'] or '')}", "", "", ""]
        else:
            cells = [f"<b>{e(s['variant'])}</b>", _fmt(s["accuracy_kept"], "{:.1%}"), _fmt(s["speedup"], "{:.1f}x"),
                     _fmt(s["size_mb"], "{:,.1f} MB") + _fmt(s["size_ratio"], " ({:.1f}x smaller)")]
        body.append(f"<tr><td><b>{e(s['title'])}</b><br><span class='muted'>{e(s['description'])}</span></td>"
                    f"<td>{e(what)}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return head + "".join(body) + "</tbody></table>"


def _fmt(value, template: str) -> str:
    return "" if value is None else html.escape(template.format(value))


def provenance_html(rows: list[dict]) -> str:
    """Where the speed figures came from, as HTML built from the same items as the dashboard's Markdown panel."""
    items = tables.provenance_items(rows)
    if not items:
        return f"<p>{html.escape(tables.NO_BENCHMARK)}</p>"
    return "<ul class='provenance'>" + "".join(
        f"<li><b>{html.escape(', '.join(names))}</b> — {html.escape(text)}</li>" for names, text in items) + "</ul>"


LOSS_EXAMPLES = 5       # disagreements shown each way per variant
LOSS_TEXT_CHARS = 300   # an example's text is cut there ("…"): a page, not a data dump
NO_LOSSES = ("Per-example results are not available for this run: it was built before the lab stored each "
             "variant's test predictions (an older store), so the confusion matrices, the slices where a variant "
             "loses accuracy and the examples it gets wrong cannot be shown.")


def loss_picks(rows: list[dict], within_points: float = 1.0) -> list[tuple[str, str]]:
    """The variants whose losses the report shows, as (name, why): the fastest healthy variant within
    ``within_points`` accuracy points of the teacher (p50 latency) and the most accurate healthy compressed variant
    (ties: the faster); one entry when both are the same variant, none without a teacher accuracy."""
    teacher = next((r for r in rows if r.get("kind") == "teacher"), None)
    if not (teacher and teacher.get("accuracy") is not None):
        return []
    healthy = [r for r in rows if r is not teacher and r.get("kind") != "teacher"
               and (r.get("status") or "ok") == "ok" and r.get("accuracy") is not None]
    close = [r for r in healthy if r.get("latency_p50_ms") and
             100 * (teacher["accuracy"] - r["accuracy"]) <= within_points]
    picks: dict[str, list[str]] = {}
    if close:
        fastest = min(close, key=lambda r: (r["latency_p50_ms"], -r["accuracy"]))
        picks[fastest["name"]] = [f"the fastest variant within {within_points:g} point(s) of the teacher's "
                                  f"accuracy ({fastest['latency_p50_ms']:,.1f} ms p50)"]
    if healthy:
        best = max(healthy, key=lambda r: (r["accuracy"], -(r.get("latency_p50_ms") or float("inf"))))
        picks.setdefault(best["name"], []).append(f"the most accurate compressed variant ({best['accuracy']:.1%})")
    return [(name, "; ".join(why)) for name, why in picks.items()]


def losses_html(losses: list[dict], rows: list[dict]) -> str:
    """The "What the best variants lose" section: per inspection, both confusion matrices, accuracy by slice and
    the examples only one of the two models gets right, with their probabilities."""
    if not losses:
        return f"<p class='note'>{html.escape(NO_LOSSES)}</p>"
    why = dict(loss_picks(rows))
    intro = ("<p>Where a compressed variant's accuracy goes, against the teacher on the same test examples: "
             "which classes it confuses, which kinds of input it handles worse and the examples on which exactly "
             "one of the two is right (the items McNemar's test counts).</p>")
    return intro + "".join(_loss_html(found, why.get(found["variant"], "")) for found in losses)


def _loss_html(found: dict, why: str) -> str:
    e, v, t = html.escape, found["variant"], found["against"]
    b, c = found["mcnemar"]["teacher_right_variant_wrong"], found["mcnemar"]["variant_right_teacher_wrong"]
    acc, cal = found["accuracy"], found["calibration"]
    facts = (f"On {found['examples']:,} test examples: accuracy {acc[v]:.1%} against {acc[t]:.1%} for {t}; {t} "
             f"right and {v} wrong on {b:,}, {v} right and {t} wrong on {c:,}; expected calibration error "
             f"{cal[v]['ece']:.3f} against {cal[t]['ece']:.3f}.")
    chart = inspection.slices_figure(found).to_html(full_html=False, include_plotlyjs=False,
                                                     config={"displaylogo": False})
    parts = [f"<section class='loss'><h3>{e(v)} against {e(t)}</h3>",
             f"<p>{e(('Picked as ' + why + '. ') if why else '')}{e(facts)}</p>",
             "<div class='matrices'>" + confusion_table(found, t) + confusion_table(found, v) + "</div>",
             f"<div class='chart'>{chart}</div>"]
    frame = inspection.disagreements_frame(found)
    listed = len(found["teacher_right_variant_wrong"])
    for right, wrong, part, total in ((t, v, frame.iloc[:listed], b), (v, t, frame.iloc[listed:], c)):
        shown = part.head(LOSS_EXAMPLES)
        parts.append(f"<h4>{e(right)} right, {e(wrong)} wrong: {len(shown)} of {total:,}, most confident mistake "
                     f"first</h4>" + (examples_table(shown, t, v) if len(shown) else "<p class='muted'>none</p>"))
    return "".join(parts) + "</section>"


def confusion_table(found: dict, name: str) -> str:
    """One model's confusion matrix as an HTML table: rows gold, columns predicted, the correct cells in bold."""
    e, labels = html.escape, found["labels"]
    head = "<th class='t'>gold \\ predicted</th>" + "".join(f"<th class='n'>{e(str(x))}</th>" for x in labels)
    body = "".join(f"<tr><th class='t'>{e(str(gold))}</th>" + "".join(
        f"<td class='n{' hit' if i == j else ''}'>{n:,}</td>" for j, n in enumerate(row)) + "</tr>"
        for i, (gold, row) in enumerate(zip(labels, found["confusion"][name])))
    return (f"<table class='confusion'><caption>{e(name)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>")


def examples_table(frame, teacher: str, variant: str) -> str:
    """Disagreements (``inspection.disagreements_frame`` rows) as a table: gold label, text, each model's answer."""
    cut = lambda text: text if len(text) <= LOSS_TEXT_CHARS else text[:LOSS_TEXT_CHARS - 1] + "…"  # noqa: E731
    shown = frame.assign(text=frame["text"].map(cut))[["gold", "text", "teacher", "variant"]]
    return table_html(shown.rename(columns={"teacher": teacher, "variant": variant}), "examples")


def chart_title(label: str, limit: int = 100) -> str:
    """A chart's one-line title from a run's label: its first clause (up to ";"), shortened at a word boundary."""
    title = label.split(";")[0].strip()
    if len(title) <= limit:
        return title
    head = title[:limit]  # a word that ends at the limit is kept whole: the space after it is inside
    cut = head.rsplit(" ", 1)[0] if " " in head else head[:limit - 1]
    return cut.rstrip(" ,;:") + "…"


def chart_png(rows: list[dict], path, caption: str = "", width: int = 1100, height: int = 560):
    """The accuracy / latency / size chart as a PNG (for a README), drawn by headless Chromium through Playwright
    (dev requirements); plotly itself cannot write images without extra packages. ``caption``: the run's label,
    whose first clause becomes the title."""
    import shutil
    import tempfile
    from pathlib import Path


    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise LabError("--chart needs Playwright and Chromium: pip install -r requirements-dev.txt") from None
    fig = figures.accuracy_vs_latency(tables.frame(rows))
    fig.update_layout(width=width, height=height, title=chart_title(caption) or fig.layout.title.text)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        page_file = Path(tmp) / "chart.html"
        page_file.write_text(fig.to_html(include_plotlyjs=True, full_html=True, config={"staticPlot": True}),
                             encoding="utf-8")
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": width + 40, "height": height + 40})
            page.goto(page_file.as_uri())
            page.wait_for_selector(".main-svg")
            page.locator(".plotly-graph-div").screenshot(path=str(path))
        finally:
            browser.close()
    return path
