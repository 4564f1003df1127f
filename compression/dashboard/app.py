"""The dashboard's layout: ``create_app`` lays out the tabs and binds the callbacks (``callbacks.py``) to one
:class:`AppContext`. Figures, tables and advice are pure functions elsewhere."""

from __future__ import annotations

import os
import shutil
from functools import partial
from pathlib import Path

import gradio as gr

from compression.dashboard import callbacks as cb
from compression.dashboard import losses, views
from compression.dashboard.context import AppContext, make_context
from compression.evaluation.advisor import SCENARIOS

INTRO = """# BERT Compression Lab
Take a BERT-family text classifier (the **teacher**), make it smaller and faster by **knowledge distillation,
pruning and quantization**, and compare every variant with it: live predictions side by side, accuracy with
confidence intervals, size and speed. Every number here was measured by the lab's own code; open *Provenance* on the
Leaderboard to see where."""
CSS = """
.disagree td { background: #fde2e1 !important; }
table.preds { width: 100%; border-collapse: collapse; font-size: 15px; }
table.preds th, table.preds td { padding: 6px 10px; border-bottom: 1px solid #e5e7eb; text-align: left; }
table.preds .what { font-size: 12px; color: #6b7280; }
table.preds tr.pending td { color: #6b7280; font-style: italic; }
.reference-banner { border-left: 4px solid #d08770; padding: 6px 12px; background: #fff7ed; }
.build-banner { border-left: 4px solid #5e81ac; padding: 6px 12px; background: #eef2ff; }
.build-banner.failed { border-left-color: #bf616a; background: #fde2e1; }
"""


def theme() -> gr.themes.Base:
    # System fonts: Gradio 6's bundled semibold font lacks most glyphs, and this keeps the page offline.
    return gr.themes.Default(primary_hue="indigo", font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "SFMono-Regular", "monospace"])


def launch_kwargs() -> dict:
    return {"theme": theme(), "css": CSS, "server_name": os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
            "server_port": int(os.environ.get("GRADIO_SERVER_PORT", os.environ.get("PORT", "7860"))),
            "max_file_size": views.MAX_UPLOAD_BYTES, "footer_links": ["gradio"]}


def create_app(store_dir: str | None = None, published: str | None = None,
               starter: str | Path | None = None, ctx: AppContext | None = None) -> gr.Blocks:
    """The dashboard over a run store (default: $COMPRESSION_LAB_STORE or ./runs) or a published run."""
    ctx = ctx or make_context(store_dir, published, starter)
    with gr.Blocks(title="BERT Compression Lab", delete_cache=(3600, 3600)) as demo:
        # delete_cache: Gradio's copies of uploads and downloads older than an hour are removed every hour
        session = gr.State(None, delete_callback=lambda folder: folder and shutil.rmtree(folder, ignore_errors=True))
        seen = gr.State(None)
        gr.Markdown(INTRO)
        build_banner = gr.HTML()
        status = gr.Markdown()
        hints = views.input_hints(ctx.pair())  # one text box, or two for a pair task (set again on page load)
        with gr.Tabs() as tabs:
            predict = _playground(ctx, hints)
            batch = _batch_tab(hints)
            results = _results_tabs()
            lost = _losses_tab(ctx)
            rec = _recommend_tab()
            lab = _lab_tab(ctx)
            report = _report_tab()
        refresh_button = gr.Button("Refresh results", size="sm")
        views_out = [status, *results, report["pick"]]

        # what cb.inputs sets for the run shown now (the store may become a pair store while the app runs)
        boxes = [predict["text"], predict["second"], batch["text"], batch["upload"], *predict["examples"]]
        demo.load(partial(cb.refresh, ctx), None, views_out, api_visibility="private")
        demo.load(partial(cb.inputs, ctx), None, boxes, api_visibility="private")
        _bind_losses(ctx, demo, predict, lost, tabs, refresh_button)
        gr.Timer(2.0).tick(partial(cb.banner, ctx), seen, [build_banner, seen, *views_out, *boxes],
                           api_visibility="private", show_progress="hidden")
        refresh_button.click(partial(cb.refresh, ctx), None, views_out, api_name="refresh").then(
            partial(cb.inputs, ctx), None, boxes, api_visibility="private")
        answer, shown = partial(cb.predict, ctx), [predict["out"], predict["note"]]
        asked = [predict["text"], predict["second"]]  # the second text only for a pair task (else hidden, empty)
        predict["run"].click(answer, asked, shown, api_name="predict", concurrency_id="predict",
                             concurrency_limit=2)
        for box in asked:
            box.submit(answer, asked, shown, api_visibility="private", concurrency_id="predict")
        single_examples, pair_examples = predict["examples"]
        single_examples.click(cb.pick_example, single_examples, predict["text"], api_visibility="private",
                              queue=False, show_progress="hidden")
        pair_examples.click(cb.pick_pair, pair_examples, asked, api_visibility="private", queue=False,
                            show_progress="hidden")

        def examples() -> dict:
            """The Playground's examples now: {"pair": its two input names or null, "examples": texts or pairs}."""
            return cb.playground_examples(ctx)

        gr.api(examples, api_name="examples", queue=False)  # the load test sends what the run classifies
        _bind_tools(ctx, session, batch, rec, lab, report, views_out, boxes)
    demo.queue(default_concurrency_limit=2)
    return demo


