"""Faults: a build SIGKILLed at any stage leaves the store consistent and resumable; unwritable stores, two builds
and corrupted bundles give clear messages. Kills use the ``COMPRESSION_LAB_FAILPOINT`` hook (see errors.py), so
each test stops the build at an exact point rather than at a random time."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from compression.bundle.folder import load_bundle
from compression.bundle.meta import bundle_problem
from compression.store.run_store import RunStore

from .conftest import ROOT, run_cli, run_main, synthetic_rows

RECIPE = """name: crash
data: {{source: {data}}}
teacher: {{model: {model}, max_length: 32, train: {{epochs: 2, batch_size: 16, learning_rate: 0.003, evals_per_epoch: 2}}}}
students:
  - {{name: half, init: teacher-layers, max_length: 32, train: {{epochs: 1, batch_size: 16, learning_rate: 0.003}}}}
quantize:
  - {{name: half-int8, source: half, method: dynamic-int8}}
augment: {{copies: 1, min_words: 6, neighbours: 3, transfer: {transfer}}}
bench: {{samples: 4, repeats: 1, warmup: 1, throughput_batches: 1, batch_size: 4, memory: false}}
"""
VARIANTS = {"teacher", "half", "half-int8"}


@pytest.fixture()
def recipe(tmp_path, tiny_data, tiny_model):
    path, transfer = tmp_path / "crash.yaml", tmp_path / "more.csv"
    transfer.write_text("text\n" + "\n".join(t for t, _ in synthetic_rows(30, seed=9)) + "\n")
    path.write_text(RECIPE.format(data=tiny_data, model=tiny_model, transfer=transfer))
    return str(path)


def _rows(store) -> dict:
    result = run_main("list", "--json", "--store", str(store))
    assert result.returncode == 0, result.stderr[-1500:]
    return {r["name"]: r for r in map(json.loads, result.stdout.splitlines())}


def _finished_are_intact(store) -> set[str]:
    """Every variant the store calls finished has an intact bundle; returns their names."""
    with RunStore(store) as s:
        finished = s.variants(status="finished", latest_only=False)
        assert not [r for r in s.runs() if r["status"] == "running"]  # the dead build's run was marked failed
    for v in finished:
        assert bundle_problem(v.bundle) is None, (v.name, bundle_problem(v.bundle))
    return {v.name for v in finished}


# One store, killed again and again: each resume runs until the next kill point, so every point is reached by a build
# that resumes what the kill before it left. (failpoint, variants finished before the kill). An occurrence count
# (":N") counts within one process: a variant that the resumed build reuses is neither saved nor recorded again.
CHAIN = [
    ("train.after-checkpoint", set()),            # mid teacher fine-tune, just after its first checkpoint
    ("bundle.before-rename:1", set()),            # teacher bundle fully written to its temp folder, not renamed
    ("variant.before-finish:1", set()),           # teacher bundle in place and verified, not yet recorded
    ("logits.before-cache", {"teacher"}),         # teacher logits computed, cache file not yet in place
    ("augment.before-cache", {"teacher"}),        # augmented texts labelled, cache file not yet in place
    ("transfer.before-cache", {"teacher"}),       # transfer set labelled, cache file not yet in place
    ("bundle.before-rename:1", {"teacher"}),      # while saving the student (the teacher is reused: no save)
    ("variant.before-finish:2", {"teacher", "half"}),  # quantized variant verified, not recorded
    ("bench.start", VARIANTS),                    # every variant finished, the run not
]


def test_sigkill_at_every_stage_leaves_the_store_consistent_and_each_resume_goes_on(recipe, tmp_path):
    store = tmp_path / "store"
    for run, (point, done) in enumerate(CHAIN, start=1):
        killed = run_cli("build", recipe, "--store", str(store), env={"COMPRESSION_LAB_FAILPOINT": point})
        assert killed.returncode == -signal.SIGKILL, (point, killed.stderr[-2000:])
        assert _finished_are_intact(store) == done, point
        assert set(_rows(store)) <= done, point  # `list` shows only finished variants, and all of them are intact
        assert not list((store / "artifacts").glob("run-*/.*.tmp-*")), point  # half-written bundles removed
        with RunStore(store) as s:
            log = " | ".join(e["message"] for e in s.events(run_id=run, limit=1000))
        for name in CHAIN[run - 2][1] if run > 1 else ():  # what the last kill left finished is reused
            assert f"{name}: unchanged since run" in log, (point, name, log[-1500:])
        if point == "bundle.before-rename:1" and not done:  # the resume after the mid-training kill
            assert "teacher: resuming from checkpoint-" in log, log[-1500:]

    resumed = run_cli("build", recipe, "--store", str(store))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert set(_rows(store)) == VARIANTS and _finished_are_intact(store) >= VARIANTS
    log = resumed.stdout + resumed.stderr
    assert all(f"{name}: unchanged since run" in log for name in VARIANTS), log[-2000:]


def test_two_builds_on_one_store_are_refused_cleanly(recipe, tmp_path):
    store = tmp_path / "store"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    first = subprocess.Popen([sys.executable, "-m", "compression", "build", recipe, "--store", str(store)],
                             env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (store / "lab.sqlite").exists() or not _running(store):
            assert time.time() < deadline and first.poll() is None, "first build never started"
            time.sleep(0.2)
        second = run_cli("build", recipe, "--store", str(store))
        assert second.returncode == 1
        assert "another build is running" in second.stderr.lower() and "Traceback" not in second.stderr
    finally:
        out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-2000:]
    assert set(_rows(store)) == VARIANTS


def _running(store) -> bool:
    # lab.sqlite exists a moment before the first build commits its tables: not running yet.
    try:
        with sqlite3.connect(store / "lab.sqlite") as conn:
            return conn.execute("SELECT COUNT(*) FROM runs WHERE status = 'running'").fetchone()[0] > 0
    except sqlite3.OperationalError:
        return False


def test_store_on_a_file_and_on_a_full_disk(recipe, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run_main("build", recipe, "--store", str(blocker / "store"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cannot create" in result.stderr.lower() or "not a directory" in result.stderr.lower(), result.stderr
    # A full disk: files may not grow past 64 KiB in this process tree (RLIMIT_FSIZE; SIGXFSZ ignored, so writes
    # fail with EFBIG as they would with ENOSPC). The SQLite store fits; the first bundle does not.
    code = ("import resource, signal, sys, runpy; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536)); "
            f"sys.argv = ['compression', 'build', {recipe!r}, '--store', {str(tmp_path / 'full')!r}]; "
            "runpy.run_module('compression', run_name='__main__')")
    full = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT)
    assert full.returncode == 1, full.stderr[-2000:]
    line = [x for x in full.stderr.splitlines() if x.startswith("error:")]
    assert len(line) == 1 and ("no space left" in line[0] or "disk full" in line[0]), full.stderr[-2000:]
    assert "Traceback" not in full.stderr
    assert _finished_are_intact(tmp_path / "full") == set()


def test_corrupted_bundle_is_reported_broken_in_list(recipe, tmp_path):
    store = tmp_path / "store"
    assert run_cli("build", recipe, "--store", str(store)).returncode == 0
    rows = _rows(store)
    assert {r["status"] for r in rows.values()} == {"ok"}
    weights = next(p for p in (tmp_path / "store" / "artifacts").glob("run-*/half/*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF  # one flipped byte deep in the weights: it would still load, and predict garbage
    weights.write_bytes(bytes(data))
    rows = _rows(store)
    assert rows["half"]["status"].startswith("broken:") and "SHA-256 mismatch" in rows["half"]["status"]
    assert rows["teacher"]["status"] == "ok"
    table = run_main("list", "--store", str(store))
    assert table.returncode == 0 and "BROKEN half:" in table.stdout
    # The app shows it as broken and keeps serving the others.
    from gradio_client import Client

    from compression.dashboard import create_app, launch_kwargs

    from .conftest import _free_port

    demo = create_app(str(store))
    port = _free_port()
    demo.launch(**{**launch_kwargs(), "server_name": "127.0.0.1", "server_port": port, "prevent_thread_lock": True})
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        page, _ = client.predict("a b c", api_name="/predict")
        assert "broken: " in page and "SHA-256 mismatch" in page and page.count("<tr") == 4
    finally:
        demo.close()
    # A rebuild replaces it: the broken bundle is never reused.
    again = run_cli("build", recipe, "--store", str(store))
    assert again.returncode == 0 and "half: unchanged" not in again.stdout + again.stderr
    assert _rows(store)["half"]["status"] == "ok"
    assert load_bundle(_rows(store)["half"]["bundle"]).predict(["a b c"])[0].label
