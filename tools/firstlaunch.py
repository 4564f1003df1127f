"""Benchmark of the first launch, as a new user and a first visitor meet it (prints its figures; not a test).

    python -m tools.firstlaunch starter --store /tmp/fresh        # empty store, fresh model cache
    python -m tools.firstlaunch first-request --store runs/quick  # a built store, app just started

``starter``: starts ``python app.py`` on an empty store with an empty model cache (so re-joining the embedded MPNet
is included) and measures, from the launch: the page served, the teacher's first answer in the Playground (a
visitor polling every few seconds), every starter variant answering, and the starter run finished.

``first-request``: starts the app on a store that has variants (``--no-starter``) and, as soon as the page is
served, sends one Playground request; measures the time to its first streamed row and to all rows.
Both talk to the app over HTTP with ``gradio_client``, on this machine only.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from compression.core.child_env import PACKAGE_ROOT as ROOT
from compression.core.child_env import child_env

TEXT = "A gripping, beautifully acted film that stays with you."


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(store: Path, *extra: str, cache: Path | None = None) -> tuple[subprocess.Popen, str]:
    port = _port()
    env = child_env(GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")
    if cache is not None:
        env["COMPRESSION_LAB_CACHE"] = str(cache)
    log = open(store.parent / f"{store.name}-app.log", "w")  # noqa: SIM115 - lives as long as the app
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--store", str(store), *extra], env=env,
                            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    return proc, f"http://127.0.0.1:{port}/"


def _wait_served(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the app exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the page was not served within {timeout:.0f} s")


def _answers(client) -> list[str]:
    """Variants that answered one Playground request (empty when none can answer yet)."""
    import re

    try:
        page, _ = client.predict(TEXT, api_name="/predict")
    except Exception:  # "still building": the app says so; we keep asking like a visitor would
        return []
    return [n for n in re.findall(r"<td><b>([^<]+)</b>", page) if "broken" not in n][::2]


def starter(store: Path, timeout: float, poll: float) -> dict:
    from gradio_client import Client

    if store.exists() and any(store.iterdir()):
        raise SystemExit(f"{store} is not empty: the starter run builds only on an empty store")
    cache = Path(tempfile.mkdtemp(prefix="lab-cache-"))  # fresh: re-joining the embedded models is included
    t0 = time.monotonic()
    proc, url = _launch(store, cache=cache)
    figures: dict = {}
    try:
        _wait_served(url, proc)
        figures["page_served_s"] = round(time.monotonic() - t0, 1)
        client = Client(url, verbose=False)
        variants = 3
        while time.monotonic() - t0 < timeout:
            answered = _answers(client)
            now = round(time.monotonic() - t0, 1)
            if answered and "teacher_answers_s" not in figures:
                figures["teacher_answers_s"] = now
            if len(answered) >= variants:
                figures["all_variants_answer_s"] = now
                break
            time.sleep(poll)
        figures["run_finished_s"] = _run_finished(store, t0, timeout)
        figures["variants"] = answered
    finally:
        proc.terminate()
        proc.wait(30)
    return figures


def _run_finished(store: Path, t0: float, timeout: float) -> float | None:
    import sqlite3

    while time.monotonic() - t0 < timeout:
        try:
            with sqlite3.connect(f"file:{store / 'lab.sqlite'}?mode=ro", uri=True) as conn:
                row = conn.execute("SELECT status, ended - started FROM runs ORDER BY id LIMIT 1").fetchone()
        except sqlite3.OperationalError:  # the file exists before its tables do, or not yet at all
            row = None
        if row and row[0] != "running":
            return round(time.monotonic() - t0, 1) if row[0] == "finished" else None
        time.sleep(1)
    return None


def first_request(store: Path) -> dict:
    from gradio_client import Client

    t0 = time.monotonic()
    proc, url = _launch(store, "--no-starter")
    try:
        _wait_served(url, proc)
        served = time.monotonic()
        client = Client(url, verbose=False)
        start = time.monotonic()
        job = client.submit(TEXT, api_name="/predict")
        stamps = [time.monotonic() - start for _ in job]  # one per streamed update, the teacher's row first
        return {"page_served_s": round(served - t0, 1), "first_row_s": round(stamps[0], 2),
                "all_rows_s": round(stamps[-1], 2), "updates": len(stamps)}
    finally:
        proc.terminate()
        proc.wait(30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.firstlaunch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("starter", "first-request"))
    parser.add_argument("--store", required=True, type=Path, help="store folder (empty for starter)")
    parser.add_argument("--timeout", type=float, default=900, help="give up after this many seconds (starter)")
    parser.add_argument("--poll", type=float, default=3.0, help="seconds between a visitor's requests (starter)")
    args = parser.parse_args(argv)
    from compression.core.hardware import cpu_info, package_versions
    from compression.evaluation.bench import _system_jiffies

    j0, w0 = _system_jiffies(), time.monotonic()
    figures = starter(args.store, args.timeout, args.poll) if args.what == "starter" else first_request(args.store)
    j1 = _system_jiffies()
    info = cpu_info()
    figures["provenance"] = {"cpu": info["model"], "usable_cores": info["usable_cores"],
                             "versions": package_versions("torch", "transformers", "gradio"),
                             "machine_busy_share": round((j1[0] - j0[0]) / max(j1[1] - j0[1], 1), 3) if j0 and j1
                             else None, "wall_s": round(time.monotonic() - w0, 1),
                             "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