def _bind_tools(ctx: AppContext, session, batch: dict, rec: dict, lab: dict, report: dict, views_out: list,
                boxes: list) -> None:
    """Batch check, Recommend, Lab and Report."""
    batch["run"].click(partial(cb.batch_check, ctx), [batch["text"], batch["upload"], session, batch["explain"]],
                       [batch["table"], batch["summary"], batch["csv"], session], api_name="batch",
                       concurrency_limit=1)
    rec["run"].click(partial(cb.recommend, ctx), [rec["latency"], rec["size"], rec["retention"], rec["scenario"]],
                     rec["out"], api_name="recommend")
    lab["run"].click(partial(cb.run_build, ctx), lab["inputs"], lab["log"], api_name="build",
                     concurrency_limit=1).then(partial(cb.refresh, ctx), None, views_out).then(
        partial(cb.inputs, ctx), None, boxes, api_visibility="private")
    report["run"].click(partial(cb.report_files, ctx), session, [report["html"], report["csv"], session],
                        api_name="report")
    report["zip"].click(partial(cb.bundle_zip, ctx), [report["pick"], session], [report["bundle"], session],
                        api_name="bundle")


def _playground(ctx: AppContext, hints: dict) -> dict:
    with gr.Tab("Playground", id="playground"):
        with gr.Row():
            text = gr.Textbox(label=hints["first"], placeholder=hints["first_hint"], lines=2)
            second = gr.Textbox(value="", label=hints["second"], placeholder=hints["second_hint"], lines=2,
                                visible=hints["pair"])
        run = gr.Button("Classify with every variant", variant="primary")
        # Two example lists, single texts and pairs: only the run's kind shows, and cb.inputs refills both when
        # the run shown changes kind (a click fills the boxes' values only, never their labels).
        pair = ctx.pair()
        singles, pairs = views.example_samples(ctx.source.examples(pair), pair)
        single_examples = gr.Dataset(components=["textbox"], samples=singles, label="Examples",
                                     visible=bool(singles))
        pair_examples = gr.Dataset(components=["textbox", "textbox"], samples=pairs, label="Examples",
                                   headers=[hints["first"], hints["second"]], visible=bool(pairs))
        out = gr.HTML()
        note = gr.Markdown()
        with gr.Accordion("Why: which words decide, for the teacher and one variant", open=False):
            with gr.Row():
                first = losses.why_choices(ctx)  # set again on load and refresh
                why_variant = gr.Dropdown(first["choices"], value=first["value"], label="Variant beside the teacher",
                                          scale=3)
                why_run = gr.Button("Explain", scale=1)
            with gr.Row():
                why_teacher, why_other = gr.HighlightedText(label="teacher"), gr.HighlightedText(label="variant")
            why_note = gr.Markdown()
    return {"text": text, "second": second, "run": run, "out": out, "note": note,
            "examples": [single_examples, pair_examples], "why": [why_variant, why_run, why_teacher, why_other,
                                                                  why_note]}


