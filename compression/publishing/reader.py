"""Reading a published run: open one (folder, zip or Hub repo) and serve its variants read-only.

The layout is described in :mod:`compression.publishing.writer`, which writes it. Reading never writes inside a published
folder: a zip is extracted once into the cache, a Hub repo is downloaded into the cache, and every bundle is checked
against the manifest before it is served, so a changed, missing or added file takes only its own variant offline.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from pathlib import Path

from compression.bundle.meta import _sha256, bundle_problem
from compression.core.atomic import temp_path
from compression.core.config import NAME
from compression.core.errors import LabError
from compression.core.texts import Text, as_text, of_kind
from compression.data.sources import cache_dir
from compression.store.predictions import NoPredictions, TestSplit, VariantPredictions

FORMAT = "compression-lab-published"
VERSION = 1
MANIFEST, RESULTS, RECIPE, EXAMPLES, README, CHART, PREDICTIONS = (
    "manifest.json", "results.json", "recipe.json", "examples.json", "README.md", "chart.png", "predictions.json")
HUB_PREFIX = "hub:"
HUB_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
# What a Hub download fetches: data, documentation, safetensors/ONNX weights and tokenizer files; never pickles
# (*.bin, *.pkl) or code (*.py). Anything else a repo holds is not downloaded.
HUB_PATTERNS = ["*.json", "*.md", "*.safetensors", "*.onnx", "*.txt", "*.png", "*.model", "*.tiktoken"]
# Files that could run code or unpickle when something loads a bundle: refused in a published run even if listed.
UNSAFE_SUFFIXES = (".py", ".pyc", ".pyo", ".so", ".dll", ".dylib", ".sh", ".exe",
                   ".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz")
CARD = "README.md"  # a bundle's model card: documentation the loader never reads, so edits on the Hub are allowed

# Limits on a zip from someone else (patched smaller in tests).
MAX_MEMBERS = 10_000
MAX_TOTAL_BYTES = 4 << 30
MAX_RATIO = 200
RATIO_MIN_BYTES = 10_000_000


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def open_published(ref: str, cache: Path | None = None) -> "PublishedRun":
    """Open a published run: a folder (read in place, never written to), a ``.zip`` file (extracted once into the
    cache, checked member by member) or ``hub:USER/NAME`` (downloaded into the cache: data, docs and safetensors /
    ONNX weights only). ``cache`` defaults to ``sources.cache_dir() / "published"``."""
    if cache is None:
        cache = cache_dir() / "published"
    ref = str(ref).strip()
    if ref.startswith(HUB_PREFIX):
        return PublishedRun(_download_hub(ref[len(HUB_PREFIX):], Path(cache)))
    path = Path(ref).expanduser()
    if path.is_dir():
        return PublishedRun(path)
    if path.is_file():
        return PublishedRun(_extract_zip(path, Path(cache)))
    raise LabError(f"published run {ref} not found: give its folder, a .zip of it, or hub:USER/NAME")


def _download_hub(repo: str, cache: Path) -> Path:
    if not HUB_REPO.match(repo):
        raise LabError(f"'{HUB_PREFIX}{repo}' is not a Hub repo: write hub:USER/NAME")
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(repo, allow_patterns=HUB_PATTERNS, cache_dir=str(cache / "hub"),
                                   local_files_only=_offline())
    except Exception as err:  # offline, missing repo, no access: all one line for the user
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        if _offline():
            reason = f"HF_HUB_OFFLINE is set and no copy is cached in {cache / 'hub'}"
        raise LabError(f"cannot download {HUB_PREFIX}{repo} from the Hugging Face Hub ({reason}): offline? open a "
                       f"folder or zip copy of the published run instead") from err
    return Path(folder)


def _extract_zip(path: Path, cache: Path) -> Path:
    """Extract a published zip once into ``cache/<sha256[:16]>`` (temp folder + rename); reuse it afterwards."""
    import zipfile


    st = path.stat()
    target = cache / _sha256(str(path.resolve()), st.st_size, st.st_mtime_ns)[:16]
    if not target.is_dir():
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as err:
            raise LabError(f"{path} is not a zip file ({err}): give a published run's folder, .zip or hub:USER/NAME") \
                from None
        with zf:
            members = _safe_members(zf, path)
            cache.mkdir(parents=True, exist_ok=True)
            tmp = temp_path(target)
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                _extract_members(zf, members, tmp, path)
                try:
                    os.replace(tmp, target)
                except OSError:  # another process extracted the same zip meanwhile: use theirs
                    if not target.is_dir():
                        raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return _run_root(target, path)


def _safe_members(zf, path: Path) -> list:
    """The members to extract; one clear error for anything that could write outside the folder or fill the disk."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise LabError(f"{path} has {len(infos):,} members (at most {MAX_MEMBERS:,}): not a published run")
    total, seen = 0, set()
    for info in infos:
        name = info.filename
        if name.rstrip("/") in seen:
            raise LabError(f"{path} holds {name!r} twice: refused, nothing extracted")
        seen.add(name.rstrip("/"))
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts or "\\" in name \
                or "\x00" in name:
            raise LabError(f"{path} holds a member with an unsafe path ({name!r}): refused, nothing extracted")
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
            what = "a symbolic link" if kind == stat.S_IFLNK else "a special file"
            raise LabError(f"{path} holds {what} ({name!r}): refused, nothing extracted")
        total += info.file_size
        if info.file_size > RATIO_MIN_BYTES and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise LabError(f"{path}: member {name!r} expands {info.file_size / max(info.compress_size, 1):,.0f}-fold "
                           f"to {info.file_size:,} bytes (a zip bomb?): refused, nothing extracted")
    if total > MAX_TOTAL_BYTES:
        raise LabError(f"{path} would expand to {total:,} bytes (at most {MAX_TOTAL_BYTES:,}): refused, nothing "
                       f"extracted")
    return infos


