"""Prove a bundle reloads: compare its probe logits in this process, or in a fresh one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from compression.bundle.folder import Bundle
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


def verify_bundle(folder: str | Path, timeout: float = 900) -> dict[str, Any]:
    """Reload the bundle in a fresh Python process and check it reproduces its probe predictions.

    Raises ``LabError`` when it does not; returns the comparison otherwise.
    """

    proc = subprocess.run([sys.executable, "-m", "compression", "verify", str(folder), "--json"],
                          capture_output=True, text=True, timeout=timeout, env=child_env())
    lines = proc.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise LabError(f"bundle {folder} did not reload in a fresh process: {reason}") from None
    if not result.get("ok"):
        raise LabError(f"bundle {folder} does not reproduce its predictions after reload: "
                       f"argmax equal {result.get('argmax_equal')}, max |Δlogit| {result.get('max_abs_diff')}")
    return result