def _losses_tab(ctx: AppContext) -> dict:
    with gr.Tab("What it loses", id="losses") as tab:
        gr.Markdown(losses.INTRO)
        mine, theirs = losses.choices(ctx)  # set again on load and refresh
        with gr.Row():
            variant = gr.Dropdown(mine["choices"], value=mine["value"], label="Variant", scale=2)
            against = gr.Dropdown(theirs["choices"], value=theirs["value"], label="Against", scale=2)
        note = gr.Markdown()
        with gr.Row():
            theirs, mine = gr.Plot(), gr.Plot()
        with gr.Row():
            slices, reliability = gr.Plot(), gr.Plot()
        table = gr.Dataframe(interactive=False, wrap=True, show_search="search", max_height=480,
                             column_widths=["13%", "8%", "49%", "12%", "12%", "6%"],
                             label="Examples one gets right and the other wrong (click one to try it)")
        texts = gr.State([])
    return {"tab": tab, "variant": variant, "against": against,
            "out": [note, theirs, mine, slices, reliability, table, texts]}


def _bind_losses(ctx: AppContext, demo, predict: dict, lost: dict, tabs, refresh_button) -> None:
    """What it loses (choices on load and refresh; drawn when its tab opens or a pick changes, so a visitor who
    never opens it pays nothing; a click sends an example to the Playground) and the Playground's Why."""
    pickers, why_variant, why_run, *why_out = [lost["variant"], lost["against"]], *predict["why"]
    show = partial(losses.show, ctx)
    demo.load(partial(losses.choices, ctx), None, pickers, api_visibility="private")
    refresh_button.click(partial(losses.choices, ctx), None, pickers, api_visibility="private").then(
        show, pickers, lost["out"], api_visibility="private")
    for event in (demo.load, refresh_button.click):
        event(partial(losses.why_choices, ctx), None, why_variant, api_visibility="private")
    lost["tab"].select(partial(losses.choices, ctx), pickers, pickers, api_visibility="private").then(
        show, pickers, lost["out"], api_visibility="private")
    for picker in pickers:
        picker.input(show, pickers, lost["out"], api_visibility="private")
    lost["out"][5].select(losses.send, lost["out"][6], [predict["text"], predict["second"], tabs],
                          api_visibility="private")
    why_run.click(partial(losses.why, ctx), [predict["text"], predict["second"], why_variant], why_out,
                  api_name="why", concurrency_id="predict")


def _batch_tab(hints: dict) -> dict:
    with gr.Tab("Batch check"):
        with gr.Row():
            text = gr.Textbox(label=hints["batch"], lines=6)
            upload = gr.File(label=hints["upload"], file_types=[".csv", ".tsv"], type="filepath")
        explain = gr.Checkbox(False, label="Also the words the teacher's answer rests on, per text (slower: up to "
                                           "50 texts)")
        run = gr.Button("Run the batch on every variant", variant="primary")
        summary = gr.Dataframe(label="Agreement with the teacher", interactive=False)
        table = gr.Dataframe(label="Predictions", interactive=False, wrap=True)
        csv = gr.File(label="Download predictions (CSV)")
    return {"text": text, "upload": upload, "explain": explain, "run": run, "summary": summary, "table": table,
            "csv": csv}


