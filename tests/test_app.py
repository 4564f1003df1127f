"""The app as its owner and visitors meet it: callbacks over an injected context (no browser), the starter run that
builds itself in a child process, builds switched off for public deployments, rows streamed as variants answer."""

import os
import re
import time

import pytest

from compression.dashboard import callbacks as cb
from compression.dashboard.context import AppContext, StoreSource, build_policy

from .conftest import _free_port, run_main


@pytest.fixture(scope="module")
def built(served_app):
    """The served app's store: a tiny teacher and its int8 variant, finished and benchmarked."""
    return served_app[1] / "store"


def _ctx(store, **kw) -> AppContext:
    from compression.dashboard import make_context

    return make_context(str(store), **kw)


def test_build_policy_defaults_and_overrides():
    assert build_policy(False, {}).enabled
    assert not build_policy(True, {}).enabled and "published" in build_policy(True, {}).reason
    assert not build_policy(False, {"SPACE_ID": "me/lab"}).enabled
    assert build_policy(False, {"SPACE_ID": "me/lab", "COMPRESSION_LAB_BUILDS": "on"}).enabled
    assert not build_policy(False, {"COMPRESSION_LAB_BUILDS": "off"}).enabled
    with pytest.raises(Exception, match="allowed: on, off"):
        build_policy(False, {"COMPRESSION_LAB_BUILDS": "maybe"})


def test_playground_streams_rows_teacher_first_with_what_each_is(built):
    ctx = _ctx(built)
    pages = [page for page, _ in cb.predict(ctx, "a great and moving film")]
    assert len(pages) == 2  # one update per variant, as each answers
    assert pages[0].count("<tr") == 3 and "1 more variant(s) answering" in pages[0]
    assert pages[0].index("teacher") < pages[0].index("answering")  # the teacher first
    final = pages[-1]
    assert "answering" not in final and "teacher-int8" in final and "int8 (torch dynamic) of teacher" in final
    # the run's measured ratios against the teacher (a tiny int8 model may well be slower: either is shown)
    assert re.search(r"\d+\.\dx (faster|slower), \d+\.\dx (smaller|larger)", final), final


def test_models_are_warmed_in_the_background(built):
    ctx = _ctx(built)  # make_context starts loading and tracing every bundle
    rows = ctx.source.rows()
    deadline = time.time() + 120
    while not all(ctx.cache.has(r["bundle"]) for r in rows):
        assert time.time() < deadline, "bundles were not warmed"
        time.sleep(0.2)
    assert all(ctx.cache.get(r["bundle"]).runtime for r in rows)  # traced (or eager, with its reason) already


def test_builds_off_refuses_the_api_call(built, monkeypatch):
    from gradio_client import Client

    from compression.dashboard import create_app, launch_kwargs

    monkeypatch.setenv("COMPRESSION_LAB_BUILDS", "off")
    demo = create_app(str(built))
    port = _free_port()
    demo.launch(**{**launch_kwargs(), "server_name": "127.0.0.1", "server_port": port, "prevent_thread_lock": True})
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        with pytest.raises(Exception, match="Builds are off here"):
            client.predict("quick.yaml", "embedded:mpnet-base", "embedded:rotten-tomatoes", 200, [], [],
                           api_name="/build")
        page, _ = client.predict("still answers", api_name="/predict")  # the rest is served as usual
        assert "teacher-int8" in page
    finally:
        demo.close()
    assert not (built / "lab-recipes").exists()


def test_starter_run_builds_itself_in_a_child_process(tiny_model, tiny_data, tmp_path):
    recipe = tmp_path / "starter.yaml"
    recipe.write_text(f"name: starter\ndata: {{source: {tiny_data}, max_test_samples: 40}}\n"
                      f"teacher: {{model: {tiny_model}, max_length: 32, train: {{epochs: 1, batch_size: 16}}}}\n"
                      "quantize:\n  - {name: teacher-int8, source: teacher, method: dynamic-int8}\n"
                      "bench: {samples: 4, repeats: 1, warmup: 1, throughput_batches: 1, memory: false}\n")
    store = tmp_path / "store"
    ctx = _ctx(store, starter=recipe)
    assert ctx.building() and ctx.build._proc.pid != os.getpid()  # a child process, not a thread of the app
    with pytest.raises(Exception, match="still building"):
        list(cb.predict(ctx, "too early"))  # nothing recorded yet: says so instead of failing
    html, *_ = cb.banner(ctx, None)
    assert "Building the <b>starter</b> run" in html
    state = ctx.build.wait(600)
    assert state.error is None and state.run_id == 1, state.error
    rows = ctx.source.rows()
    assert [r["name"] for r in rows] == ["teacher", "teacher-int8"] and rows[0]["latency_p50_ms"]
    assert "teacher-int8" in list(cb.predict(ctx, "a fine film"))[-1][0]
    assert not _ctx(store, starter=recipe).building()  # a store with runs never starts it again


