"""A self-contained HTML report (tables + charts, works offline) and a CSV of the leaderboard. Pure functions."""

from __future__ import annotations

import html
import time

from . import figures, tables


def leaderboard_csv(rows: list[dict]) -> str:
    df = tables.frame(rows)
    if df.empty:
        return ""
    keep = ["name", "kind", "parent", "method", "accuracy", "ci_low", "ci_high", "f1", "agreement", "ece", "size_mb",
            "params", "nonzero_params", "latency_p50_ms", "latency_p95_ms", "throughput", "cpu_seconds_per_1000",
            "peak_memory_mb", "speedup", "size_ratio", "retention"]
    return df[[c for c in keep if c in df]].to_csv(index=False)


def html_report(rows: list[dict], title: str = "BERT Compression Lab report", note: str = "") -> str:
    df = tables.frame(rows)
    charts = [figures.accuracy_vs_latency(df), figures.accuracy_vs_size(df), figures.latency_bars(df),
              figures.size_bars(df)]
    chart_html = "".join(f'<div class="chart">{fig.to_html(full_html=False, include_plotlyjs="inline" if i == 0 else False)}</div>'
                         for i, fig in enumerate(charts))
    board = tables.leaderboard(rows).to_html(index=False, border=0, classes="board", escape=True)
    provenance = "".join(f"<p>{html.escape(p)}</p>" for p in tables.provenance_markdown(rows).split("\n\n"))
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;color:#222}} table.board{{border-collapse:collapse;
font-size:13px}} .board th,.board td{{padding:4px 8px;border-bottom:1px solid #ddd;text-align:right}}
.board td:first-child,.board th:first-child{{text-align:left}} .chart{{max-width:1000px}}
.note{{color:#555}}</style></head><body>
<h1>{html.escape(title)}</h1><p class="note">{html.escape(note)} Generated {time.strftime("%Y-%m-%d %H:%M %Z")}.
Accuracy, F1, agreement and ECE on the test split; speed on the machine described under Provenance.</p>
<h2>Leaderboard</h2>{board}<h2>Charts</h2>{chart_html}<h2>Provenance</h2>{provenance}</body></html>"""


def chart_png(rows: list[dict], path, caption: str = "", width: int = 1100, height: int = 560):
    """The accuracy / latency / size chart as a PNG (for a README), drawn by headless Chromium through Playwright
    (dev requirements); plotly itself cannot write images without extra packages."""
    import shutil
    import tempfile
    from pathlib import Path

    from ..errors import LabError

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise LabError("--chart needs Playwright and Chromium: pip install -r requirements-dev.txt") from None
    fig = figures.accuracy_vs_latency(tables.frame(rows))
    fig.update_layout(width=width, height=height, title=caption or fig.layout.title.text)
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
