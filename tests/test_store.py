"""RunStore against real SQLite files and real child processes (no mocks)."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from compression.store.run_store import INTERRUPTED, BuildLockedError, RunStore, StoreError, resolve_store_dir

REPO = Path(__file__).resolve().parents[1]

# Shared by the child-process tests: open the store, hold the build lock, leave
# one run with one building variant, then run TAIL.
CHILD = textwrap.dedent("""
    import os, signal, sys, time
    from compression.store import RunStore
    store = RunStore(sys.argv[1])
    with store.build_lock():
        run = store.start_run("crashy", {"steps": ["prune"]})
        store.add_variant(run, "pruned", "prune", parent="base")
        {tail}
""")


def spawn(root: Path, tail: str) -> subprocess.Popen:
    code = CHILD.replace("{tail}", tail)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", code, str(root)], env=env)


@pytest.fixture
def store(tmp_path: Path):
    with RunStore(tmp_path / "store") as s:
        yield s


def finished_variant(store: RunStore, run: int, name: str, **metrics: float) -> int:
    vid = store.add_variant(run, name, "prune")
    store.finish_variant(vid, f"artifacts/{name}-{vid}", metrics)
    return vid


def test_layout_schema_and_wal(tmp_path: Path) -> None:
    root = tmp_path / "a" / "b"
    with RunStore(root) as s:
        assert s.root == root.resolve()
        assert s.artifacts_dir.is_dir() and s.db_path.is_file()
        assert (root / "build.lock").is_file()
    conn = sqlite3.connect(root / "lab.sqlite")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"runs", "variants", "metrics", "events"} <= tables
    finally:
        conn.close()
    RunStore(root).close()  # reopening an existing store is fine


def test_resolve_store_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COMPRESSION_LAB_STORE", raising=False)
    assert resolve_store_dir() == tmp_path.resolve() / "runs"
    monkeypatch.setenv("COMPRESSION_LAB_STORE", str(tmp_path / "env"))
    assert resolve_store_dir() == (tmp_path / "env").resolve()
    assert resolve_store_dir(tmp_path / "explicit") == (tmp_path / "explicit").resolve()
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_store_dir("~/x") == (tmp_path / "x").resolve()


def test_run_lifecycle(store: RunStore) -> None:
    run = store.start_run("r1", {"b": 1, "a": [1, 2]})
    assert store.get_run(run)["status"] == "running"
    done = store.add_variant(run, "q8", "quantize", parent="base", meta={"bits": 8})
    store.add_variant(run, "still-building", "prune")
    store.finish_variant(done, "artifacts/q8", {"acc": 0.91, "size_mb": 120},
                         details={"acc": {"n": 872}}, meta={"note": "ok"})
    store.log(run, "built q8", stage="quantize")
    store.finish_run(run)

    listed = store.variants()
    assert [v.name for v in listed] == ["q8"]  # building variants are not listed
    v = listed[0]
    # recorded relative to the store, read back absolute
    assert v.status == "finished" and v.bundle == str(store.root / "artifacts" / "q8") and v.parent == "base"
    assert v.metrics == {"acc": 0.91, "size_mb": 120.0}
    assert v.metric_details == {"acc": {"n": 872}, "size_mb": {}}
    assert v.meta == {"bits": 8, "note": "ok"}
    assert v.finished is not None and v.finished >= v.created
    assert [x.name for x in store.variants(status="building")] == ["still-building"]

    info = store.get_run(run)
    assert info["status"] == "finished" and info["ended"] is not None
    assert info["recipe"] == {"a": [1, 2], "b": 1}
    assert info["pid"] == os.getpid()
    assert [r["id"] for r in store.runs()] == [run]
    assert [(e["stage"], e["message"]) for e in store.events(run)] == [("quantize", "built q8")]

    with pytest.raises(StoreError):
        store.finish_variant(done, "again")  # already finished
    with pytest.raises(StoreError):
        store.add_variant(run, "late", "prune")  # run is over
    with pytest.raises(StoreError):
        store.log(run, "x", level="loud")


def test_latest_only_and_get_variant(store: RunStore) -> None:
    run = store.start_run("r", {})
    old = finished_variant(store, run, "p50", acc=0.8)
    finished_variant(store, run, "q8", acc=0.9)
    new = finished_variant(store, run, "p50", acc=0.85)
    failed = store.add_variant(run, "p50", "prune")
    store.fail_variant(failed, "out of memory")

    assert [(v.name, v.id) for v in store.variants()] == [("q8", 2), ("p50", new)]
    assert [v.id for v in store.variants(latest_only=False)] == [old, 2, new]
    assert [v.id for v in store.variants(status=None)] == [2, failed]
    failed_rec = store.variants(status="failed")[0]
    assert failed_rec.meta == {"error": "out of memory"}

    assert store.get_variant("p50").id == new
    assert store.get_variant(old).metrics == {"acc": 0.8}
    assert store.get_variant(str(old)).id == old  # digits naming nothing: an id
    with pytest.raises(StoreError, match=r"no finished variant named 'nope'.*known: q8, p50"):
        store.get_variant("nope")
    with pytest.raises(StoreError, match="no finished variant id"):
        store.get_variant(failed)


def test_set_metrics_upsert_and_nan(store: RunStore) -> None:
    run = store.start_run("r", {})
    vid = store.add_variant(run, "v", "prune")
    store.finish_variant(vid, "b", {"acc": float("nan"), "loss": 1.5}, details={"loss": {"ep": 1}})
    store.set_metrics(vid, {"loss": math.inf, "f1": 0.7})
    v = store.get_variant("v")
    assert v.metrics == {"acc": None, "f1": 0.7, "loss": None}
    assert v.metric_details["loss"] == {"ep": 1}  # an update without detail keeps it
    with pytest.raises(StoreError):
        store.set_metrics(vid, {"acc": "high"})
    with pytest.raises(StoreError):
        store.set_metrics(vid, {}, details={"ghost": {}})
    with pytest.raises(StoreError):
        store.set_metrics(9999, {"acc": 1.0})


def test_finish_variant_is_one_transaction(store: RunStore) -> None:
    run = store.start_run("r", {})
    vid = store.add_variant(run, "v", "prune")
    with pytest.raises(StoreError):  # the bad metric comes after a good one
        store.finish_variant(vid, "b", {"acc": 0.9, "bad": "x"})
    assert store.variants(status="building")[0].metrics == {}  # nothing half-written
    store.finish_variant(vid, "b", {"acc": 0.9})
    assert store.get_variant("v").metrics == {"acc": 0.9}


def test_fail_run_fails_building_variants(store: RunStore) -> None:
    run = store.start_run("r", {})
    done = finished_variant(store, run, "ok", acc=1.0)
    building = store.add_variant(run, "half", "prune")
    store.fail_run(run, "CUDA out of memory")
    store.fail_run(run, "second error")  # from an error handler: keeps the first
    info = store.get_run(run)
    assert info["status"] == "failed" and info["error"] == "CUDA out of memory"
    half = store.variants(status="failed")[0]
    assert half.id == building and "CUDA out of memory" in half.meta["error"]
    assert [v.id for v in store.variants()] == [done]  # finished work survives
    with pytest.raises(StoreError):
        store.finish_run(run)


def test_events_newest_last_and_limit(store: RunStore) -> None:
    run = store.start_run("r", {})
    store.log(None, "global", level="warning")
    for i in range(5):
        store.log(run, f"m{i}")
    assert [e["message"] for e in store.events(run, limit=3)] == ["m2", "m3", "m4"]
    assert store.events()[0]["message"] == "global"
    with pytest.raises(StoreError):
        store.log(424242, "no such run")


def test_crash_recovery_after_sigkill(tmp_path: Path) -> None:
    root = tmp_path / "store"
    child = spawn(root, "os.kill(os.getpid(), signal.SIGKILL)")
    assert child.wait(timeout=30) == -signal.SIGKILL

    with RunStore(root) as s:
        (run,) = s.runs()
        assert run["status"] == "failed" and run["error"] == INTERRUPTED
        assert run["ended"] is not None
        assert s.variants() == []
        (dead,) = s.variants(status="failed")
        assert dead.name == "pruned" and INTERRUPTED in dead.meta["error"]
        assert s.recover() == 0  # nothing left to mark


def test_live_build_is_not_recovered(tmp_path: Path) -> None:
    root = tmp_path / "store"
    ready = tmp_path / "ready"
    child = spawn(root, f"open({str(ready)!r}, 'w').close(); time.sleep(60)")
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert child.poll() is None, "child died before holding the lock"
            assert time.monotonic() < deadline, "child never got ready"
            time.sleep(0.02)

        with RunStore(root) as s:
            assert s.runs()[0]["status"] == "running"
            assert s.recover() == 0
            assert (root / "build.lock").read_text().strip() == str(child.pid)
            with pytest.raises(BuildLockedError, match="another build is running"):
                with s.build_lock():
                    pass
    finally:
        child.kill()
        child.wait(timeout=30)

    with RunStore(root) as s:
        assert s.runs()[0]["status"] == "failed"
        assert s.variants(status="failed")[0].name == "pruned"
        with s.build_lock():  # free again
            run = s.start_run("next", {})
            with RunStore(root) as other:
                assert other.recover() == 0  # our own lock protects our run
        s.finish_run(run)


def test_unwritable_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "plain-file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="is not writable"):
        RunStore(blocker / "store")  # fails for root too


READ_ONLY_FOR_ROOT = Path("/sys")  # sysfs: no user, root included, may create a folder or file there


@pytest.mark.skipif(not (READ_ONLY_FOR_ROOT / "kernel").is_dir(), reason="no sysfs (not Linux)")
@pytest.mark.parametrize("where", ["compression-lab-store-test", "kernel"], ids=["new-folder", "existing-folder"])
def test_read_only_folder(where: str) -> None:
    """A folder nobody may write in, whoever runs the test (CI runs as root, which ignores permission bits): one
    clear line, and nothing left behind."""
    root = READ_ONLY_FOR_ROOT / where
    before = root.exists()
    with pytest.raises(StoreError) as err:
        RunStore(root)
    message = str(err.value)
    assert message.startswith(f"store folder {root} is not writable: ") and "\n" not in message, message
    assert message.split(": ", 1)[1] in ("Operation not permitted", "Permission denied", "Read-only file system")
    assert root.exists() == before and not (root / "lab.sqlite").exists()


def test_read_only_parent(tmp_path: Path) -> None:
    """The same for a folder made read-only by its permission bits; as root, checked in a child process that
    gives up the capability to override them."""
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        if os.geteuid() != 0:
            with pytest.raises(StoreError, match="is not writable"):
                RunStore(parent / "store")
            return
        result = _without_dac_override(
            "from compression.store import RunStore, StoreError\n"
            "try:\n    RunStore(sys.argv[1])\nexcept StoreError as err:\n    print(err)\n", str(parent / "store"))
        assert result.stdout.strip() == f"store folder {parent / 'store'} is not writable: Permission denied", result
        assert not (parent / "store").exists()
    finally:
        parent.chmod(0o700)


def _without_dac_override(code: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``code`` as root without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH, so permission bits bind it."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_dac_override, cap_dac_read_search = 24, 1, 2

    def drop() -> None:  # in the child, before exec: the bounding set limits what root gets at exec
        for cap in (cap_dac_override, cap_dac_read_search):
            if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
                os._exit(97)

    result = subprocess.run([sys.executable, "-c", "import sys\n" + code, *args], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)}, preexec_fn=drop)
    if result.returncode == 97:
        pytest.skip("cannot drop capabilities here (no CAP_SETPCAP)")
    return result


def test_many_processes_open_a_new_store_at_once(tmp_path):
    """torchrun ranks open the same brand-new store together: none may fail with 'database is locked'."""
    import subprocess
    import sys

    root = tmp_path / "fresh"
    code = "import sys; from compression.store import RunStore; RunStore(sys.argv[1]).close(); print('ok')"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent)
             for _ in range(6)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, [o[1][-300:] for o in outs]


def test_bundle_paths_are_relative_so_a_moved_store_stays_whole(tmp_path: Path) -> None:
    import shutil

    with RunStore(tmp_path / "old") as s:
        run = s.start_run("r", {})
        vid = s.add_variant(run, "teacher", "teacher")
        folder = s.artifacts_dir / "run-1" / "teacher"
        folder.mkdir(parents=True)
        s.finish_variant(vid, str(folder), {})
        # a store written before paths were relative: an absolute path of where it was built
        legacy = s.add_variant(run, "int8", "quantized")
        s.finish_variant(legacy, "/elsewhere/store/artifacts/run-1/int8", {})
    with sqlite3.connect(tmp_path / "old" / "lab.sqlite") as conn:
        assert conn.execute("SELECT bundle FROM variants WHERE id = 1").fetchone()[0] == "artifacts/run-1/teacher"
    shutil.copytree(tmp_path / "old", tmp_path / "new")
    shutil.rmtree(tmp_path / "old")
    with RunStore(tmp_path / "new") as s:
        bundles = {v.name: v.bundle for v in s.variants()}
    assert bundles == {"teacher": str(tmp_path / "new" / "artifacts" / "run-1" / "teacher"),
                       "int8": str(tmp_path / "new" / "artifacts" / "run-1" / "int8")}


def test_readers_open_read_only_and_never_take_the_build_lock(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no run store"):
        RunStore(tmp_path / "none", readonly=True)
    assert not (tmp_path / "none").exists()
    with RunStore(tmp_path / "s") as writer, writer.build_lock():  # a build holds the lock: readers still read
        run = writer.start_run("r", {})
        finished_variant(writer, run, "a", acc=0.5)
        before = (tmp_path / "s" / "lab.sqlite-wal").stat().st_mtime_ns
        with RunStore(tmp_path / "s", readonly=True) as reader:
            assert [v.name for v in reader.variants()] == ["a"]
            assert reader.runs()[0]["status"] == "running"
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                reader.log(run, "no")
        assert (tmp_path / "s" / "lab.sqlite-wal").stat().st_mtime_ns == before  # nothing written


def test_a_store_whose_tables_are_not_committed_yet_reads_as_not_ready(tmp_path: Path) -> None:
    from compression.builder.child import store_is_empty
    from compression.dashboard.context import StoreSource
    from compression.store.db import StoreNotReady

    (tmp_path / "s").mkdir()
    sqlite3.connect(tmp_path / "s" / "lab.sqlite").close()  # what a first build has made before its schema commit
    with pytest.raises(StoreNotReady, match="still being created"):
        RunStore(tmp_path / "s", readonly=True)
    assert store_is_empty(tmp_path / "s")
    assert StoreSource(tmp_path / "s").rows() == []
    with RunStore(tmp_path / "s") as writer:  # the build then commits the tables: readers read
        writer.start_run("r", {})
    with RunStore(tmp_path / "s", readonly=True) as reader:
        assert reader.runs()[0]["status"] == "running"


def test_recovery_removes_what_an_interrupted_atomic_write_leaves(tmp_path: Path, monkeypatch) -> None:
    """files.write_atomic stages beside the target as .NAME.tmp-PID: the name recovery sweeps up after a kill."""
    from compression.core import atomic as files

    root = tmp_path / "store"
    RunStore(root).close()
    target = root / "artifacts" / "run-1" / "meta.json"
    target.parent.mkdir(parents=True)
    files.write_json_atomic(target, {"a": 1}, indent=1)
    assert target.read_text() == '{\n "a": 1\n}' and not files.temp_path(target).exists()
    assert files.temp_path(target).name == f".meta.json.tmp-{os.getpid()}"

    def killed(*_args):  # the writer dies between writing and renaming
        raise OSError("killed")

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(OSError, match="killed"):
        files.write_atomic(target, "new")
    monkeypatch.undo()
    assert target.read_text() == '{\n "a": 1\n}'  # the old content, whole
    assert not files.temp_path(target).exists()  # a failed write cleans up after itself
    leftovers = [files.temp_path(target), files.temp_path(root / "cache" / "logits.npz")]
    (root / "cache").mkdir()
    for junk in leftovers:  # what a SIGKILL between write and rename leaves
        junk.write_bytes(b"half")
    with RunStore(root):
        pass
    assert not any(junk.exists() for junk in leftovers) and target.exists()
