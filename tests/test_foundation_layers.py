"""The layers of the code as rules on its imports, read from the source with ``ast`` (nothing is
imported, so a rule holds whatever a test run happened to load): which package may import
which, how many modules the top of saliency_core has, and that saliency_core's import graph
has no cycle.

Every import counts wherever it is written: at module level, inside a function (a deferred
import is still a dependency) and under ``if TYPE_CHECKING:`` (a type is one too). Relative
imports are resolved. Two exemptions, each by name: Jupyter's display hooks (methods named
``_repr_*``, which run only in a notebook and may show anything) and render's documented lazy
aliases (``render.method_grid``/``class_grid`` forwarded to show/grids.py by render's module
``__getattr__``, kept where earlier releases documented them).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from support.browser import REPO_ROOT

CORE = "saliency_core"
# Past this the top of the package is a heap again: new modules go into a layer.
TOP_LEVEL_MAX = 12


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, dotted
    target: str  # the imported module, dotted (a package stands for its __init__)
    line: int
    scope: str  # the enclosing function's name, '' at module level


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules_of(package: str) -> dict[str, Path]:
    root = REPO_ROOT / package.replace(".", "/")
    return {module_name(p): p for p in sorted(root.rglob("*.py"))}


def _is_module(dotted: str) -> bool:
    path = REPO_ROOT / dotted.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _resolve(importer: str, is_package: bool, module: str | None, level: int) -> str:
    if level == 0:
        return module or ""
    base = importer.split(".")
    # A package's own relative imports start from itself; a module's from its package.
    base = base[: len(base) - level + (1 if is_package else 0)]
    return ".".join(base + ([module] if module else []))


def imports_of(path: Path) -> list[Import]:
    """Every import written in the file, with the function it sits in."""
    name = module_name(path)
    is_package = path.name == "__init__.py"
    found: list[Import] = []

    def visit(node: ast.AST, scope: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else scope
            if isinstance(child, ast.Import):
                found.extend(Import(name, a.name, child.lineno, scope) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = _resolve(name, is_package, child.module, child.level)
                for alias in child.names:
                    # `from a.b import c`: the submodule a.b.c where there is one, else a name of a.b.
                    sub = f"{base}.{alias.name}"
                    target = sub if alias.name != "*" and _is_module(sub) else base
                    found.append(Import(name, target, child.lineno, scope))
            visit(child, inner)

    visit(ast.parse(path.read_text(), filename=str(path)), "")
    return found


def _within(target: str, package: str) -> bool:
    return target == package or target.startswith(package + ".")


def _where(imp: Import) -> str:
    return f"{imp.source} line {imp.line}{f' (in {imp.scope})' if imp.scope else ''} imports {imp.target}"


def _is_display_hook(imp: Import) -> bool:
    return imp.scope.startswith("_repr_")


def _is_render_alias(imp: Import) -> bool:
    return (imp.source == f"{CORE}.render" and imp.scope == "__getattr__"
            and imp.target == f"{CORE}.show.grids")


def violations(package: str, forbidden: list[str], allowed_only: list[str] | None = None,
               exempt=lambda imp: False) -> list[str]:
    """Imports in ``package`` of anything under ``forbidden``; with ``allowed_only``, every
    import of saliency_core outside ``package`` and those packages as well."""
    bad = []
    for path in modules_of(package).values():
        for imp in imports_of(path):
            if exempt(imp) or _within(imp.target, package):
                continue
            hit = any(_within(imp.target, f) for f in forbidden)
            if allowed_only is not None and _within(imp.target, CORE):
                hit = hit or not any(_within(imp.target, a) for a in allowed_only)
            if hit:
                bad.append(_where(imp))
    return bad


def test_the_rules_see_the_imports_they_judge():
    # A parser that missed deferred or TYPE_CHECKING imports would let every rule pass.
    render = {(i.target, i.scope) for i in imports_of(REPO_ROOT / CORE / "render" / "__init__.py")}
    assert (f"{CORE}.show.grids", "__getattr__") in render
    assert _resolve(f"{CORE}.show.notebook", False, "report", 1) == f"{CORE}.show.report"
    assert _resolve(f"{CORE}.show", True, "report", 1) == f"{CORE}.show.report"
    assert _resolve(f"{CORE}.show.notebook", False, None, 2) == CORE
    checked = [i for p in modules_of(CORE).values() for i in imports_of(p)]
    assert any(i.scope for i in checked) and len(modules_of(CORE)) > 50


def test_saliency_core_imports_no_workbench_and_no_streamlit():
    assert violations(CORE, ["workbench", "streamlit", "pages", "app"]) == []


def test_render_runs_no_model():
    """render draws what it is given: of saliency_core only errors and io besides itself."""
    allowed = [f"{CORE}.errors", f"{CORE}.io"]
    assert violations(f"{CORE}.render", [], allowed, exempt=_is_render_alias) == []


def test_the_engine_knows_no_method_or_strategy():
    forbidden = [f"{CORE}.{p}" for p in ("methods", "harness", "api", "models", "show", "render")]
    assert violations(f"{CORE}.engine", forbidden) == []


def test_methods_know_no_harness_and_no_front_end():
    forbidden = [f"{CORE}.{p}" for p in ("harness", "api", "show", "serve", "cli", "models")]
    assert violations(f"{CORE}.methods", forbidden) == []


def test_the_harness_imports_nothing_above_it():
    """api and text build on the harness, show/cli/serve on those: the harness imports none."""
    forbidden = [f"{CORE}.{p}" for p in ("api", "text", "show", "serve", "cli")]
    assert violations(f"{CORE}.harness", forbidden) == []


def test_nothing_below_the_front_ends_imports_them():
    """show, cli and serve sit on top: no other part of saliency_core imports them (the
    public ``saliency_core`` package, its ``__main__``, the ``remote`` shim and ``engines``,
    whose in-process engine answers the service's named calls, are their entry points)."""
    tops = [f"{CORE}.{p}" for p in ("show", "cli", "serve")]
    entry = {CORE, f"{CORE}.__main__", f"{CORE}.remote", f"{CORE}.engines", f"{CORE}.explanation"}
    bad = []
    for name, path in modules_of(CORE).items():
        if name in entry or any(_within(name, t) for t in tops):
            continue
        bad += [_where(i) for i in imports_of(path)
                if any(_within(i.target, t) for t in tops)
                and not _is_display_hook(i) and not _is_render_alias(i)]
    assert bad == []


def test_jobs_import_no_streamlit():
    assert violations("workbench.jobs", ["streamlit"]) == []


def test_the_top_of_saliency_core_stays_small():
    top = sorted(p.name for p in (REPO_ROOT / CORE).glob("*.py"))
    assert len(top) <= TOP_LEVEL_MAX, top


def import_graph() -> dict[str, set[str]]:
    """saliency_core's modules and, for each, the saliency_core modules it imports."""
    modules = modules_of(CORE)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for imp in imports_of(path):
            if imp.target in modules and imp.target != name and not _is_display_hook(imp):
                graph[name].add(imp.target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle as the list of modules on it (the first repeated at the end), or []."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := walk(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return []

    for node in sorted(graph):
        if node not in state and (cycle := walk(node)):
            return cycle
    return []


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


def test_saliency_core_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert not cycle, "import cycle: " + " -> ".join(cycle)
