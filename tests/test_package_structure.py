"""The package stays easy to live in: small modules and functions, ``models/`` independent of
``data/``, and no import cycle between modules (read statically, from the source)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "vidistill"
MODULE_LINES = 500
FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


MODULES = _modules()


def _top_level_imports(name: str, path: Path) -> set[str]:
    """The package modules ``name`` imports when it is imported (not inside functions, and not
    under ``if TYPE_CHECKING``), each resolved to the longest known module name."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _module_level(tree.body):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _module_level(body: list[ast.stmt]):
    for node in body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.If | ast.Try):
            yield from _module_level(node.body)
            for handler in getattr(node, "handlers", []):
                yield from _module_level(handler.body)
            yield from _module_level(node.orelse)
        else:
            yield node


def test_modules_and_functions_stay_small():
    too_long = []
    for name, path in MODULES.items():
        text = path.read_text()
        if text.count("\n") > MODULE_LINES:
            too_long.append(f"module {name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > FUNCTION_LINES:
                    too_long.append(f"function {name}.{node.name}: {length} lines")
    assert not too_long, "\n".join(too_long)


def test_models_import_nothing_from_data():
    offenders = {
        name: sorted(i for i in _top_level_imports(name, path) if i.startswith("vidistill.data"))
        for name, path in MODULES.items()
        if name.startswith("vidistill.models")
    }
    assert not {name: found for name, found in offenders.items() if found}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (``[a, b, ..., a]``), or None: a depth-first search."""
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return [*trail[trail.index(target) :], target]
            if target not in state and (cycle := visit(target, [*trail, target])):
                return cycle
        state[node] = "done"
        return None

    for name in sorted(graph):
        if name not in state and (cycle := visit(name, [name])):
            return cycle
    return None


def test_no_import_cycle_between_modules():
    graph = {name: _top_level_imports(name, path) for name, path in MODULES.items()}
    # A package's __init__ importing its own submodules is how re-exports work, not a cycle.
    graph = {
        name: {i for i in found if not i.startswith(f"{name}.")} for name, found in graph.items()
    }
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_checks_see_real_imports_and_cycles():
    """The checks are not blind: known edges are found, and a cycle is."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    assert "vidistill.features" in _top_level_imports(
        "vidistill.models.nextvlad", MODULES["vidistill.models.nextvlad"]
    )
    assert "vidistill.atomic" in _top_level_imports("vidistill.layout", MODULES["vidistill.layout"])
