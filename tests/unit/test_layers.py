"""Import rules of STYLE.md §6.3, read from the source with `ast` (nothing is imported or executed).

* only modules under multiplane/netlink/ import pyroute2;
* multiplane.spec depends, inside the project, only on errors, _record and itself;
* nothing imports multiplane.cli (except `python -m multiplane`'s __main__);
* every module has a module docstring.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import multiplane

PACKAGE_DIR = Path(multiplane.__file__).resolve().parent
SPEC_MAY_IMPORT = {"multiplane.errors", "multiplane._record"}
# `python -m multiplane` must reach cli.main; that entry point is the one allowed importer.
CLI_IMPORTERS_ALLOWED = {"multiplane.__main__"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_modules() -> dict[str, Path]:
    """Every module of the installed source tree, by dotted name."""
    return {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py")) if "__pycache__" not in p.parts}


MODULES = source_modules()


def imports_of(module: str, source: str) -> set[str]:
    """Dotted names `module`'s source imports, with relative imports resolved.

    `from a import b` yields `a.b` when that is a module of the project, else `a`. String
    imports through `importlib.import_module("x")` and `__import__("x")` count too.
    """
    tree = ast.parse(source)
    is_package = MODULES.get(module, Path()).name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in MODULES else base)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
                if isinstance(node.args[0].value, str):
                    found.add(node.args[0].value)
    return found


IMPORTS = {name: imports_of(name, path.read_text()) for name, path in MODULES.items()}


def top(name: str) -> str:
    return name.split(".")[0]


# ---- the checker itself -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("multiplane.spec.x", "import pyroute2.iproute", {"pyroute2.iproute"}),
        ("multiplane.spec.x", "from pyroute2 import IPRoute", {"pyroute2"}),
        ("multiplane.spec.x", "from . import result", {"multiplane.spec.result"}),
        ("multiplane.spec.x", "from .. import cli", {"multiplane.cli"}),
        ("multiplane.spec.x", "from ..skel import run", {"multiplane.skel"}),
        ("multiplane.spec.x", "from multiplane import errors", {"multiplane.errors"}),
        ("multiplane.spec.x", "if TYPE_CHECKING:\n    from multiplane.skel import Request", {"multiplane.skel"}),
        (
            "multiplane.spec.x",
            "def f():\n    import importlib\n    importlib.import_module('pyroute2')",
            {"importlib", "pyroute2"},
        ),
        ("multiplane.spec", "from .version import parse", {"multiplane.spec.version"}),
    ],
)
def test_checker_sees_imports(module: str, source: str, expected: set[str]) -> None:
    """The import collector finds absolute, relative, lazy, type-only and string imports."""
    assert imports_of(module, source) == expected


def test_tree_is_found() -> None:
    """The walk covers the package, its sub-packages and the modules the rules are about."""
    assert {"multiplane", "multiplane.cli", "multiplane.skel", "multiplane.spec.result"} <= set(MODULES)


# ---- the rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize("module", sorted(MODULES))
def test_only_netlink_imports_pyroute2(module: str) -> None:
    """No module outside multiplane.netlink imports pyroute2."""
    if module == "multiplane.netlink" or module.startswith("multiplane.netlink."):
        return
    assert sorted(name for name in IMPORTS[module] if top(name) == "pyroute2") == []


SPEC_MODULES = sorted(m for m in MODULES if m == "multiplane.spec" or m.startswith("multiplane.spec."))


@pytest.mark.parametrize("module", SPEC_MODULES)
def test_spec_imports_only_errors_record_and_spec(module: str) -> None:
    """multiplane.spec imports from the project only errors, _record and other spec modules."""
    inside = {name for name in IMPORTS[module] if top(name) == "multiplane"}
    allowed = {n for n in inside if n in SPEC_MAY_IMPORT or n == "multiplane.spec" or n.startswith("multiplane.spec.")}
    assert sorted(inside - allowed) == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_nothing_imports_cli(module: str) -> None:
    """No module imports multiplane.cli; it is the outermost layer."""
    if module in CLI_IMPORTERS_ALLOWED:
        return
    assert "multiplane.cli" not in IMPORTS[module]


# The front doors sit above skel like cli.py: the engine below never reaches up to them.
FRONT_DOORS = {
    "multiplane.client": {"multiplane.cli"},
    "multiplane.invoke": {"multiplane.cli", "multiplane.daemon.server"},
    "multiplane.daemon": {"multiplane.cli"},
}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_only_the_front_doors_import_the_client_the_daemon_and_invoke(module: str) -> None:
    """client.py and invoke.py are imported only by the entry points; the daemon package only by cli and itself."""
    for target, allowed in FRONT_DOORS.items():
        if module in allowed or module == target or module.startswith(target + "."):
            continue
        hits = {m for m in IMPORTS[module] if m == target or m.startswith(target + ".")}
        assert not hits, f"{module} imports {sorted(hits)}; only {sorted(allowed)} may"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_has_docstring(module: str) -> None:
    """Every module, package __init__ included, starts with a docstring."""
    docstring = ast.get_docstring(ast.parse(MODULES[module].read_text()))
    assert docstring and docstring.strip(), f"{MODULES[module]} has no module docstring"
