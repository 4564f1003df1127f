"""Builds in a child process: the app that starts one keeps serving, and visitors' requests never count in the
build's benchmark figures (the bench reads the CPU time of its own process, so a build in a thread of the app would
book every visitor's prediction as its own).

The child is ``python -m compression.builder.child RECIPE STORE``: it runs the pipeline and prints one JSON line per
progress report (``{"fraction", "message"}``), then ``{"done": run_id}`` or ``{"error": "one line"}``. The parent
side, :class:`BuildProcess`, reads those lines in a thread and keeps the latest state for the UI to poll.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from compression.builder.pipeline import build
from compression.core.child_env import child_env
from compression.core.config import load_recipe
from compression.core.errors import LabError, describe_os_error
from compression.store.db import StoreNotReady
from compression.store.run_store import RunStore, StoreError

STARTER_RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "starter.yaml"
BUILD_NICENESS = 10


@dataclass
class BuildState:
    """What a UI shows of a build: where it is, its last messages, how it ended."""

    recipe: str
    started: float = field(default_factory=time.time)
    fraction: float = 0.0
    message: str = "starting"
    log: deque = field(default_factory=lambda: deque(maxlen=200))
    run_id: int | None = None
    error: str | None = None
    ended: float | None = None

    @property
    def running(self) -> bool:
        return self.ended is None


class BuildProcess:
    """One build of ``recipe_file`` into ``store_dir`` in a child process, observed from a reader thread."""

    def __init__(self, recipe_file: str | Path, store_dir: str | Path, name: str = ""):
        self.state = BuildState(recipe=name or Path(recipe_file).stem)
        env = child_env(TRANSFORMERS_VERBOSITY="error", PYTHONUNBUFFERED="1")
        self._proc = subprocess.Popen([sys.executable, "-m", "compression.builder.child", str(recipe_file),
                                       str(store_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env=env, stdin=subprocess.DEVNULL)
        self._stderr: deque = deque(maxlen=20)
        threading.Thread(target=self._drain_stderr, daemon=True, name="build-stderr").start()
        self._reader = threading.Thread(target=self._read, daemon=True, name="build-reader")
        self._reader.start()

    def _drain_stderr(self) -> None:
        for line in self._proc.stderr:
            if line.strip():
                self._stderr.append(line.rstrip())

    def _read(self) -> None:
        s = self.state
        for line in self._proc.stdout:
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue  # a library printing to stdout: not ours
            if "fraction" in item:
                s.fraction, s.message = float(item["fraction"]), str(item["message"])
                s.log.append(f"[{time.strftime('%H:%M:%S')}] {s.message}")
            s.run_id = item.get("done", s.run_id)
            s.error = item.get("error", s.error)
        code = self._proc.wait()
        if code != 0 and s.error is None:
            tail = next((x for x in reversed(self._stderr) if x.strip()), f"exit status {code}")
            s.error = f"the build process ended ({tail[-300:]})"
        s.ended = time.time()

    def wait(self, timeout: float | None = None) -> BuildState:
        self._reader.join(timeout)
        return self.state

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()


def store_is_empty(store_dir: str | Path) -> bool:
    """No finished variant and no run at all: a store the starter run may fill."""
    root = Path(store_dir)
    if not (root / "lab.sqlite").is_file():
        return True

    try:
        with RunStore(root, readonly=True) as store:
            return not store.runs()
    except StoreNotReady:
        return True


def _main(argv: list[str]) -> int:
    def emit(**item) -> None:
        print(json.dumps(item, ensure_ascii=False), flush=True)

    recipe_file, store_dir = argv
    # A build is background work: where it competes with the app for the CPU, visitors' requests go first
    # (the benchmark records how busy the rest of the machine was, so its figures stay honest either way).
    os.nice(BUILD_NICENESS)
    try:
        recipe = load_recipe(recipe_file)
        with RunStore(store_dir) as store:
            emit(done=build(recipe, store, progress=lambda f, m: emit(fraction=round(f, 4), message=m)))
        return 0
    except (LabError, StoreError, ValueError, OSError) as err:
        emit(error=describe_os_error(err) or " ".join(str(err).split()))
        return 1


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
