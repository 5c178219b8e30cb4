"""The package layout: imports flow one way, by stage of the data path, with no circles.

Every `import` in gpact counts, including imports inside functions (a local import that dodges a circle
at load time is still a circle in the design); only `if TYPE_CHECKING:` blocks are skipped.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "gpact"

# Stage of each top-level part of gpact: a module may import from its own part and from lower stages only.
STAGES = {
    "errors": 0, "ops": 1, "config": 1,
    "expr": 2,
    "train": 3,
    "backends": 4, "search": 4,
    "run": 5,
    "report": 6,
    "cli": 7, "api": 7, "__init__": 7, "nn": 7,
    "__main__": 8, "integrations": 8,
}  # fmt: skip


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(path: Path, modules: set[str]) -> set[str]:
    """gpact modules imported anywhere in the file (a `from pkg import mod` names the module)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("gpact"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gpact"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in modules else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {m for m in found if m in modules}


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PKG.rglob("*.py")}
    modules = set(files)
    return {name: _imports(path, modules) - {name} for name, path in files.items()}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, as a path that returns to its start, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def dfs(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := dfs(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := dfs(n)):
            return found
    return None


def test_the_checker_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circles():
    circle = _cycle(_graph())
    assert circle is None, "import circle: " + " -> ".join(circle)


def test_every_part_has_a_stage():
    assert {_part(m) for m in _graph()} <= set(STAGES)


def test_imports_flow_down_the_stages():
    wrong = []
    for mod, deps in _graph().items():
        if _part(mod) == "__init__":
            continue  # the public API re-exports from every stage, lazily
        for dep in deps:
            a, b = _part(mod), _part(dep)
            if a != b and (STAGES[b] >= STAGES[a]):
                wrong.append(f"{mod} -> {dep}")
    assert not wrong, "imports against the flow:\n" + "\n".join(sorted(wrong))


@pytest.mark.parametrize("module", ["gpact.config", "gpact.errors"])
def test_plain_data_modules_import_nothing_heavy(module):
    code = (f"import sys; import {module}; "
            "heavy = [m for m in ('torch', 'sympy', 'yaml', 'deap', 'numpy') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{module} pulls in {out.stdout.strip()}"
