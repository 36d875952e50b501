"""The package's shape: no import cycle between resrank_rag modules, and no module too long to read."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "resrank_rag"
MAX_LINES = 450


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imported_modules(name: str, path: Path) -> set[str]:
    """resrank_rag modules that ``name`` imports anywhere in its file (module level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:  # `import resrank_rag.a.b` names a module; strip attributes
                target = target.rpartition(".")[0]
            if target.startswith("resrank_rag") and target != name:
                found.add(target)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as a path that returns to its start), or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_walk_sees_function_level_imports_and_finds_a_cycle():
    graph = {name: imported_modules(name, path) for name, path in MODULES.items()}
    assert "resrank_rag.model" in graph["resrank_rag.training.trainer"]  # imported inside a function there
    assert "resrank_rag.loading" in graph["resrank_rag.model"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_resrank_rag():
    cycle = find_cycle({name: imported_modules(name, path) for name, path in MODULES.items()})
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_inference_preparation_and_the_model_do_not_import_each_other():
    assert "resrank_rag.model" not in imported_modules("resrank_rag.inference", MODULES["resrank_rag.inference"])


def test_no_module_is_over_450_lines():
    lengths = {str(path.relative_to(PACKAGE.parent)): len(path.read_text(encoding="utf-8").splitlines())
               for path in MODULES.values()}
    assert "resrank_rag/model.py" in lengths and "resrank_rag/index/search.py" in lengths  # the walk sees them
    long = {path: n for path, n in lengths.items() if n > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by job): {long}"