def _results_tabs() -> list:
    with gr.Tab("Leaderboard"):
        board = gr.Dataframe(interactive=False, wrap=True, label="Variants (test split)")
        with gr.Accordion("Every column: F1, agreement, calibration, parameters, p95, throughput, CPU cost",
                          open=False):
            full = gr.Dataframe(interactive=False, wrap=False, label="All figures")
        with gr.Accordion("Provenance of the speed figures", open=False):
            provenance = gr.Markdown()
    with gr.Tab("Charts"):
        with gr.Row():
            acc_lat, acc_size = gr.Plot(), gr.Plot()
        with gr.Row():
            latency, size = gr.Plot(), gr.Plot()
    return [board, full, provenance, acc_lat, acc_size, latency, size]


def _recommend_tab() -> dict:
    with gr.Tab("Recommend"):
        gr.Markdown("Pick a deployment scenario, or give your own limits (leave a box at 0 to ignore it).")
        scenario = gr.Radio(["your limits"] + [s.title for s in SCENARIOS], value="your limits", label="Scenario")
        with gr.Row():
            latency = gr.Number(label="max p50 latency (ms)", value=0, minimum=0)
            size = gr.Number(label="max bundle size (MB)", value=0, minimum=0)
            retention = gr.Number(label="min accuracy retention (% of teacher)", value=98, minimum=0, maximum=100)
        run = gr.Button("Recommend", variant="primary")
        out = gr.Markdown()
    return {"scenario": scenario, "latency": latency, "size": size, "retention": retention, "run": run, "out": out}


def _lab_tab(ctx: AppContext) -> dict:
    enabled = ctx.policy.enabled
    with gr.Tab("Lab"):
        if not enabled:
            gr.Markdown(f"**Builds are off here**: {ctx.policy.reason}. Build where you have cores and publish the "
                        "result:\n\n```bash\npython -m compression build recipes/quick.yaml --store runs\n"
                        "python -m compression publish --store runs --to hub:USER/NAME   # or a folder / .zip\n```\n\n"
                        "then serve it with `python app.py --published hub:USER/NAME` (on a Space: set "
                        "`COMPRESSION_LAB_PUBLISHED`).")
        with gr.Group(visible=enabled):
            gr.Markdown("Build variants in a background process. The quick recipe takes about 10 minutes on 2 CPU "
                        "cores. One build at a time.")
            recipe = gr.Dropdown([cb.CUSTOM] + views.app_recipes(), value="quick.yaml", label="Recipe")
            with gr.Accordion("Custom build (when the recipe is 'custom')", open=False):
                teacher = gr.Dropdown(views.TEACHERS, value=views.TEACHERS[0], label="Teacher")
                data = gr.Dropdown(views.DATA_SOURCES, value=views.DATA_SOURCES[0], label="Data",
                                   allow_custom_value=False)
                samples = gr.Slider(200, 8000, value=1600, step=100, label="training texts")
                students = gr.CheckboxGroup(views.student_choices(), value=views.student_choices()[:1],
                                            label="Students")
                techniques = gr.CheckboxGroup(views.technique_choices(), value=views.technique_choices()[:1],
                                              label="Techniques (on the first student)")
            with gr.Accordion("Methods and their settings (for a recipe of your own)", open=False):
                gr.Markdown(views.technique_settings())
            run = gr.Button("Run build", variant="primary")
            log = gr.Textbox(label="Live log", lines=12, max_lines=20, interactive=False, autoscroll=True)
    return {"run": run, "log": log, "inputs": [recipe, teacher, data, samples, students, techniques]}


def _report_tab() -> dict:
    with gr.Tab("Report"):
        run = gr.Button("Make the HTML report and CSV", variant="primary")
        with gr.Row():
            html = gr.File(label="HTML report (tables + charts, works offline)")
            csv = gr.File(label="Leaderboard CSV")
        pick = gr.Dropdown([], label="Variant bundle to download")
        zip_button = gr.Button("Zip the bundle")
        bundle = gr.File(label="Bundle (zip)")
    return {"run": run, "html": html, "csv": csv, "pick": pick, "zip": zip_button, "bundle": bundle}
