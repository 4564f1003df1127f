"""The dashboard: an app factory over a run store. Layout and callbacks only; figures, tables and advice are pure
functions elsewhere, and every figure shown was measured by the backend (the app measures nothing itself, except
the latency of the request it serves, labelled as such)."""

from __future__ import annotations

import csv
import io
import json
import os
import queue
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path

import gradio as gr

from ..bundle import Bundle, load_bundle
from ..errors import LabError, describe_os_error
from ..results import current_variants, variant_row
from ..store import RunStore, StoreError, resolve_store_dir
from . import figures, tables
from .report import html_report, leaderboard_csv

MAX_TEXT_CHARS = 5_000          # per text in the Playground; longer input is truncated, and the UI says so
MAX_BATCH_LINES = 500           # texts per batch check
MAX_UPLOAD_BYTES = 1_000_000    # batch-check CSV upload
TEACHERS = ["embedded:mpnet-base", "embedded:minilm-l6"]
DATA_SOURCES = ["embedded:rotten-tomatoes"]  # the app never reads a data path a visitor types
PROJECT_DIR = Path(__file__).resolve().parents[2]
RECIPES_DIR = PROJECT_DIR / "recipes"
ASSETS_DIR = PROJECT_DIR / "assets"
INTRO = """# BERT Compression Lab
Take a BERT-family text classifier (the **teacher**), make it smaller and faster by **knowledge distillation,
pruning and quantization**, and compare every variant with it: live predictions side by side, accuracy with
confidence intervals, size and speed. Every number here was measured by the lab's own code; open *Provenance* on the
Leaderboard to see where."""


class ModelCache:
    """At most ``size`` bundles in memory per process, least recently used evicted; keyed by folder and mtime."""

    def __init__(self, size: int = 12):
        self.size, self._items, self._lock = size, OrderedDict(), threading.Lock()

    def get(self, folder: str) -> Bundle:
        key = (folder, os.stat(Path(folder) / "bundle.json").st_mtime_ns)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        bundle = load_bundle(folder)
        with self._lock:
            self._items[key] = bundle
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return bundle


def theme() -> gr.themes.Base:
    # System fonts: Gradio 6's bundled semibold font lacks most glyphs, and this keeps the page offline.
    return gr.themes.Default(primary_hue="indigo", font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "SFMono-Regular", "monospace"])


CSS = """
.disagree td { background: #fde2e1 !important; }
table.preds { width: 100%; border-collapse: collapse; font-size: 15px; }
table.preds th, table.preds td { padding: 6px 10px; border-bottom: 1px solid #e5e7eb; text-align: left; }
.reference-banner { border-left: 4px solid #d08770; padding: 6px 12px; background: #fff7ed; }
"""


def launch_kwargs() -> dict:
    return {"theme": theme(), "css": CSS, "server_name": os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
            "server_port": int(os.environ.get("GRADIO_SERVER_PORT", os.environ.get("PORT", "7860"))),
            "max_file_size": MAX_UPLOAD_BYTES, "footer_links": ["gradio"]}


def examples() -> list[str]:
    path = ASSETS_DIR / "examples.txt"
    if not path.is_file():
        return []
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def reference_rows() -> tuple[list[dict], str]:
    """Rows of the project's own published run (assets/reference/*.json), to show before local results exist."""
    # The headline SST-2 result first, then any other published run.
    for path in sorted((ASSETS_DIR / "reference").glob("*.json"), key=lambda p: (p.stem != "sst2", p.name)):
        data = json.loads(path.read_text(encoding="utf-8"))
        return data["variants"], data.get("label", path.stem)
    return [], ""


