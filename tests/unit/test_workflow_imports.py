"""workflows/ is the deterministic core: it may import only the stdlib, temporalio and itself."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
FORBIDDEN_STDLIB = {"random", "socket", "time", "threading", "subprocess", "urllib", "os", "uuid"}


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_workflows_import_no_io_library() -> None:
    files = sorted(WORKFLOWS.glob("*.py"))
    assert files
    for path in files:
        for root in imported_roots(path):
            allowed = root in ("temporalio", "workflows", "__future__") or (
                root in sys.stdlib_module_names and root not in FORBIDDEN_STDLIB
            )
            assert allowed, f"{path.name} imports {root}"
