"""What several commands share: opening the store or a published run, finding a variant's bundle, reading a text
file (lines, or pairs from two columns), formatting a figure that may be missing."""

from __future__ import annotations

from pathlib import Path

from compression.core.errors import LabError
from compression.data.loading import PAIR_COLUMNS
from compression.publishing.writer import open_published as open_ref
from compression.store.run_store import RunStore, resolve_store_dir

MAX_PREDICT_FILE_BYTES = 10_000_000


def open_store(path: str | None, readonly: bool = False):
    """The run store; readers (list, predict, ...) open it read-only: no recovery, no lock, no write."""

    root = resolve_store_dir(path)
    return RunStore(root, readonly=readonly and (root / "lab.sqlite").is_file())


def open_published(ref: str):
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


def _read_file(path: str) -> str:
    """A UTF-8 text file's content (``predict --file``), NUL bytes dropped; one clear error for anything else."""
    file = Path(path)
    if not file.is_file():
        raise LabError(f"text file {path} does not exist")
    if file.stat().st_size > MAX_PREDICT_FILE_BYTES:
        raise LabError(f"text file {path} is larger than {MAX_PREDICT_FILE_BYTES // 1_000_000} MB: split it")
    try:
        return file.read_bytes().decode("utf-8-sig").replace("\x00", "")
    except UnicodeDecodeError as err:
        raise LabError(f"text file {path} is not UTF-8 (byte {err.start}): save it as UTF-8") from None


def read_texts(path: str, pair: tuple[str, str] | None = None) -> list:
    """The texts of ``predict --file``: pairs from a CSV/TSV whose header names two text columns (a known pair such
    as sentence1/sentence2, ``text``/``text_pair`` or ``pair``'s names), or from the first two columns of every row
    when the variant reads pairs (``pair`` given); else one text per non-empty line."""
    content = _read_file(path)
    first = next((line for line in content.splitlines() if line.strip()), "")
    delimiter = {".csv": ",", ".tsv": "\t"}.get(Path(path).suffix.lower()) or ("\t" if "\t" in first else ",")
    try:
        named = _pair_header(_csv_rows(first, delimiter, path)[0][1] if first else [], pair)
    except LabError:  # a line too long for a CSV cell: not a header
        named = None
    if named is None and pair is None:
        return [line.strip() for line in content.splitlines() if line.strip()]
    rows = _csv_rows(content, delimiter, path)
    columns, body = (named, rows[1:]) if named else ((0, 1), rows)
    names = (f"columns {rows[0][1][columns[0]].strip()}, {rows[0][1][columns[1]].strip()}" if named
             else "first two columns")
    out = []
    for number, row in body:
        cells = [row[i].strip() if i < len(row) else "" for i in columns]
        if not all(cells):
            sep = "comma" if delimiter == "," else "tab"
            raise LabError(f"{path} row {number} lacks a text in its {names}: a pair needs two texts per row "
                           f"({sep}-separated; quote a text that holds a {sep})")
        out.append((cells[0], cells[1]))
    return out


def _csv_rows(content: str, delimiter: str, path: str) -> list[tuple[int, list[str]]]:
    """(row number from 1, cells) of each CSV/TSV row that holds any text (quoted cells may span lines)."""
    import csv
    import io

    try:
        rows = list(csv.reader(io.StringIO(content), delimiter=delimiter))
    except csv.Error as err:
        raise LabError(f"{path} is not a readable {'CSV' if delimiter == ',' else 'TSV'} file ({err})") from None
    return [(i, row) for i, row in enumerate(rows, start=1) if any(cell.strip() for cell in row)]


def _pair_header(header: list[str], pair: tuple[str, str] | None) -> tuple[int, int] | None:
    """The indexes of the two text columns a header row names, or None when it names no known pair."""

    lower = [cell.strip().lower() for cell in header]
    known = ((tuple(n.lower() for n in pair),) if pair else ()) + PAIR_COLUMNS + (("text", "text_pair"),)
    for first, second in known:
        if first in lower and second in lower:
            return lower.index(first), lower.index(second)
    return None


def fmt(value, spec: str, scale: float = 1.0) -> str:
    """``value * scale`` formatted with ``spec``, or "-" when it was not measured."""
    return format(value * scale, spec) if value is not None else "-"
