"""Print composer's import graph and check its shape (no torch, no composer import needed).

For each module of the package: the composer modules it imports (from its ``ast``; imports
inside functions are marked ``lazy``), and its line count. Then the problems:

- **cycles**: strongly connected groups of modules importing each other;
- **private**: ``from composer.x import _name`` (another module's private name);
- **upward**: an import against the data flow of :data:`LAYERS`;
- **long**: files over :data:`MAX_LINES` lines.

Usage: ``python benchmarks/import_graph.py [PACKAGE_DIR] [--check]``; ``--check`` exits 1
when there is a problem (the tests run it so).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_LINES = 420
# The data flow, bottom to top: a module may import only modules on its left (or itself).
# Names of the layout before issue 9 are mapped onto the layer that replaced them.
LAYERS = ["__init__", "bounds", "files", "rng", "_smf", "_smf_ref", "timing", "_tracks",
          "instruments", "midi", "events", "notes", "ensemble", "vocab", "guards", "scan",
          "musicstats", "_isolate", "cachecheck", "corpusfacts", "corpus", "sources", "controls",
          "steering", "data", "device", "model", "ckptio", "checkpoint", "runs", "optim",
          "schedule", "train", "_steppers", "_rules", "_sampling", "generate", "seeds",
          "sample", "copycheck", "render", "_ngram", "evaluation", "commands", "report",
          "cli_evaluate", "cli_controls", "cli_ensemble", "webapi", "service", "connections",
          "server", "cli_serve", "cli", "__main__"]
OLD = {"metrics": "musicstats", "_engine": "_steppers"}


def rank(module: str) -> int:
    """Position of ``module`` in LAYERS (an unknown module ranks at the top)."""
    name = OLD.get(module, module)
    return LAYERS.index(name) if name in LAYERS else len(LAYERS)


def imports(path: Path) -> list[tuple[str, list[str], bool]]:
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
            names = [a.name for a in node.names]
            if node.module == "composer":  # from composer import x: x may be a module
                subs = [n for n in names if (path.parent / f"{n}.py").exists()
                        or (path.parent / f"{n}.c").exists()]
                out += [(s, [], lazy) for s in subs]
                rest = [n for n in names if n not in subs]
                if rest:
                    out.append(("__init__", rest, lazy))
            else:
                out.append((node.module.split(".")[1], names, lazy))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("composer."):
                    out.append((a.name.split(".")[1], [], lazy))
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
    lines, problems, graph = [], [], {}
    for path in sorted(package.glob("*.py")):
        mod = path.stem
        found = imports(path)
        graph[mod] = {m for m, _, _ in found if m != mod}
        n = len(path.read_text(encoding="utf-8").splitlines())
        shown = sorted({m + (" (lazy)" if lazy else "") for m, _, lazy in found if m != mod})
        lines.append(f"{mod:<12} {n:>4} lines  -> {', '.join(shown) or '-'}")
        if n > MAX_LINES:
            problems.append(f"long: {mod}.py has {n} lines (> {MAX_LINES})")
        for m, names, _ in found:
            private = [x for x in names if x.startswith("_") and x != "__version__"]
            if private and m != mod:
                problems.append(f"private: {mod} imports {', '.join(private)} from {m}")
            if m != mod and rank(m) > rank(mod):
                problems.append(f"upward: {mod} imports {m}")
    for comp in cycles(graph):
        problems.append(f"cycle: {' <-> '.join(comp)}")
    return "\n".join(lines), sorted(set(problems))


def main(argv: list[str]) -> int:
    args = [a for a in argv if a != "--check"]
    package = Path(args[0]) if args else Path(__file__).resolve().parents[1] / "composer"
    text, problems = report(package)
    print(text)
    print(f"\n{len(problems)} problem(s)" + (":" if problems else ""))
    for p in problems:
        print(f"  {p}")
    return 1 if problems and "--check" in argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
