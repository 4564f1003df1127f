"""A digest of the code that makes a result, so reuse never serves what older code made.

Finished variants, teacher-logit caches and metrics are reused while their input fingerprint is unchanged. A
fingerprint that carries only ``compression.__version__`` stays the same when the code behind it changes, so it must
also carry :func:`code_digest` of the modules that produced the result: their source bytes, the source of every
``compression.*`` module they import (transitively), and the versions of the libraries they import that decide
results (torch, transformers, ...).

Everything here reads files and never imports them: computing a digest must not pull torch into a light process
(the CLI's ``list``, the dashboard's reader). Only the standard library is imported.

What belongs to a closure:

- the named modules and every ``compression.*`` module they import, found with :mod:`ast` anywhere in the file
  (imports inside functions count: the lab imports heavy things there); relative imports are resolved against
  the module's package; ``from . import x`` counts x when x is a submodule; names that are not module files
  (a function imported from a module, a third-party module) are ignored;
- the ``__init__.py`` of every *subpackage* on the way to a module in the closure (``compression.evaluation``,
  ``compression.techniques``, ...): Python executes them when the module is imported, so they can change behaviour;
- NOT the root ``compression/__init__.py``: it only re-exports configs and holds ``__version__``; including it (and
  through it ``config.py``) would make every digest change with every config or version edit, and re-use would
  stop where nothing that matters changed. Code that needs the config imports ``compression.core.config`` explicitly,
  and then that module is in the closure;
- when ``compression.evaluation.metrics`` is in the closure, every ``compression/evaluation/metrics/*/*.py`` script: ``load_metric`` loads
  them by path through ``evaluate`` at run time, so no import statement names them, yet they compute the scores.

Digests depend on paths relative to the package, never on where it is installed, so the same code gives the same
digest on every machine.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata
import json
import os
from dataclasses import dataclass
from pathlib import Path

from compression.core import __version__

PACKAGE = "compression"
METRICS = f"{PACKAGE}.evaluation.metrics"
DIGEST_CHARS = 16
FORMAT = b"codehash/1\n"  # bump when what goes into a digest changes, so old digests never match new ones

# Top-level import names whose installed version can change a result, mapped to their distribution names.
DISTRIBUTIONS = {
    "torch": "torch", "transformers": "transformers", "tokenizers": "tokenizers", "safetensors": "safetensors",
    "onnx": "onnx", "onnxruntime": "onnxruntime", "onnxscript": "onnxscript", "datasets": "datasets",
    "evaluate": "evaluate", "numpy": "numpy", "accelerate": "accelerate", "pandas": "pandas", "yaml": "pyyaml",
}

# The package root is this file's folder: ``importlib.util.find_spec("compression")`` could answer with the
# standard library's own ``compression`` package on Python 3.14 (PEP 784) when ours is not first on the path.
_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class _FileFacts:
    """What one module file contributes: its content hash and the imports it names."""

    sha256: str
    modules: tuple[str, ...]  # candidate ``compression.*`` names, not yet checked against files
    libraries: frozenset[str]  # top-level import names outside the package


@dataclass(frozen=True)
class _Closure:
    """A computed closure and the file-system facts it rests on (re-checked with stats and one metrics listing)."""

    probes: tuple[tuple[Path, tuple[int, int] | None], ...]
    metric_scripts: tuple[Path, ...] | None  # None when compression.evaluation.metrics is not in the closure
    files: dict[str, Path]
    code_hash: bytes
    distributions: tuple[str, ...]


# Per-process memos of pure results, keyed so that a changed file misses them: safe to share between threads
# (a race only computes the same value twice) and between users (nothing user-specific is kept).
_FACTS: dict[tuple[str, Path], tuple[tuple[int, int] | None, _FileFacts]] = {}
_CLOSURES: dict[tuple[tuple[str, ...], Path], _Closure] = {}


def code_digest(*modules: str, root: Path | None = None) -> str:
    """A short hex digest of ``modules``' code closure and the versions of the libraries it imports.

    ``modules`` are dotted names inside the package (``"compression.techniques.quantization"``). ``root`` is the package folder
    (tests point it at a throwaway tree). Repeated calls cost a few stats; an edited file changes the digest at once.
    """
    closure = _closure(modules, root)
    digest = hashlib.sha256(closure.code_hash)
    for dist in closure.distributions:
        digest.update(f"{dist}=={_dist_version(dist)}\n".encode())
    return digest.hexdigest()[:DIGEST_CHARS]


def module_closure(*modules: str, root: Path | None = None) -> list[str]:
    """The sorted dotted names whose source goes into :func:`code_digest` (for tests and a build log line).

    Metric scripts appear under their path-derived names (``compression.evaluation.metrics.f1.f1``).
    """
    return sorted(_closure(modules, root).files)


def closure_libraries(*modules: str, root: Path | None = None) -> dict[str, str]:
    """The result-deciding distributions the closure imports, with their installed versions ("absent" if none)."""
    return {dist: _dist_version(dist) for dist in _closure(modules, root).distributions}


@functools.lru_cache(maxsize=None)
def _dist_version(dist: str) -> str:
    """The installed version of ``dist``; cached because the code already imported in this process cannot change."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _closure(modules: tuple[str, ...], root: Path | None) -> _Closure:
    """The memoised closure of ``modules``, recomputed only when a stat of a file it rests on changed."""
    root = (_ROOT if root is None else Path(root)).resolve()
    key = (tuple(sorted(set(modules))), root)
    if not key[0]:
        raise ValueError(f"name at least one module inside the {PACKAGE!r} package")
    cached = _CLOSURES.get(key)
    if (cached is not None and all(_stat_key(path) == seen for path, seen in cached.probes)
            and (cached.metric_scripts is None or _list_metric_scripts(root) == cached.metric_scripts)):
        return cached
    computed = _compute_closure(key[0], root)
    _CLOSURES[key] = computed
    return computed


