"""Reading local data files: split files of a folder, formats by suffix, UTF-8 and header checks.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

from compression.core.errors import LabError

FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
SPLIT_ALIASES = {"train": ("train",), "validation": ("validation", "valid", "val", "dev"), "test": ("test",)}
if TYPE_CHECKING:

    pass


def _data_file_kwargs(path: Path) -> tuple[str, dict]:
    suffixes = "".join(path.suffixes[-2:]).lower()
    ext = path.suffix.lower()
    if ext in (".bz2", ".gz", ".xz", ".zst") and len(path.suffixes) >= 2:
        ext = path.suffixes[-2].lower()
    if ext not in FORMATS:
        raise LabError(f"data file {path} has an unsupported type '{suffixes or path.name}' "
                       f"(allowed: {', '.join(FORMATS)})")
    if ext == ".tsv":  # TSV text may hold stray quotes (AG News): read every character literally
        return "csv", {"delimiter": "\t", "quoting": csv.QUOTE_NONE}
    return FORMATS[ext], {}


def _split_files(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        stem = path.name.split(".")[0].lower()
        for split, aliases in SPLIT_ALIASES.items():
            if stem in aliases and path.is_file() and split not in found:
                found[split] = path
    if "train" not in found and "test" not in found:
        raise LabError(f"data folder {folder} has no train/validation/test files "
                       f"(expected e.g. train.tsv, validation.tsv, test.tsv; types {', '.join(FORMATS)})")
    return found


def _check_utf8(path: Path) -> None:
    """Text data must be UTF-8: say so (and where) instead of the parser's generic failure."""
    import codecs

    decoder, offset = codecs.getincrementaldecoder("utf-8")(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as err:
                raise LabError(f"data file {path} is not UTF-8 (byte {offset + err.start}): save it as UTF-8") from None
            offset += len(chunk)


def _load_files(files: dict[str, Path]):
    from datasets import load_dataset

    kinds = [_data_file_kwargs(p) for p in files.values()]
    if any(k != kinds[0] for k in kinds):
        raise LabError(f"data files must share one type, got {', '.join(p.name for p in files.values())}")
    builder, kwargs = kinds[0]
    for path in files.values():
        if path.stat().st_size == 0:
            raise LabError(f"data file {path} is empty")
        if builder in ("csv", "json") and path.suffix.lower() not in (".bz2", ".gz", ".xz", ".zst", ".zip"):
            _check_utf8(path)  # compressed files are checked by their parser
    if builder == "csv":
        _check_headers(files, kwargs.get("delimiter", ","))
    try:
        return load_dataset(builder, data_files={s: str(p) for s, p in files.items()}, **kwargs)
    except Exception as err:  # datasets raises many types for unreadable files; one line names the file
        names = ", ".join(str(p) for p in files.values())
        raise LabError(f"cannot read data {names}: {str(err).splitlines()[0][:200] if str(err) else type(err).__name__}") from err


def _check_headers(files: dict[str, Path], delimiter: str) -> None:
    """Every split file must have the same columns (say which one lacks what, not the parser's generic failure)."""
    import bz2
    import gzip
    import lzma

    openers = {".bz2": bz2.open, ".gz": gzip.open, ".xz": lzma.open}
    headers = {}
    for split, path in files.items():
        with openers.get(path.suffix.lower(), open)(path, "rt", encoding="utf-8", errors="replace") as f:
            headers[split] = next(csv.reader([f.readline().rstrip("\r\n")], delimiter=delimiter), [])
    every = list(dict.fromkeys(c for header in headers.values() for c in header))
    for split, header in headers.items():
        missing = [c for c in every if c not in header]
        if missing:
            other = next(s for s, h in headers.items() if missing[0] in h)
            raise LabError(f"data file {files[split]}: the {split} split has no column {', '.join(missing)} "
                           f"(columns: {', '.join(header)}; {files[other].name} has {', '.join(headers[other])}); "
                           f"every split needs the same columns")
