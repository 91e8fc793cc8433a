"""The package's import graph: no module imports one that (directly or not) imports it back, and
only the command line (liftnn.cli) imports typer or liftnn.cli (docs/layout.md: data flows one
way, problem -> model -> solver -> Result -> report, with the CLI on top).

Every module under src/liftnn is parsed with ast (nothing is imported); both module-level imports
and imports inside functions count, since a deferred import is still a dependency.
`from liftnn.x import y` is an edge to liftnn.x.y when y is a submodule, else to liftnn.x.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "liftnn"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _resolve_relative(module: str, path: Path, level: int, target: str | None) -> str:
    base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = base[:len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([target] if target else []))


def imports_of(module: str) -> tuple[set[str], set[str]]:
    """(liftnn modules `module` imports, top-level names of the other packages it imports)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), filename=str(path))
    inner, outer = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (_resolve_relative(module, path, node.level, node.module) if node.level
                    else node.module or "")
            names = []
            for a in node.names:
                sub = f"{base}.{a.name}"
                names.append(sub if sub in MODULES else base)
        else:
            continue
        for name in names:
            if name == "liftnn" or name.startswith("liftnn."):
                while name not in MODULES:  # `import liftnn.x.y` of a name that is not a module
                    name = name.rsplit(".", 1)[0]
                if name != module:
                    inner.add(name)
            else:
                outer.add(name.split(".")[0])
    return inner, outer


GRAPH = {m: imports_of(m)[0] for m in MODULES}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def _is_cli(module: str) -> bool:
    return module == "liftnn.cli" or module.startswith("liftnn.cli.")


def test_the_parser_sees_the_imports_it_should():
    """The graph is real: known edges of the package are found, deferred imports included."""
    assert "liftnn.cli" in MODULES and "liftnn.bench.runner" in MODULES
    assert "liftnn.bench.store" in GRAPH["liftnn.bench.runner"]  # module level
    assert "liftnn.bench.report" in GRAPH["liftnn.bench.runner"]  # inside a function
    assert "liftnn.bench.peers.torch" in GRAPH["liftnn.bench.peers"]  # from pkg import submodule
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle():
    cycles = find_cycles(GRAPH)
    assert not cycles, "import cycles (each group imports itself back):\n" + "\n".join(
        " <-> ".join(c) for c in cycles)


def test_only_the_cli_imports_typer_or_the_cli():
    offenders = []
    for module in sorted(m for m in MODULES if not _is_cli(m)):
        inner, outer = imports_of(module)
        if "typer" in outer:
            offenders.append(f"{module} imports typer")
        offenders += [f"{module} imports {m}" for m in sorted(inner) if _is_cli(m)]
    assert not offenders, "only liftnn.cli may use typer or the CLI:\n" + "\n".join(offenders)