def predictions_html(results: list[dict], teacher: str | None) -> str:
    """Playground results: one row per variant; rows that disagree with the teacher are highlighted."""
    import html as h

    df = tables.predictions_table(results, teacher)
    body = "".join(
        f"<tr class='{'disagree' if row['agrees with teacher'] == 'NO' else ''}'><td>{h.escape(row['variant'])}</td>"
        f"<td><b>{h.escape(str(row['label']))}</b></td><td>{row['confidence']:.1%}</td><td>{row['latency ms']:.1f}</td>"
        f"<td>{'⚠ disagrees' if row['agrees with teacher'] == 'NO' else row['agrees with teacher']}</td></tr>"
        for _, row in df.iterrows())
    return ("<table class='preds'><thead><tr><th>variant</th><th>label</th><th>confidence</th>"
            "<th>latency ms (this request)</th><th>vs teacher</th></tr></thead><tbody>" + body + "</tbody></table>")


def parse_batch(text: str, upload: str | None) -> list[str]:
    """Texts for a batch check: pasted lines, or the text column of an uploaded CSV (UTF-8, header row)."""
    if upload:
        path = Path(upload)
        if path.stat().st_size > MAX_UPLOAD_BYTES:
            raise LabError(f"upload is larger than {MAX_UPLOAD_BYTES // 1_000_000} MB")
        raw = path.read_bytes()
        try:
            content = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise LabError("upload is not UTF-8 text: save the CSV as UTF-8") from None
        if "\x00" in content:
            raise LabError("upload contains NUL bytes: is it really a CSV?")
        try:
            dialect = csv.Sniffer().sniff(content[:4096], delimiters=",\t;")
        except csv.Error:
            dialect = csv.excel
        try:
            reader = csv.DictReader(io.StringIO(content), dialect=dialect)
            columns = [c for c in (reader.fieldnames or []) if c]
            column = next((c for c in columns if c.strip().lower() in ("text", "sentence", "review", "content")),
                          None)
            if column is None:
                raise LabError(f"the CSV needs a header with a text column (text, sentence, review or content); "
                               f"found: {', '.join(columns) or 'no header'}")
            rows = list(reader)
        except csv.Error as err:
            raise LabError(f"the CSV cannot be read: {err}") from None
        extra = next((i for i, row in enumerate(rows, start=2) if None in row), None)
        if extra is not None:
            raise LabError(f"line {extra} has more fields than the header: quote texts that contain the delimiter")
        texts = [(row.get(column) or "").strip() for row in rows]
    else:
        texts = [line.strip() for line in (text or "").splitlines()]
    texts = [t[:MAX_TEXT_CHARS] for t in texts if t]
    if not texts:
        raise LabError("no texts: paste one per line, or upload a CSV with a text column")
    if len(texts) > MAX_BATCH_LINES:
        raise LabError(f"{len(texts)} texts: a batch check takes at most {MAX_BATCH_LINES}")
    return texts


def app_recipes() -> list[str]:
    """Recipes a visitor may start: those on the embedded data only (no server paths, no hour-long builds of
    data the app does not ship). Others run from the command line."""
    from ..config import load_recipe

    allowed = []
    for path in sorted(RECIPES_DIR.glob("*.yaml")):
        try:
            if load_recipe(path).data.source.startswith("embedded:"):
                allowed.append(path.name)
        except (ValueError, LabError, OSError):
            continue  # a broken recipe file is not offered
    return allowed


