"""The package's layout: its import graph has no cycle, and what is public is meant to be."""

import ast
from pathlib import Path

import pgusers

PACKAGE = Path(pgusers.__file__).parent
PUBLIC_MODULES = {
    "pgusers",
    "pgusers.cli",
    "pgusers.web",
    "pgusers.testing",
    "pgusers.delivery",
    "pgusers.metrics",
    "pgusers.integrations",
    "pgusers.integrations.starlette",
    "pgusers.integrations.django",
    # The names Django looks for in an application.
    "pgusers.integrations.django.apps",
    "pgusers.integrations.django.models",
    "pgusers.integrations.django.admin",
    "pgusers.integrations.django.migrations",
    "pgusers.integrations.django.migrations.0001_initial",
    "pgusers.integrations.flask",
}
"""The modules a user imports: the API (``pgusers.__all__``), the command line, the
HTTP service, the pytest plugin and the framework integrations."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports_of(name: str) -> set[str]:
    """The pgusers modules that module ``name`` imports, anywhere in it (a name
    imported from a package counts as that submodule when it is one)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in MODULES else node.module)
    return {module for module in found if module in MODULES and module != name}


def test_the_import_graph_has_no_cycle() -> None:
    graph = {name: imports_of(name) for name in MODULES}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycle = " -> ".join([*path[path.index(name) :], name])
            raise AssertionError(f"import cycle: {cycle}")
        if name in done:
            return
        for imported in sorted(graph[name]):
            visit(imported, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_only_the_public_modules_have_public_names() -> None:
    for name in MODULES:
        private = any(part.startswith("_") for part in name.split(".")[1:])
        assert private or name in PUBLIC_MODULES, f"{name} should be private (_name)"


def test_internal_modules_do_not_import_the_package_front() -> None:
    # The front (pgusers/__init__) imports everything; a module inside importing it
    # back would make a cycle through the front.
    for name in MODULES:
        if name != "pgusers":
            assert "pgusers" not in imports_of(name), name
