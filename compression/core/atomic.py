"""Atomic file writes: a reader sees the old file or the new one, never half of one.

The new content goes to a temporary file beside the target, named ``.NAME.tmp-PID``, and is renamed over it
(``os.replace`` is atomic within one file system). A process killed in between leaves only that hidden file;
``RunStore.recover`` removes such ``.*.tmp-*`` junk from the store's artifacts and cache folders.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable


def temp_path(path: str | os.PathLike) -> Path:
    """Where an atomic write of ``path`` stages its content: ``.NAME.tmp-PID`` in the same folder."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_atomic(path: str | os.PathLike, data: bytes | str, encoding: str = "utf-8",
                 before_replace: Callable[[], None] | None = None) -> Path:
    """Write ``data`` (bytes, or text in ``encoding``) to ``path`` atomically; returns ``path``.

    The folder must exist. On any failure the temporary file is removed and the target is left as it was.
    ``before_replace`` runs once the content is on disk, just before the rename (the crash tests kill there).
    """
    path = Path(path)
    tmp = temp_path(path)
    payload = data.encode(encoding) if isinstance(data, str) else bytes(data)
    try:
        with open(tmp, "wb") as f:
            f.write(payload)
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | os.PathLike, obj: Any, *, end: str = "", **json_kwargs: Any) -> Path:
    """``json.dumps(obj, **json_kwargs) + end`` written atomically as UTF-8; returns ``path``.

    ``end`` is what follows the document (``"\\n"`` for a file people read); ``json_kwargs`` go to ``json.dumps``
    unchanged (``indent``, ``sort_keys``, ``ensure_ascii``...).
    """
    return write_atomic(path, json.dumps(obj, **json_kwargs) + end)