def lab_recipe(teacher: str, data: str, train_samples: int, students: list[str], techniques: list[str]) -> dict:
    """A recipe (as plain data) from the Lab tab's choices; validated by ``from_dict`` like any recipe file."""
    student_defs = {
        "MiniLM-L6 (pretrained)": {"name": "minilm-l6", "init": "pretrained", "model": "embedded:minilm-l6"},
        "MiniLM-L3 (layers 0,2,4)": {"name": "minilm-l3", "init": "pretrained-layers", "model": "embedded:minilm-l6",
                                     "layers": [0, 2, 4]},
        "Teacher, every other layer": {"name": "teacher-half", "init": "teacher-layers"},
    }
    recipe = {"name": "lab", "data": {"source": data, "max_train_samples": int(train_samples),
                                      "max_eval_samples": 400},
              "teacher": {"model": teacher, "max_length": 64,
                          "train": {"epochs": 1, "batch_size": 16, "learning_rate": 3e-5}},
              "students": [], "prune": [], "quantize": []}
    unknown = [x for x in students if x not in student_defs]
    if unknown:
        raise LabError(f"unknown student choice {unknown[0]!r}: choose from the list offered")
    for label in students:
        s = dict(student_defs[label], max_length=64, train={"epochs": 3, "batch_size": 32, "learning_rate": 1e-4})
        recipe["students"].append(s)
    base = recipe["students"][0]["name"] if recipe["students"] else "teacher"
    recover = {"epochs": 1, "batch_size": 32, "learning_rate": 5e-5}
    steps = {
        "magnitude pruning 50%": ("prune", {"name": f"{base}-sparse50", "source": base, "method": "magnitude",
                                            "sparsity": 0.5, "recover": recover}),
        # MPNet shares one relative-position bias across heads: prune only its FFN neurons
        "structured pruning (½ heads, ½ FFN)": ("prune", {"name": f"{base}-slim", "source": base,
                                                           "method": "structured", "ffn": 0.5, "recover": recover,
                                                           "heads": 0.0 if base == "teacher" and "mpnet" in teacher
                                                           else 0.5}),
        "dynamic int8": ("quantize", {"name": f"{base}-int8", "source": base, "method": "dynamic-int8"}),
        "bf16": ("quantize", {"name": f"{base}-bf16", "source": base, "method": "bf16"}),
        "fp16 (slow on CPU)": ("quantize", {"name": f"{base}-fp16", "source": base, "method": "fp16"}),
        "ONNX Runtime int8": ("quantize", {"name": f"{base}-onnx-int8", "source": base, "method": "onnx-int8"}),
    }
    for label in techniques:
        if label not in steps:
            raise LabError(f"unknown technique {label!r}: choose from the list offered")
        section, step = steps[label]
        recipe[section].append(step)
    return recipe


