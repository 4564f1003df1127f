"""What several commands share: opening the store or a published run, finding a variant's bundle, reading a text
file, formatting a figure that may be missing."""

from __future__ import annotations

from pathlib import Path

from ..errors import LabError

MAX_PREDICT_FILE_BYTES = 10_000_000


def open_store(path: str | None, readonly: bool = False):
    """The run store; readers (list, predict, ...) open it read-only: no recovery, no lock, no write."""
    from ..store import RunStore, resolve_store_dir

    root = resolve_store_dir(path)
    return RunStore(root, readonly=readonly and (root / "lab.sqlite").is_file())


def open_published(ref: str):
    from ..publish import open_published as open_ref

    return open_ref(ref)


def published(args):
    """The published run named by ``--published``, or None (the command reads the store)."""
    return open_published(args.published) if getattr(args, "published", None) else None


def bundle_folder(variant: str, store_dir: str | None, published_run=None) -> Path:
    """A variant's bundle folder: a name in the published run (when given) or the store, else a folder path."""
    if published_run is not None and variant in published_run.names:
        return published_run.bundle_folder(variant)  # refuses a broken variant, with the reason
    path = Path(variant).expanduser()
    if path.is_dir():
        return path
    if published_run is not None:
        raise LabError(f"the published run has no variant {variant!r} (known: {', '.join(published_run.names)})")
    with open_store(store_dir, readonly=True) as store:
        return Path(store.get_variant(variant).bundle)


def read_lines(path: str) -> list[str]:
    """The non-empty lines of a UTF-8 text file (``predict --file``); one clear error for anything else."""
    file = Path(path)
    if not file.is_file():
        raise LabError(f"text file {path} does not exist")
    if file.stat().st_size > MAX_PREDICT_FILE_BYTES:
        raise LabError(f"text file {path} is larger than {MAX_PREDICT_FILE_BYTES // 1_000_000} MB: split it")
    try:
        content = file.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise LabError(f"text file {path} is not UTF-8 (byte {err.start}): save it as UTF-8") from None
    return [line.strip() for line in content.replace("\x00", "").splitlines() if line.strip()]


def fmt(value, spec: str, scale: float = 1.0) -> str:
    """``value * scale`` formatted with ``spec``, or "-" when it was not measured."""
    return format(value * scale, spec) if value is not None else "-"
