"""The sandbox imports a workflow's module for every run: its bytecode must be cached, or every
booking compiles workflows/booking.py again (PYTHONDONTWRITEBYTECODE, passage/tuning.py)."""

from __future__ import annotations

import compileall
import importlib
import importlib.machinery
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from passage.tuning import cache_sandbox_bytecode


@pytest.fixture
def workflow_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    package = tmp_path / "sandboxed_flows"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "flow.py").write_text("class Flow:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # as PYTHONDONTWRITEBYTECODE=1
    yield importlib.import_module("sandboxed_flows.flow")
    for name in ("sandboxed_flows.flow", "sandboxed_flows"):
        sys.modules.pop(name, None)


def test_the_bytecode_is_written_once_and_then_read_not_compiled(
    workflow_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = Path(workflow_module.__file__)
    cached = Path(importlib.util.cache_from_source(str(source)))
    assert not cached.exists()  # nothing written under PYTHONDONTWRITEBYTECODE

    cache_sandbox_bytecode([workflow_module.Flow])

    assert cached.exists()
    loader = importlib.machinery.SourceFileLoader(workflow_module.__name__, str(source))

    def compiled_from_source(*args: object, **kwargs: object) -> None:
        raise AssertionError("compiled from source")

    monkeypatch.setattr(loader, "source_to_code", compiled_from_source)
    assert loader.get_code(workflow_module.__name__) is not None  # read from the cache
    written = cached.stat().st_mtime_ns
    cache_sandbox_bytecode([workflow_module.Flow])
    assert cached.stat().st_mtime_ns == written  # fresh bytecode is not written again


def test_a_read_only_install_is_left_as_it_is(
    workflow_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(*args: object, **kwargs: object) -> bool:
        raise PermissionError("read-only file system")

    monkeypatch.setattr(compileall, "compile_dir", read_only)
    cache_sandbox_bytecode([workflow_module.Flow])  # no error
