"""The packages show the layers, and no import runs up them.

A module imports only from its own layer or below; the pure core imports no I/O library at all
(it is unit-tested without Redis, sockets or an event loop). Lazy imports inside functions and
imports for type checking only count too: a layer that needs one from above is in the wrong
place.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ..layers import LAYERS

PACKAGE = Path(__file__).resolve().parents[2] / "aqueue"

IO_LIBRARIES = {"redis", "hiredis", "asyncio", "anyio", "aiohttp", "uvloop", "socket"}


def layer_of(module: str) -> int:
    best, rank = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), index
    assert rank >= 0, f"{module} is in no layer: add it to LAYERS"
    return rank


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[str]:
    return imports_in(
        path.read_text(encoding="utf-8"), module_name(path), path.name == "__init__.py"
    )


def imports_in(source: str, module: str, is_package: bool) -> list[str]:
    """Every module `source` imports, absolute, relative ones resolved."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.append(base)
            # `from aqueue._redis import store`: the submodule is what is imported
            found += [f"{base}.{alias.name}" for alias in node.names if base.startswith("aqueue")]
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer() -> None:
    for path in MODULES:
        layer_of(module_name(path))


def upward(module: str, imported_modules: list[str]) -> list[str]:
    """The imports of `module` that run up the layers, as sentences."""
    rank = layer_of(module)
    found = []
    for imported in imported_modules:
        if imported == "aqueue" or not imported.startswith("aqueue."):
            continue
        where = PACKAGE.parent / imported.replace(".", "/")
        if not where.with_suffix(".py").exists() and not where.is_dir():
            continue  # a name from a module, not a module: its module was checked
        if layer_of(imported) < rank:
            found.append(
                f"{module} ({LAYERS[rank][0]}) imports {imported} "
                f"({LAYERS[layer_of(imported)][0]}), a layer above it"
            )
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_no_import_runs_up_the_layers(path: Path) -> None:
    assert upward(module_name(path), imports(path)) == []


@pytest.mark.parametrize(
    "path",
    [p for p in MODULES if layer_of(module_name(p)) == len(LAYERS) - 1],
    ids=lambda p: module_name(p),
)
def test_the_pure_core_does_no_io(path: Path) -> None:
    used = {name.split(".")[0] for name in imports(path)} & IO_LIBRARIES
    assert not used, f"{module_name(path)} is pure core but imports {sorted(used)}"


def test_the_check_sees_an_import_up_the_layers() -> None:
    """The checker itself: a store reaching for the worker, lazily and relatively, is caught;
    the same store reaching down for its keys is not."""
    source = "def f():\n    from .._worker import worker\n    from . import keys\n"
    found = upward("aqueue._redis.store", imports_in(source, "aqueue._redis.store", False))
    assert found == [
        "aqueue._redis.store (redis) imports aqueue._worker (worker), a layer above it",
        "aqueue._redis.store (redis) imports aqueue._worker.worker (worker), a layer above it",
    ]
