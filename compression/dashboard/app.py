"""Layout and callbacks. Models are loaded once per process in a bounded cache owned by the app instance."""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from pathlib import Path

import gradio as gr

from ..bundle import Bundle, load_bundle
from ..cli import _variant_row
from ..errors import LabError
from ..store import RunStore, StoreError, resolve_store_dir
from .tables import predictions_table, variants_table

MAX_TEXT_CHARS = 5_000
INTRO = """# BERT Compression Lab
Distill, prune and quantize a BERT-family text classifier, then compare every variant with its teacher:
live predictions side by side, accuracy and size. Every figure comes from the lab's own measurements."""
PROJECT_DIR = Path(__file__).resolve().parents[2]
RECIPES_DIR = PROJECT_DIR / "recipes"
EXAMPLES_FILE = PROJECT_DIR / "assets" / "examples.txt"


def examples() -> list[str]:
    if not EXAMPLES_FILE.is_file():
        return []
    return [line.strip() for line in EXAMPLES_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]


class ModelCache:
    """At most ``size`` bundles in memory, least recently used evicted; keyed by folder and bundle.json mtime."""

    def __init__(self, size: int = 8):
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
    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "SFMono-Regular", "monospace"])


def launch_kwargs() -> dict:
    return {"theme": theme(), "server_name": os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
            "server_port": int(os.environ.get("GRADIO_SERVER_PORT", os.environ.get("PORT", "7860")))}


def create_app(store_dir: str | None = None) -> gr.Blocks:
    root = resolve_store_dir(store_dir)
    cache = ModelCache()

    def rows() -> list[dict]:
        with RunStore(root) as store:
            return [_variant_row(v) for v in store.variants()]

    def refresh():
        table = variants_table(rows())
        note = "" if len(table) else "No variants yet: build the quick recipe below (or `python -m compression build recipes/quick.yaml`)."
        return table, note

    def predict(text: str):
        text = (text or "").strip()
        if not text:
            raise gr.Error("Type a sentence first.")
        truncated = len(text) > MAX_TEXT_CHARS
        text = text[:MAX_TEXT_CHARS]
        variants = rows()
        if not variants:
            raise gr.Error("No variants yet: build the quick recipe first.")
        results = []
        for v in variants:
            try:
                bundle = cache.get(v["bundle"])
            except (LabError, OSError) as err:
                raise gr.Error(f"variant {v['name']}: {err}") from err
            start = time.perf_counter()
            pred = bundle.predict([text])[0]
            results.append({"name": v["name"], "label": pred.label, "confidence": pred.confidence,
                            "latency_ms": (time.perf_counter() - start) * 1000})
        teacher = next((v["name"] for v in variants if v["kind"] == "teacher"), None)
        note = f"Text truncated to {MAX_TEXT_CHARS:,} characters." if truncated else ""
        return predictions_table(results, teacher), note

    def build_quick(progress=gr.Progress()):
        from ..config import load_recipe
        from ..pipeline import build

        log: list[str] = []

        def report(fraction: float, message: str) -> None:
            log.append(message)
            progress(fraction, desc=message)

        try:
            with RunStore(root) as store:
                build(load_recipe(RECIPES_DIR / "quick.yaml"), store, progress=report)
        except (LabError, StoreError, ValueError, OSError) as err:
            raise gr.Error(str(err)) from err
        table, note = refresh()
        return table, note, "\n".join(log)

    with gr.Blocks(title="BERT Compression Lab") as demo:
        gr.Markdown(INTRO)
        with gr.Tab("Playground"):
            text = gr.Textbox(label="Text", placeholder="Type a sentence to classify", lines=2,
                              max_length=MAX_TEXT_CHARS * 20)
            run = gr.Button("Classify with every variant", variant="primary")
            gr.Examples(examples(), inputs=text)
            predictions = gr.Dataframe(label="Predictions", interactive=False)
            truncation = gr.Markdown()
        with gr.Tab("Variants"):
            variants = gr.Dataframe(label="Finished variants", interactive=False)
            empty_note = gr.Markdown()
            with gr.Row():
                reload_btn = gr.Button("Refresh")
                build_btn = gr.Button("Build the quick recipe", variant="primary")
            log = gr.Textbox(label="Build log", lines=6, interactive=False)
        gr.Markdown(f"Store: `{root}`")

        run.click(predict, text, [predictions, truncation], api_name="predict", concurrency_limit=4)
        text.submit(predict, text, [predictions, truncation], api_visibility="private", concurrency_limit=4)
        reload_btn.click(refresh, None, [variants, empty_note], api_name="variants")
        build_btn.click(build_quick, None, [variants, empty_note, log], api_name="build_quick", concurrency_limit=1)
        demo.load(refresh, None, [variants, empty_note], api_visibility="private")
    demo.queue(default_concurrency_limit=4)
    return demo