def create_app(store_dir: str | None = None) -> gr.Blocks:
    """Build the dashboard over the run store at ``store_dir`` (default: $COMPRESSION_LAB_STORE or ./runs)."""

    root = resolve_store_dir(store_dir)
    cache = ModelCache(int(os.environ.get("COMPRESSION_LAB_MODEL_CACHE", "12")))
    build_lock = threading.Lock()  # one build per app process; the store's file lock covers other processes

    def local_rows() -> list[dict]:
        if not (root / "lab.sqlite").is_file():
            return []
        with RunStore(root) as store:
            return [variant_row(v) for v in current_variants(store)]

    def shown_rows() -> tuple[list[dict], str]:
        """Local results, or the labelled reference result while there are none."""
        rows = local_rows()
        if rows:
            return rows, (f"Showing the **{len(rows)} variants of run {rows[0]['run']}** (the newest) from the run "
                          f"store `{root.name}`.")
        ref, label = reference_rows()
        if ref:
            return ref, (f"<div class='reference-banner'>No local results yet: showing the <b>reference result</b> of "
                         f"the project's published run ({label}). Build the quick recipe in the <b>Lab</b> tab (or "
                         f"<code>python -m compression build recipes/quick.yaml</code>) to measure your own.</div>")
        return [], ("No variants yet. Build the quick recipe in the **Lab** tab "
                    "(or `python -m compression build recipes/quick.yaml`).")

    def refresh():
        rows, status = shown_rows()
        df = tables.frame(rows)
        names = [r["name"] for r in rows if r.get("bundle")]  # reference rows carry no bundle
        return (status, tables.leaderboard(rows), tables.provenance_markdown(rows),
                figures.accuracy_vs_latency(df), figures.accuracy_vs_size(df), figures.latency_bars(df),
                figures.size_bars(df), gr.update(choices=names, value=names[0] if names else None))

    def predict(text: str):
        text = (text or "").replace("\x00", "").strip()
        if not text:
            raise gr.Error("Type a sentence first.")
        notes = []
        if len(text) > MAX_TEXT_CHARS:
            notes.append(f"Text truncated to its first {MAX_TEXT_CHARS:,} characters (of {len(text):,}).")
            text = text[:MAX_TEXT_CHARS]
        rows = local_rows()
        if not rows:
            raise gr.Error("No local variants to run yet: build the quick recipe in the Lab tab first.")
        results = []
        for row in rows:
            if row.get("status", "ok") != "ok":  # a corrupted bundle is shown as such, never run
                results.append({"name": row["name"], "label": row["status"], "confidence": 0.0, "latency_ms": 0.0})
                continue
            try:
                bundle = cache.get(row["bundle"])
                start = time.perf_counter()
                pred = bundle.predict([text])[0]
            except (LabError, OSError) as err:
                results.append({"name": row["name"], "label": f"broken: {err}", "confidence": 0.0, "latency_ms": 0.0})
                continue
            results.append({"name": row["name"], "label": pred.label, "confidence": pred.confidence,
                            "latency_ms": (time.perf_counter() - start) * 1000})
            if pred.truncated and not any("tokens" in n for n in notes):
                notes.append(f"The text has {pred.tokens:,} tokens; the models read only the first "
                             f"{bundle.max_length}.")
        teacher = next((r["name"] for r in rows if r["kind"] == "teacher"), None)
        return predictions_html(results, teacher), " ".join(notes)

    def session_dir(current: str | None) -> str:
        """A private folder per browser session, inside Gradio's temp folder (which it may serve files from);
        removed when the session ends."""
        if current and Path(current).is_dir():
            return current
        base = Path(os.environ.get("GRADIO_TEMP_DIR", tempfile.gettempdir())) / "compression-lab-sessions"
        base.mkdir(parents=True, exist_ok=True)
        return tempfile.mkdtemp(prefix="s-", dir=base)

    def batch_check(text: str, upload, folder: str | None):
        try:
            texts = parse_batch(text, upload)
        except LabError as err:
            raise gr.Error(str(err)) from err
        rows = local_rows()
        if not rows:
            raise gr.Error("No local variants to run yet: build the quick recipe in the Lab tab first.")
        labels = {}
        for row in rows:
            if row.get("status", "ok") != "ok":
                continue  # broken bundles are listed as such on the Leaderboard and never run
            try:
                labels[row["name"]] = [p.label for p in cache.get(row["bundle"]).predict(texts)]
            except (LabError, OSError) as err:
                raise gr.Error(f"variant {row['name']}: {err}") from err
        teacher = next((r["name"] for r in rows if r["kind"] == "teacher"), None)
        result = tables.batch_table(texts, labels)
        folder = session_dir(folder)
        out = Path(folder) / "batch-predictions.csv"
        result.to_csv(out, index=False)
        return result, tables.agreement_summary(labels, teacher), str(out), folder

    def recommend_cb(max_latency, max_size, min_retention):
        from ..advisor import advise, recommend
        from ..hardware import cpu_info

        rows, _ = shown_rows()
        if not rows:
            raise gr.Error("No variants yet: build the quick recipe first.")
        flags = cpu_info()["flags"]
        rec = recommend(rows, max_latency or None, max_size or None,
                        (min_retention / 100) if min_retention else None, flags)
        lines = [f"### {'Recommended: ' + rec.best['name'] if rec.best else 'No variant fits'}"]
        lines += [f"- {r}" for r in rec.reasons]
        if rec.excluded:
            lines += ["", "**Excluded**"] + [f"- {e}" for e in rec.excluded]
        lines += ["", "**What pays on this machine**"]
        lines += [f"- **{a.technique}**: {a.verdict} — {a.reason} *({a.evidence})*" for a in advise(flags, rows)]
        return "\n".join(lines)

    def run_build(recipe_choice, teacher, data, samples, students, techniques, progress=gr.Progress()):
        from ..config import Recipe, from_dict, load_recipe
        from ..pipeline import build

        # API callers can send any value: only the offered choices are accepted (no path is ever taken from input)
        if recipe_choice not in recipes or teacher not in TEACHERS or data not in DATA_SOURCES:
            raise gr.Error("Choose the recipe, teacher and data from the lists offered.")
        try:
            if recipe_choice != "custom (below)":
                recipe = load_recipe(RECIPES_DIR / recipe_choice)
            else:
                recipe = from_dict(Recipe, lab_recipe(teacher, data, samples, students or [], techniques or []))
        except (ValueError, LabError, FileNotFoundError) as err:
            raise gr.Error(str(err)) from err
        if not build_lock.acquire(blocking=False):
            raise gr.Error("A build is already running in this app; wait for it to finish.")
        events: queue.Queue = queue.Queue()
        outcome: dict = {}

        def work():
            try:
                with RunStore(root) as store:
                    outcome["run"] = build(recipe, store, progress=lambda f, m: events.put((f, m)))
            except BaseException as err:  # reported to the user below; the store already marked the run failed
                outcome["error"] = err
            finally:
                events.put(None)

        log: list[str] = []
        try:
            threading.Thread(target=work, daemon=True, name="lab-build").start()
            progress(0, desc=f"building {recipe.name}")
            while True:
                item = events.get()
                if item is None:
                    break
                fraction, message = item
                log.append(f"[{time.strftime('%H:%M:%S')}] {message}")
                progress(fraction, desc=message[:120])
                yield "\n".join(log[-200:])
        finally:
            build_lock.release()
        if "error" in outcome:
            err = outcome["error"]
            raise gr.Error(describe_os_error(err) or (str(err) if isinstance(err, (LabError, StoreError, ValueError))
                                                      else f"build failed: {type(err).__name__}: {err}"))
        log.append(f"Done: run {outcome['run']}. The other tabs now show the new variants (press Refresh).")
        yield "\n".join(log[-200:])

    def report_files(folder: str | None):
        rows, _ = shown_rows()
        if not rows:
            raise gr.Error("Nothing to report yet.")
        folder = session_dir(folder)
        note = ("" if rows[0].get("bundle") else
                "Reference result of the project's published run (no local results yet).")
        html_path, csv_path = Path(folder) / "compression-report.html", Path(folder) / "leaderboard.csv"
        html_path.write_text(html_report(rows, note=note), encoding="utf-8")
        csv_path.write_text(leaderboard_csv(rows), encoding="utf-8")
        return str(html_path), str(csv_path), folder

    def bundle_zip(name: str | None, folder: str | None):
        rows = {r["name"]: r for r in local_rows()}
        if not name or name not in rows:  # names come from the store only: no path a user types is ever read
            raise gr.Error("Choose a variant from the list.")
        folder = session_dir(folder)
        archive = shutil.make_archive(str(Path(folder) / name), "zip", root_dir=rows[name]["bundle"])
        return archive, folder

    recipes = ["custom (below)"] + app_recipes()
    # delete_cache: Gradio's copies of uploads and downloads older than an hour are removed every hour
    with gr.Blocks(title="BERT Compression Lab", delete_cache=(3600, 3600)) as demo:
        session = gr.State(None, delete_callback=lambda folder: folder and shutil.rmtree(folder, ignore_errors=True))
        gr.Markdown(INTRO)
        status = gr.Markdown()
        with gr.Tab("Playground"):
            text = gr.Textbox(label="Text", placeholder="Type a sentence to classify with every variant", lines=2)
            with gr.Row():
                run = gr.Button("Classify with every variant", variant="primary")
            gr.Examples(examples(), inputs=text)
            predictions = gr.HTML()
            truncation = gr.Markdown()
        with gr.Tab("Batch check"):
            with gr.Row():
                batch_text = gr.Textbox(label=f"Texts, one per line (up to {MAX_BATCH_LINES})", lines=6)
                upload = gr.File(label="…or a UTF-8 CSV with a text column (≤ 1 MB)", file_types=[".csv", ".tsv"],
                                 type="filepath")
            batch_run = gr.Button("Run the batch on every variant", variant="primary")
            batch_summary = gr.Dataframe(label="Agreement with the teacher", interactive=False)
            batch_table = gr.Dataframe(label="Predictions", interactive=False, wrap=True)
            batch_csv = gr.File(label="Download predictions (CSV)")
        with gr.Tab("Leaderboard"):
            board = gr.Dataframe(interactive=False, wrap=False, label="Variants (test split)")
            with gr.Accordion("Provenance of the speed figures", open=False):
                provenance = gr.Markdown()
        with gr.Tab("Charts"):
            with gr.Row():
                chart_acc_lat = gr.Plot()
                chart_acc_size = gr.Plot()
            with gr.Row():
                chart_latency = gr.Plot()
                chart_size = gr.Plot()
        with gr.Tab("Recommend"):
            gr.Markdown("Give your limits; leave a box at 0 to ignore it.")
            with gr.Row():
                max_latency = gr.Number(label="max p50 latency (ms)", value=0, minimum=0)
                max_size = gr.Number(label="max bundle size (MB)", value=0, minimum=0)
                min_retention = gr.Number(label="min accuracy retention (% of teacher)", value=98, minimum=0,
                                          maximum=100)
            rec_button = gr.Button("Recommend", variant="primary")
            rec_out = gr.Markdown()
        with gr.Tab("Lab"):
            gr.Markdown("Build variants in the background. The quick recipe takes about 10 minutes on 2 CPU cores. "
                        "One build at a time per store.")
            recipe_choice = gr.Dropdown(recipes, value="quick.yaml", label="Recipe")
            with gr.Accordion("Custom build (when the recipe is 'custom')", open=False):
                teacher = gr.Dropdown(TEACHERS, value=TEACHERS[0], label="Teacher")
                data = gr.Dropdown(DATA_SOURCES, value=DATA_SOURCES[0], label="Data", allow_custom_value=False)
                samples = gr.Slider(200, 8000, value=1600, step=100, label="training texts")
                students = gr.CheckboxGroup(["MiniLM-L6 (pretrained)", "MiniLM-L3 (layers 0,2,4)",
                                             "Teacher, every other layer"], value=["MiniLM-L6 (pretrained)"],
                                            label="Students")
                techniques = gr.CheckboxGroup(["magnitude pruning 50%", "structured pruning (½ heads, ½ FFN)",
                                               "dynamic int8", "bf16", "fp16 (slow on CPU)", "ONNX Runtime int8"],
                                              value=["dynamic int8"], label="Techniques (on the first student)")
            build_button = gr.Button("Run build", variant="primary")
            build_log = gr.Textbox(label="Live log", lines=12, max_lines=20, interactive=False, autoscroll=True)
        with gr.Tab("Report"):
            report_button = gr.Button("Make the HTML report and CSV", variant="primary")
            with gr.Row():
                report_html = gr.File(label="HTML report (tables + charts, works offline)")
                report_csv = gr.File(label="Leaderboard CSV")
            variant_pick = gr.Dropdown([], label="Variant bundle to download")
            bundle_button = gr.Button("Zip the bundle")
            bundle_file = gr.File(label="Bundle (zip)")
        refresh_button = gr.Button("Refresh results", size="sm")

        views = [status, board, provenance, chart_acc_lat, chart_acc_size, chart_latency, chart_size, variant_pick]
        demo.load(refresh, None, views, api_visibility="private")
        refresh_button.click(refresh, None, views, api_name="refresh")
        run.click(predict, text, [predictions, truncation], api_name="predict", concurrency_limit=2)
        text.submit(predict, text, [predictions, truncation], api_visibility="private", concurrency_limit=2)
        batch_run.click(batch_check, [batch_text, upload, session],
                        [batch_table, batch_summary, batch_csv, session], api_name="batch", concurrency_limit=1)
        rec_button.click(recommend_cb, [max_latency, max_size, min_retention], rec_out, api_name="recommend")
        build_button.click(run_build, [recipe_choice, teacher, data, samples, students, techniques], build_log,
                           api_name="build", concurrency_limit=1).then(refresh, None, views)
        report_button.click(report_files, session, [report_html, report_csv, session], api_name="report")
        bundle_button.click(bundle_zip, [variant_pick, session], [bundle_file, session], api_name="bundle")
    demo.queue(default_concurrency_limit=2)
    return demo
