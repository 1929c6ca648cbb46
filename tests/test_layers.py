"""The import contract: the layers of the three packages (`harness`, `suites`, `trainers`) import
downward only (docs/architecture.md).

Read statically from the source (every import, at module level or inside a function, counts as a
dependency), so it runs without any heavy dependency installed. A unit may import the units of lower
layers and itself; never a unit of its own layer or of a higher one. No import cycles, between
modules of one unit either. An import inside a function says why it is there (`# lazy: ...`:
start-up time or an optional dependency); the CLI, which imports each command's modules only when
that command runs, is the one module exempt, as its docstring says.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

LAYERS: list[list[str]] = [
    ["harness.config"],
    ["harness.stats", "harness.runs", "harness.provenance", "harness.checkpoint", "harness.codec"],
    ["harness.execution"],
    ["harness.rollout", "suites"],
    ["trainers"],
    ["harness.backends"],
    ["harness.jobs"],
    ["harness.report"],
    ["harness.regress"],
    ["harness.cli"],
]
"""Lowest first. Units on one line are independent of each other."""

LAZY_EXEMPT = {"harness.cli"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


PACKAGES = ("harness", "suites", "trainers")
"""The top-level packages of the distribution; the contract holds across all three."""


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def unit_of(module: str) -> tuple[int, str] | None:
    """(layer index, unit) of a module; None for a bare top-level package (`harness`)."""
    for i, units in enumerate(LAYERS):
        for unit in units:
            if module == unit or module.startswith(unit + "."):
                return i, unit
    return None


def imports_of(path: Path, modules: dict[str, Path]) -> list[tuple[str, int, bool, str]]:
    """(imported project module, line, inside a function, source line) for every import in `path`."""
    src = path.read_text()
    lines = src.splitlines()
    tree = ast.parse(src)
    me = module_name(path)
    inner: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inner |= {id(sub) for sub in ast.walk(node) if isinstance(sub, (ast.Import, ast.ImportFrom))}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = me if path.name == "__init__.py" else me.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{node.module}" if node.module else package
            else:
                base = node.module or ""
            # `from pkg import submodule` depends on the submodule; `from mod import name` on mod
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        text = "\n".join(lines[max(node.lineno - 2, 0):node.end_lineno])
        for target in targets:
            if target.split(".")[0] in PACKAGES:
                out.append((target, node.lineno, id(node) in inner, text))
            elif id(node) in inner:
                out.append(("", node.lineno, True, text))  # a third-party import inside a function
    return out


def import_graph() -> dict[str, list[tuple[str, int, bool, str]]]:
    modules = project_modules()
    return {name: imports_of(path, modules) for name, path in modules.items()}


def violations(graph: dict[str, list[tuple[str, int, bool, str]]]) -> list[str]:
    """Every breach of the contract, one line each."""
    bad = []
    for module, edges in graph.items():
        mine = unit_of(module)
        if mine is None and module not in PACKAGES:
            bad.append(f"{module} belongs to no layer: add its unit to LAYERS (and to docs/architecture.md)")
            continue
        for target, line, inner, text in edges:
            if inner and module not in LAZY_EXEMPT and "# lazy:" not in text:
                bad.append(f"{module}:{line} imports inside a function without a '# lazy: <why>' comment")
            if not target or mine is None:
                continue
            theirs = unit_of(target)
            if theirs is None or theirs[1] == mine[1]:
                continue
            if theirs[0] > mine[0]:
                bad.append(f"{module}:{line} imports {target} from a higher layer ({theirs[1]} above {mine[1]})")
            elif theirs[0] == mine[0]:
                bad.append(f"{module}:{line} imports {target}, a unit of its own layer ({theirs[1]} beside {mine[1]})")
    bad += [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    return bad


def cycles(graph) -> list[list[str]]:
    """One cycle per strongly connected group of modules that import each other (DFS)."""
    edges = {m: sorted({t for t, *_ in e if t in graph and t != m}) for m, e in graph.items()}
    found, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in edges.get(node, []):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [])
    return found


def test_layers_import_downward_only():
    assert violations(import_graph()) == []


def test_every_layer_holds_code():
    modules = project_modules()
    for units in LAYERS:
        for unit in units:
            assert any(m == unit or m.startswith(unit + ".") for m in modules), f"{unit} in LAYERS has no module"


@pytest.mark.parametrize("module, target, expected", [
    ("harness.config.loader", "suites", "from a higher layer"),   # the circle this contract removed
    ("harness.jobs.compare", "harness.report", "from a higher layer"),
    ("harness.rollout.hf", "suites.base", "a unit of its own layer"),
])
def test_contract_catches_an_upward_import(module, target, expected):
    """The same check, on the real graph with one deliberately added import, fails naming it."""
    graph = import_graph()
    graph[module] = graph[module] + [(target, 1, False, f"from {target} import x")]
    found = [v for v in violations(graph) if not v.startswith("import cycle:")]  # an upward import may close a circle too
    assert len(found) == 1 and module in found[0] and target in found[0] and expected in found[0]


def test_contract_catches_a_cycle_and_an_unexplained_lazy_import():
    graph = import_graph()
    graph["harness.jobs.train"] = graph["harness.jobs.train"] + [("harness.jobs.compare", 1, False, "")]
    assert any(v.startswith("import cycle:") and "harness.jobs.compare" in v for v in violations(graph))
    graph = import_graph()
    graph["harness.stats"] = graph["harness.stats"] + [("", 7, True, "    import scipy")]
    assert violations(graph) == ["harness.stats:7 imports inside a function without a '# lazy: <why>' comment"]


def test_config_imports_nothing_else_of_the_project():
    graph = import_graph()
    for module, edges in graph.items():
        if module.startswith("harness.config"):
            assert all(t.startswith("harness.config") for t, *_ in edges if t), module


def test_sandbox_child_is_standard_library_only():
    """The sandbox's child program runs under the chosen interpreter, perhaps not the harness's venv."""
    child = ROOT / "harness" / "execution" / "sandbox_child.py"
    if not child.is_file():
        pytest.skip("no separate child program")
    assert [t for t, *_ in imports_of(child, project_modules()) if t] == []


def test_every_code_folder_is_a_package():
    """A folder of modules without __init__.py imports in a source checkout (namespace package) but is
    left out of the built wheel; lm_eval_tasks/ is package data that lm-eval loads by path."""
    folders = {p.parent for package in PACKAGES for p in (ROOT / package).rglob("*.py")} - {ROOT / "suites" / "lm_eval_tasks"}
    assert sorted(str(f.relative_to(ROOT)) for f in folders if not (f / "__init__.py").is_file()) == []


FOUNDATION = ("harness.config", "harness.stats", "harness.runs", "harness.provenance", "harness.checkpoint", "harness.codec",
              "harness.execution", "harness.rollout")
"""What `suites` and `trainers` may build on: the harness's foundation (docs/architecture.md)."""


def _imports_of_package(graph, package: str) -> set[str]:
    return {t for m, edges in graph.items() if m == package or m.startswith(package + ".") for t, *_ in edges if t}


def _within(target: str, prefixes) -> bool:
    return any(target == p or target.startswith(p + ".") for p in prefixes)


def test_the_three_packages_meet_only_where_the_brief_says():
    """The foundation imports neither plug-in package; `suites` imports only the foundation (and
    itself); `trainers` imports the foundation, `suites` and itself."""
    graph = import_graph()
    for module, edges in graph.items():
        if _within(module, FOUNDATION):
            assert not [t for t, *_ in edges if t.split(".")[0] in ("suites", "trainers")], module
    assert all(_within(t, FOUNDATION + ("suites",)) for t in _imports_of_package(graph, "suites"))
    assert all(_within(t, FOUNDATION + ("suites", "trainers")) for t in _imports_of_package(graph, "trainers"))
