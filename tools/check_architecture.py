"""Check the package's shape: imports go one way (down the layers), no import circle, small files and functions,
and no lazy import of a module that is light anyway.

    python -m tools.check_architecture          # prints the problems; exit status 1 if there are any
    python -m tools.check_architecture --graph  # also prints which layer imports which

Imports inside functions count like top-level ones: they are dependencies all the same. Reads files with ``ast``;
imports nothing of the package.
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "compression"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE
# Lowest first. A module may import its own layer and the layers below; subpackages sharing a rank never import
# each other.
LAYERS = [("core",), ("data", "store"), ("bundle",), ("training",), ("techniques",), ("evaluation",),
          ("presentation",), ("publishing",), ("builder",), ("cli", "dashboard")]
HEAVY = {"torch", "transformers", "datasets", "gradio", "onnx", "onnxruntime", "onnxscript", "numpy", "pandas",
         "plotly", "evaluate", "accelerate", "safetensors", "tokenizers", "huggingface_hub", "scipy"}
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60


@dataclass
class Module:
    name: str
    path: Path
    lines: int
    # in-package module -> how: True (at the top), "type-only" (under ``if TYPE_CHECKING``), False (in a function)
    imports: dict[str, bool | str] = field(default_factory=dict)
    type_only: set[int] = field(default_factory=set)  # ids of the import nodes under ``if TYPE_CHECKING``
    heavy_top: bool = False  # a heavy library imported at module level
    long_functions: list[tuple[str, int]] = field(default_factory=list)


def layer_of(name: str) -> tuple[int, str]:
    parts = name.split(".")
    if len(parts) == 1 or parts[1] in ("__main__",):
        return len(LAYERS), "package"  # the package root re-exports: it sits on top
    for rank, group in enumerate(LAYERS):
        if parts[1] in group:
            return rank, parts[1]
    return -1, parts[1]


def scan(root: Path = ROOT) -> dict[str, Module]:
    modules = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        parts = list(rel.parts)
        if "metrics" in parts and parts[-1] != "__init__" and len(parts) > 4:
            continue  # evaluate's metric scripts: loaded by path, not imported
        package = path.name == "__init__.py"
        name = ".".join(parts[:-1] if package else parts)
        source = path.read_text(encoding="utf-8")
        modules[name] = Module(name, path, source.count("\n") + 1)
        modules[name].tree, modules[name].package = ast.parse(source), package
    for module in modules.values():
        _read(module, modules)
    return modules


def _read(module: Module, modules: dict[str, Module]) -> None:
    base_package = module.name if module.package else module.name.rpartition(".")[0]
    top_nodes = {id(n) for n in module.tree.body}
    for node in module.tree.body:  # type-only imports (``if TYPE_CHECKING:``) sit at the top too
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            top_nodes |= {id(n) for n in node.body}
            module.type_only |= {id(n) for n in node.body}
    for node in ast.walk(module.tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                module.long_functions.append((node.name, length))
        top = id(node) in top_nodes
        if id(node) in module.type_only:
            top = "type-only"  # counts as a top-level dependency, loads nothing at run time
        if isinstance(node, ast.Import):
            for alias in node.names:
                _note(module, modules, alias.name, top)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base_package.split(".")
                stem = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{stem}.{node.module}" if node.module else stem
            else:
                target = node.module or ""
            if target == "__future__":
                continue
            names = [f"{target}.{alias.name}" for alias in node.names]
            submodules = [n for n in names if n in modules]
            if target in modules and modules[target].package and len(submodules) == len(names):
                target = None  # ``from pkg import sub``: the dependency is on sub (pkg's own imports are counted apart)
            if target is not None and not _note(module, modules, target, top):
                continue
            for sub in submodules:
                _note(module, modules, sub, top)


def _note(module: Module, modules: dict[str, Module], target: str, top: bool) -> bool:
    head = target.partition(".")[0]
    if head != PACKAGE:
        if top is True and head in HEAVY:
            module.heavy_top = True
        return False
    if target in modules and target != module.name:
        strength = {False: 0, "type-only": 1, True: 2}
        module.imports[target] = max(module.imports.get(target, False), top, key=strength.get)
    return True


def heavy_at_import(modules: dict[str, Module]) -> set[str]:
    """Modules whose import loads a heavy library (themselves or through their top-level imports)."""
    heavy = {n for n, m in modules.items() if m.heavy_top}
    changed = True
    while changed:
        changed = False
        for name, m in modules.items():
            if name not in heavy and any(t in heavy for t, top in m.imports.items() if top is True):
                heavy.add(name)
                changed = True
    return heavy


def cycles(modules: dict[str, Module]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in modules[v].imports:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    sys.setrecursionlimit(10_000)
    for v in modules:
        if v not in index:
            visit(v)
    return out


def problems(modules: dict[str, Module]) -> list[str]:
    out = [f"import circle: {' -> '.join(group)}" for group in cycles(modules)]
    heavy = heavy_at_import(modules)
    for name, m in sorted(modules.items()):
        rank, group = layer_of(name)
        if rank < 0:
            out.append(f"{name}: in no layer (add its subpackage to LAYERS)")
        for target, top in sorted(m.imports.items()):
            t_rank, t_group = layer_of(target)
            if t_rank > rank or (t_rank == rank and t_group != group and group != "package"):
                way = "up" if t_rank > rank else "across"
                out.append(f"{name} imports {target}: from layer {group} {way} to {t_group}")
            if not top and target not in heavy and name.split(".")[-1] != "__init__" and target != PACKAGE:
                out.append(f"{name} imports {target} inside a function, but it is light: import it at the top")
        if m.lines > MAX_FILE_LINES:
            out.append(f"{m.path.relative_to(ROOT.parent)}: {m.lines} lines (at most {MAX_FILE_LINES})")
        out += [f"{m.path.relative_to(ROOT.parent)}: function {f} has {n} lines (at most {MAX_FUNCTION_LINES})"
                for f, n in m.long_functions]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.check_architecture", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--graph", action="store_true", help="print which layer imports which")
    args = parser.parse_args(argv)
    modules = scan()
    if args.graph:
        edges = sorted({(layer_of(a)[1], layer_of(b)[1]) for a, m in modules.items() for b in m.imports
                        if layer_of(a)[1] != layer_of(b)[1]})
        for a, b in edges:
            print(f"{a} -> {b}")
    found = problems(modules)
    for line in found:
        print(line)
    print(f"{len(modules)} modules, {sum(len(m.imports) for m in modules.values())} in-package imports: "
          f"{len(found)} problem(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
