"""A self-contained HTML report (tables + charts, works offline) and a CSV of the leaderboard. Pure functions."""

from __future__ import annotations

import html
import time

from compression.core.errors import LabError
from compression.evaluation import advisor
from compression.presentation import figures, tables


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


def html_report(rows: list[dict], title: str = "BERT Compression Lab report", note: str = "") -> str:
    """A page a stakeholder can open offline or print: a plain-language summary and the pick per deployment scenario
    first, then the leaderboard, charts, every measurement and where the speed figures came from."""
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
<h2>All measurements</h2><h3>Quality</h3><div class="wide">{table_html(full[quality], "board full")}</div>
<h3>Size and speed</h3><div class="wide">{table_html(full[speed], "board full")}</div>
<h2>Provenance</h2>{provenance_html(rows)}
{PRINT_SCRIPT}</body></html>"""


QUALITY_COLUMNS = ["variant", "technique", "kind", "parent", "accuracy %", "95% CI", "vs teacher", "McNemar p",
                   "retention %", "macro-F1", "agreement %", "ECE"]
TEXT_COLUMNS = {"variant", "technique", "kind", "parent", "status"}


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
