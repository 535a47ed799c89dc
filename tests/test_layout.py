"""The library's import surface: the documented entry points, and what importing a part loads."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import detector

PACKAGE = Path(detector.__file__).parent


@pytest.mark.parametrize("name", [n for n in detector.__all__ if n != "__version__"])
def test_every_exported_name_is_the_object_of_its_module(name: str) -> None:
    module = importlib.import_module(detector._EXPORTS[name])
    assert getattr(detector, name) is getattr(module, name)


def test_the_documented_entry_points_import_where_the_docs_say() -> None:
    from detector.backtest import replay
    from detector.engine import Engine
    from detector.simulate import generate, minute_counts
    from detector.source import FrameSource, SqlSource

    assert all(callable(f) for f in (replay, Engine, generate, minute_counts, FrameSource))
    assert SqlSource.read is not FrameSource.read


def _loaded_by(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return set(done.stdout.split())


def test_the_detection_code_loads_no_receiver_database_driver_or_service() -> None:
    loaded = _loaded_by("import detector.rules, detector.stats.cusum, detector.window")
    unwanted = {
        m
        for m in loaded
        if m.startswith(("detector.notify", "detector.service", "detector.source"))
        or m in {"smtplib", "requests", "sqlalchemy", "psycopg", "pymysql"}
    }
    assert unwanted == set()


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node but those under ``if TYPE_CHECKING:`` (imports for the type checker only)."""
    nodes: list[ast.AST] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        nodes += [node, *_runtime_nodes(node)]
    return nodes


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The detector modules ``path`` imports, at load time or later inside a function:
    ``from detector.notify import messages`` imports the module ``detector.notify.messages``;
    ``from detector.notify import Receiver`` the package ``detector.notify``."""
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("detector"):
            names = {f"{node.module}.{alias.name}" for alias in node.names}
            found |= names if names <= modules else {node.module}
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("detector"))
    return found


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_module_of_the_package_imports_itself_back_in_a_cycle() -> None:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    names = set(modules)
    graph = {name: _imports(path, names) & names - {name} for name, path in modules.items()}
    cycles = []
    for start in graph:
        stack = [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    cycles.append(" -> ".join([*trail, start]))
                elif nxt not in trail and len(trail) < 12:
                    stack.append((nxt, [*trail, nxt]))
    assert cycles == []
