"""Child processes of the lab (builds, memory probes, bundle checks, the app under test) and what they inherit."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds the package


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment with the package root first on ``PYTHONPATH``, plus ``extra`` variables.

    A child started as ``python -m compression...`` or ``python -c "from compression ..."`` then imports this very
    copy of the package, whatever its working folder and whether or not the package is installed.
    """
    path = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}