def _extract_members(zf, members: list, dest: Path, path: Path) -> None:
    """Stream each member to its place inside ``dest``, never trusting the sizes the zip declares."""
    dest.mkdir(parents=True)
    base = dest.resolve()
    written = 0
    for info in members:
        out = (dest / info.filename).resolve()
        if out != base and base not in out.parents:
            raise LabError(f"{path} holds a member that would land outside its folder ({info.filename!r}): refused")
        if info.is_dir():
            out.mkdir(parents=True, exist_ok=True)
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, open(out, "xb") as dst:
            while chunk := src.read(1 << 20):
                written += len(chunk)
                if written > MAX_TOTAL_BYTES:
                    raise LabError(f"{path} expands past {MAX_TOTAL_BYTES:,} bytes: refused")
                dst.write(chunk)


def _run_root(folder: Path, origin: Path) -> Path:
    """The folder holding manifest.json: the extraction folder, or its only subfolder (a zip of the folder)."""
    if (folder / MANIFEST).is_file():
        return folder
    inner = [p for p in folder.iterdir() if p.is_dir()]
    if len(inner) == 1 and (inner[0] / MANIFEST).is_file():
        return inner[0]
    raise LabError(f"{origin} is not a published run (no {MANIFEST} inside)")


def _read_json(root: Path, name: str, required: bool = True):
    path = root / name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if not required:
            return None
        raise LabError(f"{root} is not a published run: {name} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        if not required:
            return None
        raise LabError(f"published run {root} is broken: {name} is not valid JSON ({err})") from None


class PublishedRun:
    """A published run, read-only: its rows, examples and bundle folders, each bundle checked against the manifest.

    Nothing here writes inside ``root``. A bundle with a missing, changed, added, code or pickle file is reported
    broken (``problem``) and refused (``bundle_folder``); the other variants stay served.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root).absolute()
        self.manifest = self._read_manifest()
        self.files: dict[str, str] = self.manifest.get("files") or {}
        if not isinstance(self.files, dict) or not all(isinstance(v, str) for v in self.files.values()):
            raise LabError(f"published run {self.root} is broken: {MANIFEST} lists no file hashes")
        self._check_top_file(RESULTS)
        results = _read_json(self.root, RESULTS)
        rows = results.get("variants") if isinstance(results, dict) else None
        if not isinstance(rows, list) or not all(isinstance(r, dict) and _safe_name(r.get("name")) for r in rows):
            raise LabError(f"published run {self.root} is broken: {RESULTS} has no valid variant list")
        self._rows = rows
        self.run = results.get("run", self.manifest.get("run"))
        self.label: str = results.get("label") or (f"published run {self.run} of recipe "
                                                   f"{self.manifest.get('recipe')}")
        examples = _read_json(self.root, EXAMPLES, required=False)
        examples = examples if isinstance(examples, dict) else {}
        # A pair task's two input names (e.g. sentence1, sentence2); None for a single-text run.
        self.pair: tuple[str, str] | None = _pair(results.get("pair")) or _pair(examples.get("pair"))
        pairs = self.pair is not None or examples.get("task") == "pair"
        # Texts for the Playground and bench: str, or (first, second) tuples for a pair task; never mixed.
        self.examples: list[Text] = _texts(examples.get("texts"), pairs)
        self.test_texts: list[Text] = _texts(examples.get("test_texts"), pairs)
        self.test_split: str = examples.get("split", "test")
        self.recipe: dict = _read_json(self.root, RECIPE, required=False) or {}

    def _read_manifest(self) -> dict:
        """The manifest, refused unless it is ours and of a version this lab reads."""
        manifest = _read_json(self.root, MANIFEST)
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise LabError(f"{self.root} is not a published run ({MANIFEST} is not a {FORMAT} manifest)")
        version = manifest.get("version")
        if not isinstance(version, int) or version > VERSION:
            raise LabError(f"published run {self.root} has format version {version!r}; this lab reads up to "
                           f"{VERSION}: upgrade the lab")
        return manifest

    def _check_top_file(self, name: str) -> None:
        path = self.root / name
        if name in self.files and path.is_file():
            st = path.stat()
            if _sha256(str(path), st.st_size, st.st_mtime_ns) != self.files[name]:
                raise LabError(f"published run {self.root} is broken: {name} changed since it was published "
                               f"(SHA-256 mismatch); publish it again")

    @property
    def names(self) -> list[str]:
        return [r["name"] for r in self._rows]

    def rows(self) -> list[dict]:
        """results.json's rows, "bundle" an absolute path inside root and "status" checked now."""
        out = []
        for row in self._rows:
            problem = self.problem(row["name"])
            out.append({**row, "bundle": str(self.root / "bundles" / row["name"]),
                        "status": f"broken: {problem}" if problem else "ok"})
        return out

    def problem(self, name: str) -> str | None:
        """Why variant ``name`` cannot be trusted, or None when every file matches the manifest."""

        if name not in self.names:
            raise LabError(f"the published run has no variant {name!r} (known: {', '.join(self.names)})")
        folder = self.root / "bundles" / name
        if not folder.is_dir():
            return f"bundles/{name} is missing"
        prefix = f"bundles/{name}/"
        listed = {k: v for k, v in self.files.items() if k.startswith(prefix) and k != prefix + CARD}
        found = {p.relative_to(self.root).as_posix(): p for p in folder.rglob("*") if p.is_file() or p.is_symlink()}
        found.pop(prefix + CARD, None)
        return _listing_problem(listed, found) or _hash_problem(listed, found) or bundle_problem(folder)

    def bundle_folder(self, name: str) -> Path:
        """The folder of a healthy variant; LabError when unknown or broken."""
        problem = self.problem(name)
        if problem:
            raise LabError(f"variant {name} of the published run is broken: {problem}")
        return self.root / "bundles" / name

    def predictions(self, name: str) -> VariantPredictions:
        """A variant's test predictions with the split they refer to (``predictions.json``, checked against the
        manifest); :class:`NoPredictions` for a run published before the lab kept them."""
        if name not in self.names:
            raise LabError(f"the published run has no variant {name!r} (known: {', '.join(self.names)})")
        if PREDICTIONS not in self.files:
            raise NoPredictions(f"published run {self.root} has no per-example results: it was published before the "
                                f"lab kept them (its figures and bundles work as before)")
        self._check_top_file(PREDICTIONS)
        data = _read_json(self.root, PREDICTIONS)
        try:
            split, probs = data["split"], data["variants"][name]
            texts = [tuple(t) if isinstance(t, list) else t for t in split["texts"]]
            found = VariantPredictions(TestSplit(split["digest"], split["labels"], split["gold"], texts),
                                       len(split["labels"]), probs)
        except (KeyError, TypeError) as err:
            raise NoPredictions(f"published run {self.root}: {PREDICTIONS} has no predictions of {name} ({err})") \
                from None
        if len(found.probs) != len(found.split.gold) or len(texts) != len(found.split.gold):
            raise LabError(f"published run {self.root} is broken: {PREDICTIONS} does not match its test split")
        return found

    def __repr__(self) -> str:
        return f"PublishedRun({str(self.root)!r}, run={self.run!r}, variants={self.names})"


def _listing_problem(listed: dict[str, str], found: dict[str, Path]) -> str | None:
    """Code or pickles, missing files or files the manifest does not list (checked before any hashing)."""
    unsafe = sorted(k for k in found if k.lower().endswith(UNSAFE_SUFFIXES))
    missing = sorted(set(listed) - set(found))
    extra = sorted(set(found) - set(listed))
    if unsafe:
        return f"{', '.join(unsafe[:3])} is code or a pickle, which a published run never loads"
    if missing:
        return f"{', '.join(missing[:3])} missing"
    if extra:
        return f"{', '.join(extra[:3])} not in the manifest (added after publishing)"
    return None


def _hash_problem(listed: dict[str, str], found: dict[str, Path]) -> str | None:
    """Files whose SHA-256 differs from the manifest's (or that cannot be read)."""

    changed = []
    for rel in sorted(listed):
        try:
            st = found[rel].stat()
            digest = _sha256(str(found[rel]), st.st_size, st.st_mtime_ns)
        except OSError as err:
            return f"{rel} cannot be read ({err.strerror or err})"
        if digest != listed[rel]:
            changed.append(rel)
    return f"{', '.join(changed[:3])} changed since publishing (SHA-256 mismatch)" if changed else None


def _pair(names) -> tuple[str, str] | None:
    """Two input names from JSON, or None when it is not a list of two strings."""
    try:
        pair = as_text(names) if isinstance(names, list) else None
    except ValueError:
        return None
    return pair if isinstance(pair, tuple) else None


def _texts(items, pairs: bool) -> list[Text]:
    """examples.json's texts of the run's kind (pairs as tuples); anything else in the list is left out."""
    return of_kind(items if isinstance(items, list) else [], pairs)


def _safe_name(name) -> bool:
    return isinstance(name, str) and bool(NAME.match(name)) and name not in (".", "..")