def test_lab_build_runs_in_a_child_process_and_refuses_a_second(tiny_model, tiny_data, tmp_path, monkeypatch):
    """The Lab's build endpoint accepts only offered choices; one build at a time per app."""
    import gradio as gr

    ctx = AppContext(source=StoreSource(tmp_path / "store"), work_dir=tmp_path, policy=build_policy(False, {}))
    with pytest.raises(gr.Error, match="lists offered"):
        next(cb.run_build(ctx, "../../etc/passwd.yaml", "embedded:mpnet-base", "embedded:rotten-tomatoes", 200, [],
                          [], progress=lambda *a, **k: None))

    class Running:
        class state:  # noqa: N801 - stands in for a BuildProcess's state
            running, recipe, fraction = True, "starter", 0.4

    ctx.build = Running()
    with pytest.raises(gr.Error, match="already running"):
        next(cb.run_build(ctx, "quick.yaml", "embedded:mpnet-base", "embedded:rotten-tomatoes", 200, [], [],
                          progress=lambda *a, **k: None))


def _hashes(folder) -> dict:
    import hashlib

    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def published(built, tmp_path_factory):
    from .conftest import run_cli

    folder = tmp_path_factory.mktemp("published") / "tiny-run"
    result = run_cli("publish", "--store", str(built), "--to", str(folder), "--no-chart")
    assert result.returncode == 0, result.stderr[-2000:]
    return folder


def test_a_published_run_answers_a_browser_visitor_with_nothing_written(published, tmp_path):
    """Served read-only from a folder: a visitor gets every row, builds are off, and not one byte changes."""
    import shutil

    from playwright.sync_api import sync_playwright

    from compression.dashboard import create_app, launch_kwargs

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(chromium):
        pytest.skip("chromium is not installed (apt-get install chromium)")
    before = _hashes(published)
    demo = create_app(str(tmp_path / "elsewhere"), published=str(published))
    port = _free_port()
    demo.launch(**{**launch_kwargs(), "server_name": "127.0.0.1", "server_port": port, "prevent_thread_lock": True})
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu",
                                                                       "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_label("Text").fill("A gripping, beautifully acted film.")
            page.get_by_role("button", name="Classify with every variant").click()
            page.wait_for_selector("table.preds tbody tr:nth-child(2) td b", timeout=60_000)
            page.wait_for_function("!document.querySelector('table.preds tr.pending')", timeout=60_000)
            rows = page.locator("table.preds tbody tr")
            names = [rows.nth(i).locator("td b").first.inner_text() for i in range(rows.count())]
            status = page.get_by_text("Serving the published run").inner_text()
            page.get_by_role("tab", name="Lab").click()
            lab = page.get_by_text("serves a published run, which is read-only").inner_text()
            browser.close()
    finally:
        demo.close()
    assert names == ["teacher", "teacher-int8"] and "read-only" in status and "Builds are off here" in lab
    assert _hashes(published) == before  # nothing written, nothing added


def test_a_tampered_published_file_takes_only_its_variant_offline(published, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(published, copy)
    weights = next((copy / "bundles" / "teacher-int8").glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF
    weights.write_bytes(bytes(data))
    ctx = _ctx(tmp_path / "store", published=str(copy))
    rows = {r["name"]: r for r in ctx.source.rows()}
    assert rows["teacher"]["status"] == "ok" and rows["teacher-int8"]["status"].startswith("broken:")
    final = list(cb.predict(ctx, "a fine film"))[-1][0]
    assert "teacher (fine-tuned)" in final and "broken: " in final and "SHA-256" in final
    assert not ctx.policy.enabled  # a published run is never built into


def test_a_copied_store_with_its_original_gone_still_works(built, tmp_path):
    """Paths inside a store are relative: a moved or copied store lists, predicts, benchmarks, serves, publishes."""
    import json
    import shutil

    from .conftest import run_cli

    original, moved = tmp_path / "original", tmp_path / "moved"
    shutil.copytree(built, original)
    shutil.copytree(original, moved)
    shutil.rmtree(original)
    rows = [json.loads(line) for line in run_main("list", "--json", "--store", str(moved)).stdout.splitlines()]
    assert [r["status"] for r in rows] == ["ok", "ok"] and all(r["bundle"].startswith(str(moved)) for r in rows)
    assert run_main("predict", "teacher-int8", "a fine film", "--store", str(moved)).returncode == 0
    bench = run_main("bench", "teacher", "teacher-int8", "--store", str(moved), "--samples", "4", "--repeats", "1",
                    "--no-memory", "--json")
    assert bench.returncode == 0, bench.stderr[-1500:]
    assert run_cli("publish", "--store", str(moved), "--to", str(tmp_path / "pub.zip"), "--no-chart").returncode == 0
    assert "teacher-int8" in list(cb.predict(_ctx(moved), "a fine film"))[-1][0]
