"""The run store's build lock and the clean-up after dead builds.

A build holds ``build.lock`` (an exclusive ``flock``) for its whole life, so a free lock proves that no build is
running: every run still marked 'running' then belongs to a process that died. The kernel drops a dead process's
flock by itself, so no stale lock ever needs breaking.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from compression.store.db import BuildLockedError

# Recovery holds the build lock for a few milliseconds; a build that starts
# in that instant retries this long instead of reporting a phantom build.
LOCK_GRACE_S = 0.5
LOCK_POLL_S = 0.02


def _flock_nb(fd: int) -> bool:
    """Try the exclusive lock without waiting; False if another holder has it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise
        return False
    return True


@contextmanager
def try_flock(lock_path: Path) -> Iterator[int | None]:
    """Yield an fd holding the exclusive build lock, or None if someone holds it."""
    # A fresh open file description: flock conflicts even with this process's
    # own build_lock(), which is what recovery needs.
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        locked = _flock_nb(fd)
        try:
            yield fd if locked else None
        finally:
            if locked:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def build_lock(lock_path: Path, root: Path, wait: bool = False) -> Iterator[None]:
    """Hold the exclusive build lock of the store at ``root``; wait=False raises BuildLockedError if taken."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, wait, root)
        try:
            # Our pid in the file is for humans only; the flock is the truth.
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(fd: int, wait: bool, root: Path) -> None:
    if wait:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    deadline = time.monotonic() + LOCK_GRACE_S
    while not _flock_nb(fd):
        if time.monotonic() >= deadline:
            raise BuildLockedError(f"another build is running on store {root}; "
                                   "wait for it or use another --store")
        time.sleep(LOCK_POLL_S)


def remove_junk(root: Path, artifacts_dir: Path) -> None:
    """Remove half-written bundles and cache files of dead builds (named ``.NAME.tmp-PID``, see
    :mod:`compression.core.atomic`): nothing ever reads them. Call only while holding the build lock."""
    for junk in [*artifacts_dir.glob("run-*/.*.tmp-*"), *(root / "cache").glob(".*.tmp-*")]:
        if junk.is_dir():
            shutil.rmtree(junk, ignore_errors=True)
        else:
            junk.unlink(missing_ok=True)
