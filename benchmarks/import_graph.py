"""Print composer's import graph by package and check its shape (no torch, no composer import).

For each package of ``composer/`` (``core``, ``midi``, ... ``cli``): the packages its modules
import (from their ``ast``; imports inside functions are marked ``lazy``), its modules and
their line counts. Then the problems:

- **cycles**: strongly connected groups of modules importing each other (module level);
- **private**: ``from composer.x.y import _name`` (another module's private name);
- **upward**: an import of a package later in :data:`LAYERS` than the importer's;
- **long**: modules over :data:`MAX_LINES` lines; **short**: modules under
  :data:`MIN_LINES` lines, other than a package's ``__init__``;
- **flat**: a module directly in ``composer/`` other than ``__init__`` and ``__main__``.

Usage: ``python benchmarks/import_graph.py [PACKAGE_DIR] [--check]``; ``--check`` exits 1
when there is a problem (the tests run it so).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_LINES = 450  # "roughly under 400 lines": a guard against a drawer, not a cap to cut by
MIN_LINES = 40
# The data flow, bottom to top: a package may import only packages on its left (or itself).
LAYERS = ["__init__", "core", "midi", "tokens", "corpus", "controls", "model", "training",
          "evaluation", "generation", "harmony", "serve", "cli", "__main__"]


def package_of(module: str) -> str:
    """``core`` for ``core.files``; the root's ``__init__``/``__main__`` are their own."""
    return module.split(".")[0]


def rank(module: str) -> int:
    """Position of ``module``'s package in LAYERS (an unknown package ranks at the top)."""
    pkg = package_of(module)
    return LAYERS.index(pkg) if pkg in LAYERS else len(LAYERS)


def module_name(path: Path, package: Path) -> str:
    """``core.files`` for ``composer/core/files.py``; ``core`` for its ``__init__``."""
    parts = list(path.relative_to(package).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def imports(path: Path, package: Path) -> list[tuple[str, list[str], bool]]:
    """(module, names imported, lazy) for each import of a composer module in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(n) for n in tree.body}
    for node in tree.body:  # if TYPE_CHECKING / try blocks at module level count as top
        if isinstance(node, (ast.If, ast.Try)):
            top |= {id(n) for n in ast.walk(node)}
    out = []
    for node in ast.walk(tree):
        lazy = id(node) not in top
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
                node.module == "composer" or node.module.startswith("composer.")):
            mod = node.module.partition(".")[2] or "__init__"
            names = [a.name for a in node.names]
            base = package.joinpath(*mod.split(".")) if mod != "__init__" else package
            subs = [n for n in names if (base / f"{n}.py").exists() or (base / n).is_dir()
                    or any(base.glob(f"{n}.*.so")) or (base / f"{n}.c").exists()]
            for n in subs:  # from composer.x import module
                out.append((f"{mod}.{n}" if mod != "__init__" else n, [], lazy))
            rest = [n for n in names if n not in subs]
            if rest or not subs:
                out.append((mod, rest, lazy))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("composer."):
                    out.append((a.name.partition(".")[2], [], lazy))
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def report(package: Path) -> tuple[str, list[str]]:
    """The printed graph and the list of problems for the package folder ``package``."""
    problems, graph = [], {}
    by_package: dict[str, dict] = {}
    for path in sorted(package.rglob("*.py")):
        mod = module_name(path, package)
        found = imports(path, package)
        graph[mod] = {m for m, _, lazy in found if m != mod and not lazy}
        n = len(path.read_text(encoding="utf-8").splitlines())
        pkg = by_package.setdefault(package_of(mod), {"modules": [], "uses": set()})
        pkg["modules"].append(f"{mod.rpartition('.')[2] if '.' in mod else mod} {n}")
        pkg["uses"] |= {package_of(m) + (" (lazy)" if lazy else "") for m, _, lazy in found
                        if package_of(m) != package_of(mod)}
        if path.parent == package and path.stem not in ("__init__", "__main__"):
            problems.append(f"flat: {path.name} is not in a subpackage")
        if n > MAX_LINES:
            problems.append(f"long: {mod} has {n} lines (> {MAX_LINES})")
        if n < MIN_LINES and path.stem != "__init__" and path.parent != package:
            problems.append(f"short: {mod} has {n} lines (< {MIN_LINES})")
        for m, names, _ in found:
            private = [x for x in names if x.startswith("_") and x != "__version__"]
            if private and m != mod:
                problems.append(f"private: {mod} imports {', '.join(private)} from {m}")
            if rank(m) > rank(mod):
                problems.append(f"upward: {mod} imports {m}")
    for comp in cycles(graph):
        problems.append(f"cycle: {' <-> '.join(comp)}")
    order = sorted(by_package, key=lambda p: LAYERS.index(p) if p in LAYERS else len(LAYERS))
    lines = []
    for p in order:
        info = by_package[p]
        lines.append(f"{p:<11} -> {', '.join(sorted(info['uses'])) or '-'}")
        lines.append(f"{'':<11}    {', '.join(info['modules'])}")
    return "\n".join(lines), sorted(set(problems))


def layers(package: Path) -> int:
    """The number of import layers: the longest chain of packages importing each other."""
    uses: dict[str, set[str]] = {}
    for path in package.rglob("*.py"):
        mod = module_name(path, package)
        uses.setdefault(package_of(mod), set()).update(
            package_of(m) for m, _, _ in imports(path, package) if package_of(m) != package_of(mod))
    depth: dict[str, int] = {}

    def visit(p: str, seen: frozenset = frozenset()) -> int:
        if p not in depth:
            depth[p] = 1 + max((visit(q, seen | {p}) for q in uses.get(p, ()) if q not in seen),
                               default=0)
        return depth[p]

    return max(visit(p) for p in uses)


def widest(package: Path, least: int = 9) -> list[tuple[int, str]]:
    """(parameter count, ``module.function``) of every function taking ``least`` or more
    parameters (``self``/``cls`` not counted), widest first."""
    found = []
    for path in sorted(package.rglob("*.py")):
        mod = module_name(path, package)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                params = [*a.posonlyargs, *a.args, *a.kwonlyargs]
                n = len([p for p in params if p.arg not in ("self", "cls")])
                n += bool(a.vararg) + bool(a.kwarg)
                if n >= least:
                    found.append((n, f"{mod}.{node.name}"))
    return sorted(found, key=lambda x: (-x[0], x[1]))


def main(argv: list[str]) -> int:
    args = [a for a in argv if a != "--check"]
    package = Path(args[0]) if args else Path(__file__).resolve().parents[1] / "composer"
    text, problems = report(package)
    print(text)
    print(f"\n{layers(package)} import layers")
    wide = widest(package)
    print(f"\n{len(wide)} function(s) of 9 or more parameters: "
          + ", ".join(f"{name} {n}" for n, name in wide[:12]))
    print(f"\n{len(problems)} problem(s)" + (":" if problems else ""))
    for p in problems:
        print(f"  {p}")
    return 1 if problems and "--check" in argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
