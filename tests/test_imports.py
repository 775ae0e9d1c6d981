"""The package's import graph: no cycles, and only the CLI reaches into flows/ (issue 12)."""

import ast
from pathlib import Path

from conftest import ROOT


def imports_of(path: Path) -> set[str]:
    """Modules of shipskip (or 'flows') a file imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):  # `import flows`, as the CLI finds the flows in a checkout
            found.update(a.name.split(".")[0] for a in node.names if a.name.split(".")[0] == "flows")
        elif isinstance(node, ast.ImportFrom):
            if node.level == 1:
                found.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
            elif node.module and node.module.split(".")[0] in ("shipskip", "flows"):
                parts = node.module.split(".")
                found.add("flows" if parts[0] == "flows" else parts[1] if len(parts) > 1 else "")
    return found - {""}


def test_no_import_cycles_and_only_the_cli_imports_flows():
    graph = {f.stem: imports_of(f) for f in (ROOT / "src" / "shipskip").glob("*.py")}
    assert {m for m, deps in graph.items() if "flows" in deps} == {"cli"}

    def cycle_from(start: str) -> list[str] | None:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for dep in graph.get(node, ()):
                if dep == start:
                    return [*path, dep]
                if dep not in seen:
                    seen.add(dep)
                    stack.append((dep, [*path, dep]))
        return None

    cycles = [c for m in graph if (c := cycle_from(m))]
    assert cycles == []


def modules_reached(start: str) -> set[str]:
    """Every module `start` imports, directly or through another shipskip module: shipskip's by
    their own names, others by their top-level package (duckdb, prefect)."""
    package = ROOT / "src" / "shipskip"
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = package / f"{name}.py"
        if not path.exists():
            continue
        todo.extend(imports_of(path))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                seen.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                seen.add(node.module.split(".")[0])
    return seen - {start}


def test_pages_and_charts_are_drawn_without_the_store_analytics_duckdb_or_the_model_server():
    # Pure: values in, text out. What reads the store (publish, site) hands render its values.
    for pure in ("render", "charts"):
        reached = modules_reached(pure)
        assert reached & {"store", "store_lake", "analytics", "duckdb", "embedded"} == set(), pure
    assert "charts" in modules_reached("render")
