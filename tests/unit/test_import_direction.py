"""Imports go one way, from the edges inward, and the product never reaches the harness.

The layers, innermost first: workflows/ (the deterministic core: the stdlib, temporalio and
itself), activities/ (ports and adapters), then the product's shells: api/, simulator/, passage/
(settings, logs, codec, CLI, ...) and worker.py. Outside the product: the development harness
(passage/dev/: make up, the demo, the Stripe emulator), bench/ and tests/, which may import
anything and are not shipped.

Imports are read with `ast`, nothing is imported; lazy imports inside functions count too.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / "workflows"
FORBIDDEN_STDLIB = {"random", "socket", "time", "threading", "subprocess", "urllib", "os", "uuid"}
#: What is only for development and measurement: no product module imports it.
HARNESS = ("passage.dev", "bench", "tests")
#: What the core (activities/ and workflows/) may not import: the shells around it and the harness.
#: Configuration and clients are handed to the core by the composition roots (worker.py, api/).
OUTSIDE_THE_CORE = ("api", "passage", "simulator", "worker", *HARNESS)


def imported_modules(path: Path) -> set[str]:
    """Every module the file at `path` imports, dotted in full."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    return modules_imported_by(path.read_text(), package)


def modules_imported_by(source: str, package: tuple[str, ...]) -> set[str]:
    """Every module `source` (a module of `package`) imports; `from a import b` yields "a" and
    "a.b", as b may be a module."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            # `from ..x import y` in a/b/c.py is a.x.y.
            base = package[: len(package) - node.level + 1] if node.level else ()
            module = ".".join((*base, *([node.module] if node.module else [])))
            modules.add(module)
            modules |= {f"{module}.{alias.name}" for alias in node.names}
    return modules


def reaches(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == package or module.startswith(f"{package}.") for package in packages)


def imports_reaching(files: list[Path], packages: tuple[str, ...]) -> list[str]:
    """Each import in `files` of one of `packages`, as "<file> imports <module>"."""
    return [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in files
        for module in sorted(imported_modules(path))
        if reaches(module, packages)
    ]


def python_files(*tops: str) -> Iterator[Path]:
    for top in tops:
        target = ROOT / top
        yield from [target] if target.is_file() else sorted(target.rglob("*.py"))


def product_files() -> Iterator[Path]:
    harness = ROOT / "passage" / "dev"
    for path in python_files("passage", "api", "activities", "workflows", "simulator", "worker.py"):
        if not path.is_relative_to(harness):
            yield path


def test_workflows_import_no_io_library() -> None:
    files = sorted(WORKFLOWS.rglob("*.py"))
    assert files
    for path in files:
        for root in {module.split(".")[0] for module in imported_modules(path)}:
            allowed = root in ("temporalio", "workflows", "__future__") or (
                root in sys.stdlib_module_names and root not in FORBIDDEN_STDLIB
            )
            assert allowed, f"{path.name} imports {root}"


def test_the_core_imports_neither_the_shells_nor_the_harness() -> None:
    files = list(python_files("activities", "workflows"))
    assert files
    wrong = imports_reaching(files, OUTSIDE_THE_CORE)
    assert not wrong, wrong


def test_the_product_never_imports_the_development_harness() -> None:
    files = list(product_files())
    assert ROOT / "worker.py" in files and ROOT / "passage" / "settings.py" in files
    wrong = imports_reaching(files, HARNESS)
    assert not wrong, wrong


def test_the_reader_sees_every_kind_of_import() -> None:
    """Plain, from-, lazy and relative imports; passage.devices is not passage.dev."""
    source = (
        "import passage.dev.devstack\n"
        "from passage import dev\n"
        "def later():\n    from .dev import demo\n"
        "from passage.devices import x\n"
    )
    found = {m for m in modules_imported_by(source, ("passage",)) if reaches(m, HARNESS)}
    assert found == {"passage.dev.devstack", "passage.dev", "passage.dev.demo"}
