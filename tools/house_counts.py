"""Count the seams that issue 10 ("one house") is about, over ``src/aromni``.

Usage::

    python tools/house_counts.py            # a table
    python tools/house_counts.py --json     # one JSON object

Each count is computed from the source with :mod:`ast` (no import of the package), so it works on any checkout:

- ``training_loops``: modules with a function that calls ``.backward(...)`` (each is one hand-written
  optimisation loop; the functions are listed).
- ``any_in_public_signatures``: public functions and methods (no leading ``_`` in their name, their class's or
  their module's) whose parameter or return annotation mentions ``Any``.
- ``in_function_own_imports``: ``import aromni...`` / ``from aromni... import`` / relative imports inside a function.
- ``import_circles``: strongly connected groups of more than one module in the graph of imports between our
  modules (module-level, in-function and ``TYPE_CHECKING`` imports all count: each is a dependency a reader
  must follow; importing ``a.b.c`` also runs the ``__init__`` of package ``a.b``, an edge too).
- ``task_name_literals``: string constants equal to a task name of the task tables (``TASKS``,
  ``TASK_OVERRIDES``, ``OFFICIAL_TASKS`` and their official aliases) outside the registry module, docstrings
  excluded. Names that are also modality names (``text``, ``image``, ``speech``) are left out: such a literal
  is usually the modality.
- ``duplicate_class_names``: class names defined in more than one module.
- ``duplicates_pairs``: the pair count printed by the ``duplicates`` command over ``src/`` (when it is on PATH).
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
PACKAGE = "aromni"
#: Where task names may be written as literals (the registry).
REGISTRY_MODULES = ("aromni.vocab.templates", "aromni.vocab.tasks")
MODALITIES = {"text", "image", "speech", "audio"}


def modules(src: Path = SRC) -> dict[str, Path]:
    """``{dotted module name: path}`` for every ``.py`` file of the package."""
    out = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(tree: ast.Module) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import node with whether it sits inside a function (``TYPE_CHECKING`` blocks count as module level)."""
    def walk(node: ast.AST, in_func: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, in_func
            yield from walk(child, in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))
    yield from walk(tree, False)


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_pkg: bool, known: set[str]) -> list[str]:
    """Our modules that an import node refers to."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = module.split(".") if is_pkg else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        # ``from pkg import sub`` imports the submodule; ``from pkg import name`` reads pkg itself.
        names = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in known else prefix for a in node.names]
    out = []
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name.startswith(PACKAGE) and name in known and name != module:
            out.append(name)
    return sorted(set(out))


def import_graph(mods: dict[str, Path]) -> tuple[dict[str, set[str]], int]:
    """The import graph between our modules and the number of in-function imports of our own modules."""
    known = set(mods)
    graph: dict[str, set[str]] = defaultdict(set)
    in_func = 0
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node, inside in _imports(tree):
            own = _targets(node, name, path.name == "__init__.py", known)
            if isinstance(node, ast.ImportFrom) and node.level:
                own = own or ["<relative>"]
            if inside and own:
                in_func += 1
            # Importing a.b.c runs the __init__ of every package on the way (a.b) that is not already one of
            # the importer's own packages: an edge to it, so a circle through a package __init__ shows.
            mine = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
            own = own + [p for t in own if t != "<relative>"
                         for p in (".".join(t.split(".")[:i]) for i in range(2, t.count(".") + 1))
                         if p in known and p not in mine and p != name]
            graph[name].update(t for t in own if t != "<relative>")
    return graph, in_func


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(10000)

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def _public(name: str) -> bool:
    return not name.startswith("_") or (name.startswith("__") and name.endswith("__") and name == "__init__")


def _mentions_any(ann: ast.expr | None) -> bool:
    if ann is None:
        return False
    if isinstance(ann, ast.Constant) and isinstance(ann.value, str):
        return re.search(r"\bAny\b", ann.value) is not None
    return any((isinstance(n, ast.Name) and n.id == "Any") or (isinstance(n, ast.Attribute) and n.attr == "Any")
               for n in ast.walk(ann))


def any_signatures(mods: dict[str, Path]) -> list[str]:
    """Public functions/methods with ``Any`` in an annotation of their signature."""
    hits = []
    for name, path in mods.items():
        if any(p.startswith("_") for p in name.split(".")):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))

        def walk(node: ast.AST, owner: str, public: bool) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.ClassDef):
                    walk(child, f"{owner}.{child.name}", public and not child.name.startswith("_"))
                elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    if public and _public(child.name):
                        a = child.args
                        params = a.posonlyargs + a.args + a.kwonlyargs + [x for x in (a.vararg, a.kwarg) if x]
                        if any(_mentions_any(p.annotation) for p in params) or _mentions_any(child.returns):
                            hits.append(f"{owner}.{child.name}")
        walk(tree, name, True)
    return hits


def training_loops(mods: dict[str, Path]) -> list[str]:
    """Functions that call ``<x>.backward(...)``."""
    hits = []
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            own = [n for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                   and n.func.attr == "backward"]
            nested = [n for sub in ast.walk(fn) if sub is not fn and isinstance(sub, (ast.FunctionDef,
                                                                                       ast.AsyncFunctionDef))
                      for n in ast.walk(sub) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                      and n.func.attr == "backward"]
            if len(own) > len(nested):
                hits.append(f"{name}.{fn.name}")
    return hits


def _by_module(functions: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for f in functions:
        mod, _, fn = f.rpartition(".")
        out[mod].append(fn)
    return dict(out)


def task_names(mods: dict[str, Path]) -> set[str]:
    """Task names and official aliases: the ``Task("name", ..., aliases=(...))`` entries of the registry
    (``vocab/tasks.py``), or, in checkouts before it, the keys and values of the old task tables."""
    names: set[str] = set()
    for reg in ("aromni.vocab.tasks", "aromni.vocab.templates", "aromni.training.data.official_jsonl",
                "aromni.inference.options"):
        path = mods.get(reg)
        if path is None:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Task":
                if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                    names.add(node.args[0].value)
                for kw in node.keywords:
                    if kw.arg == "aliases" and isinstance(kw.value, ast.Tuple):
                        names.update(e.value for e in kw.value.elts if isinstance(e, ast.Constant))
                continue
            target = None
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                target, value = node.target.id, node.value
            elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                target, value = node.targets[0].id, node.value
            if target in ("TASKS", "TASK_OVERRIDES", "OFFICIAL_TASKS") and isinstance(value, ast.Dict):
                for k, v in zip(value.keys, value.values):
                    for x in (k, v):
                        if isinstance(x, ast.Constant) and isinstance(x.value, str):
                            names.add(x.value)
    return names - MODALITIES


def task_literals(mods: dict[str, Path], names: set[str]) -> list[str]:
    hits = []
    for name, path in mods.items():
        if name in REGISTRY_MODULES:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = {id(n.body[0].value) for n in ast.walk(tree)
                if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.body
                and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names \
                    and id(node) not in docs:
                hits.append(f"{path.relative_to(ROOT)}:{node.lineno}:{node.value}")
    return hits


def duplicate_classes(mods: dict[str, Path]) -> dict[str, list[str]]:
    where: dict[str, list[str]] = defaultdict(list)
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                where[node.name].append(name)
    return {k: v for k, v in sorted(where.items()) if len(set(v)) > 1}


def duplicates_pairs() -> int | None:
    exe = shutil.which("duplicates")
    if exe is None:
        return None
    out = subprocess.run([exe, "--repo", str(SRC), "--seconds", "120"], capture_output=True, text=True).stdout
    m = re.search(r"(\d+) pairs?", out)
    if m:
        return int(m.group(1))
    return 0 if "no duplicates" in out else None


def counts() -> dict[str, object]:
    mods = modules()
    graph, in_func = import_graph(mods)
    circ = circles(graph)
    return {
        "training_loops": _by_module(training_loops(mods)),
        "any_in_public_signatures": any_signatures(mods),
        "in_function_own_imports": in_func,
        "import_circles": circ,
        "task_name_literals": task_literals(mods, task_names(mods)),
        "duplicate_class_names": duplicate_classes(mods),
        "duplicates_pairs": duplicates_pairs(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="print the details as one JSON object")
    args = p.parse_args(argv)
    c = counts()
    if args.json:
        print(json.dumps(c, indent=2))
        return 0
    for key, value in c.items():
        n = len(value) if isinstance(value, (list, dict)) else value
        print(f"{key:28s} {n}")
        if isinstance(value, list) and value and key != "task_name_literals" and len(value) <= 12:
            for v in value:
                print(f"    {v}")
        elif isinstance(value, dict):
            for k, v in value.items():  # duplicate classes: the modules; loops: the functions
                print(f"    {k}: {', '.join(v)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
