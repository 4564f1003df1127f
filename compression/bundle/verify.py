"""Prove a bundle reloads: compare its probe logits in this process, or in a fresh one.

A build checks every variant in a fresh Python process by default: nothing held in memory (a registered plugin,
a cached trace) can then stand in for what is on disk. ``COMPRESSION_LAB_VERIFY=in-process`` reloads the bundle
from disk in the same process instead: the same files and probe comparison, without a new interpreter's start-up
(the test suite uses it, except where the fresh process is what a test checks).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from compression.bundle.folder import Bundle, load_bundle
from compression.core.child_env import child_env
from compression.core.errors import LabError


def check_probe(bundle: Bundle) -> dict[str, Any]:
    """Compare the bundle's probe logits now with those recorded at save time."""
    import numpy as np

    probe = bundle.meta.get("probe")
    if not probe:
        raise LabError(f"bundle {bundle.folder} has no probe set to verify against")
    expected = np.asarray(probe["logits"], dtype=np.float32)
    got = bundle.logits(probe["texts"])
    diff = float(np.abs(got - expected).max())
    argmax_equal = bool((got.argmax(1) == expected.argmax(1)).all())
    return {"ok": argmax_equal and diff <= probe["atol"], "argmax_equal": argmax_equal, "max_abs_diff": diff,
            "atol": probe["atol"], "probes": len(probe["texts"])}


VERIFY_ENV = "COMPRESSION_LAB_VERIFY"
VERIFY_MODES = ("fresh-process", "in-process")


def verify_mode() -> str:
    mode = os.environ.get(VERIFY_ENV, "fresh-process")
    if mode not in VERIFY_MODES:
        raise LabError(f"{VERIFY_ENV}={mode!r} is not one of {', '.join(VERIFY_MODES)}")
    return mode


def verify_bundle(folder: str | Path, timeout: float = 900, fresh: bool | None = None) -> dict[str, Any]:
    """Reload the bundle (in a fresh Python process unless ``fresh`` is False or ``COMPRESSION_LAB_VERIFY`` says
    ``in-process``) and check it reproduces its probe predictions.

    Raises ``LabError`` when it does not; returns the comparison (with ``"process"``: where it reloaded) otherwise.
    """
    if fresh is None:
        fresh = verify_mode() == "fresh-process"
    if not fresh:
        result = {**check_probe(load_bundle(folder)), "process": "in-process"}
        _raise_unless_ok(folder, result)
        return result
    proc = subprocess.run([sys.executable, "-m", "compression", "verify", str(folder), "--json"],
                          capture_output=True, text=True, timeout=timeout, env=child_env())
    lines = proc.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise LabError(f"bundle {folder} did not reload in a fresh process: {reason}") from None
    _raise_unless_ok(folder, result)
    return {**result, "process": "fresh-process"}


def _raise_unless_ok(folder, result: dict) -> None:
    if not result.get("ok"):
        raise LabError(f"bundle {folder} does not reproduce its predictions after reload: "
                       f"argmax equal {result.get('argmax_equal')}, max |Δlogit| {result.get('max_abs_diff')}")
