"""A bundle's ``bundle.json`` and file facts: reading and updating its metadata, its content digest, its size,
and what is wrong with a folder that should be a bundle.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from compression.core.atomic import write_json_atomic
from compression.core.errors import LabError

FORMAT = "compression-lab-bundle"


VERSION = 1


META_FILE = "bundle.json"


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


WEIGHTS_FILE = "weights.safetensors"  # the lab's encoded weights (int8, sparse, structurally pruned)


def read_meta(folder: str | Path) -> dict:
    path = Path(folder) / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LabError(f"{folder} is not a bundle (no {META_FILE})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise LabError(f"bundle {folder} is broken: {META_FILE} is not valid JSON ({err})") from err
    if meta.get("format") != FORMAT or not isinstance(meta.get("version"), int):
        raise LabError(f"{folder} is not a {FORMAT} folder")
    if meta["version"] > VERSION:
        raise LabError(f"bundle {folder} has format version {meta['version']}; this lab reads up to {VERSION}: upgrade")
    return meta


def _write_json_atomic(path: Path, data: dict) -> None:
    write_json_atomic(path, data, indent=2, sort_keys=True, ensure_ascii=False)


def file_hashes(folder: str | Path) -> dict[str, str]:
    """SHA-256 of every file but bundle.json: the bundle's identity (cache keys) and its integrity check."""
    out = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and path.name != META_FILE:
            stat = path.stat()
            out[path.relative_to(folder).as_posix()] = _sha256(str(path), stat.st_size, stat.st_mtime_ns)
    return out


@functools.lru_cache(maxsize=4096)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """Memoised on (path, size, mtime): re-checking an unchanged bundle costs one stat per file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def bundle_problem(folder: str | Path | None) -> str | None:
    """Why a bundle cannot be trusted (missing, unreadable, a file changed since it was saved), or None if intact."""
    if not folder or not Path(folder).is_dir():
        return f"bundle folder {folder} is missing"
    try:
        recorded = read_meta(folder).get("files")
        if not recorded:
            return None  # bundles written before hashes were recorded: nothing to compare against
        found = file_hashes(folder)
    except (LabError, OSError) as err:
        return str(err)
    missing = sorted(set(recorded) - set(found))
    changed = sorted(name for name in recorded if name in found and found[name] != recorded[name])
    if missing:
        return f"{', '.join(missing[:3])} missing from the bundle"
    if changed:
        return f"{', '.join(changed[:3])} changed since the bundle was saved (SHA-256 mismatch)"
    return None


def bundle_digest(folder: str | Path) -> str:
    """A short id of the bundle's content, from the hashes recorded at save time."""
    files = read_meta(folder).get("files") or file_hashes(folder)
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]


def bundle_bytes(folder: str | Path) -> int:
    """Real bytes of every file in the bundle: what "size" means everywhere in the lab."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def update_meta(folder: str | Path, **fields) -> dict:
    """Merge ``fields`` into bundle.json (dicts merge one level deep), written atomically."""
    folder = Path(folder)
    meta = read_meta(folder)
    for key, value in fields.items():
        meta[key] = {**meta.get(key, {}), **value} if isinstance(value, dict) and isinstance(meta.get(key), dict) else value
    _write_json_atomic(folder / META_FILE, meta)
    return meta