def _compute_closure(modules: tuple[str, ...], root: Path) -> _Closure:
    """Walk imports from ``modules`` and hash the files found, recording every stat the answer depends on."""
    probes: dict[Path, tuple[int, int] | None] = {}
    for name in modules:
        if name == PACKAGE or not name.startswith(PACKAGE + "."):
            raise ValueError(f"{name!r} is not a module inside the {PACKAGE!r} package (e.g. '{PACKAGE}.techniques.quantization')")
        if _module_path(name, root, probes) is None:
            raise ValueError(f"no module {name!r} under {root}")
    files: dict[str, Path] = {}
    hashes: dict[str, str] = {}
    libraries: set[str] = set()
    metric_scripts = None
    queue = list(modules)
    while queue:
        name = queue.pop()
        if name in files or name == PACKAGE:
            continue
        path = _module_path(name, root, probes)
        if path is None:
            continue
        facts = _file_facts(name, path, probes)
        files[name], hashes[name] = path, facts.sha256
        libraries |= facts.libraries
        queue.extend(facts.modules)
        queue.extend(_parent_packages(name))
        if name == METRICS:
            metric_scripts = _list_metric_scripts(root)
            queue.extend(f"{METRICS}.{p.parent.name}.{p.stem}" for p in metric_scripts)
    code = hashlib.sha256(FORMAT)
    for name in sorted(files):
        code.update(f"{files[name].relative_to(root).as_posix()}\0{hashes[name]}\n".encode())
    distributions = tuple(sorted({DISTRIBUTIONS[lib] for lib in libraries if lib in DISTRIBUTIONS}))
    return _Closure(tuple(probes.items()), metric_scripts, files, code.digest(), distributions)


def _stat_key(path: Path) -> tuple[int, int] | None:
    """(size, mtime_ns) of ``path``, or None when it does not exist: the cheap test that a memo still holds."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st.st_size, st.st_mtime_ns


def _probe(path: Path, probes: dict) -> tuple[int, int] | None:
    """Stat ``path`` and remember the answer, so a file that appears or changes later invalidates the memo."""
    if path not in probes:
        probes[path] = _stat_key(path)
    return probes[path]


def _module_path(name: str, root: Path, probes: dict) -> Path | None:
    """The file that ``import name`` would execute: a package's ``__init__.py`` or a ``.py`` module; else None."""
    parts = name.split(".")[1:]
    if not parts:
        return None
    base = root.joinpath(*parts)
    for path in (base / "__init__.py", base.with_name(parts[-1] + ".py")):
        if _probe(path, probes) is not None and path.is_file():
            return path
    return None


def _parent_packages(name: str) -> list[str]:
    """The subpackages Python executes before ``name`` (``a.b.c`` -> ``a.b``); the root is left out by the walk."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(2, len(parts))]


def _list_metric_scripts(root: Path) -> tuple[Path, ...]:
    """The metric scripts ``load_metric`` loads by path (``evaluation/metrics/<name>/<name>.py``; no import names them).

    Listed again on every memo check (two small folder reads): a metric added in a new folder changes no stat of
    any file already known, and a folder's mtime is too coarse to trust.
    """
    return tuple(sorted((root / "evaluation" / "metrics").glob("*/*.py")))


def _file_facts(name: str, path: Path, probes: dict) -> _FileFacts:
    """Hash and parse one file, memoised on its (size, mtime_ns) so unchanged files are read once per process."""
    stat = _probe(path, probes)
    seen, facts = _FACTS.get((name, path), (None, None))
    if facts is None or seen != stat:
        source = path.read_bytes()
        tree = ast.parse(source, filename=str(path))  # a file that does not parse cannot run either: let it raise
        modules, libraries = _imports(tree, name, is_package=path.name == "__init__.py")
        facts = _FileFacts(hashlib.sha256(source).hexdigest(), modules, libraries)
        _FACTS[(name, path)] = (stat, facts)
    return facts


def _imports(tree: ast.AST, name: str, is_package: bool) -> tuple[tuple[str, ...], frozenset[str]]:
    """Candidate in-package module names and third-party top-level names imported anywhere in ``tree``.

    Candidates include every prefix Python executes on the way (``import compression.a.b`` runs ``compression.a``)
    and, for ``from X import y``, ``X.y`` in case y is a submodule; names that are not files are dropped later.
    """
    package = name if is_package else name.rpartition(".")[0]
    modules: list[str] = []
    libraries: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                _classify(alias.name, modules, libraries)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node.module, node.level, package)
            if base is None:
                continue
            if _classify(base, modules, libraries):
                modules.extend(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return tuple(modules), frozenset(libraries)


def _classify(module: str, modules: list[str], libraries: set[str]) -> bool:
    """Record ``module`` (and its parents) as in-package, or its top-level name as a library; True if in-package."""
    top = module.partition(".")[0]
    if top != PACKAGE:
        libraries.add(top)
        return False
    parts = module.split(".")
    modules.extend(".".join(parts[:i]) for i in range(2, len(parts) + 1))
    return True


def _absolute(module: str | None, level: int, package: str) -> str | None:
    """The absolute name of ``from <level dots><module> import ...`` inside ``package``; None if it leaves the tree."""
    if level == 0:
        return module
    parts = package.split(".")
    if level - 1 >= len(parts):
        return None  # climbs above the package root: Python raises ImportError, nothing of ours runs
    base = ".".join(parts[: len(parts) - (level - 1)])
    return f"{base}.{module}" if module else base


def fingerprint(*parts) -> str:
    """A short content hash of JSON-able parts (configs, upstream fingerprints)."""
    blob = json.dumps([__version__, *parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
