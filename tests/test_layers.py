"""The import rules of docs/architecture.md, checked on the source.

- Layers, lowest first: core, governance, data, annotation, training, registry, serving,
  monitoring, chain, apps, then the shells (api and web, then cli). A module imports only
  its own package or a lower one — inside functions too.
- An import of another Chainkeeper package sits at module top, never inside a function
  (that is how a cycle hides); the exceptions are listed below with their reason.
- Another package's stage (data … monitoring, chain) is reached through its entry point,
  ``from chainkeeper.data import X``; core and governance, the foundation every layer
  stands on, are imported by module.
- Every name a stage's entry point exports resolves.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "chainkeeper"
LAYER = {"core": 0, "governance": 1, "data": 2, "annotation": 3, "training": 4, "registry": 5, "serving": 6,
         "monitoring": 7, "chain": 8, "apps": 9, "api": 10, "web": 10, "cli": 11}
STAGES = ("data", "annotation", "training", "registry", "serving", "monitoring", "chain")

# (module, imported package) -> why the import sits inside a function.
IN_FUNCTION_EXCEPTIONS: dict[tuple[str, str], str] = {}

# Modules allowed to import another package's submodules, with the reason.
SUBMODULE_EXCEPTIONS: dict[str, str] = {
    "core/schema.py": "the schema registers every stage's tables; a tables module imports no service code",
}


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if "migrations" in rel.parts:
            continue
        yield rel.as_posix(), ast.parse(path.read_text(encoding="utf-8"))


def _imports(tree: ast.Module) -> Iterator[tuple[ast.stmt, str, bool]]:
    """(node, imported module, inside a function) for every absolute chainkeeper import."""
    def visit(node: ast.AST, in_function: bool) -> Iterator[tuple[ast.stmt, str, bool]]:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                yield child, child.module, in_function
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    yield child, alias.name, in_function
            yield from visit(child, inside)

    for node, module, in_function in visit(tree, False):
        if module.split(".")[0] == "chainkeeper":
            yield node, module, in_function


def _package(rel: str) -> str | None:
    head = rel.split("/")[0]
    return head if head in LAYER else None


def test_no_import_runs_up_the_chain() -> None:
    upward = []
    for rel, tree in _modules():
        own = _package(rel)
        if own is None or rel in SUBMODULE_EXCEPTIONS:
            continue
        for node, module, _ in _imports(tree):
            target = module.split(".")[1] if "." in module else None
            if target in LAYER and LAYER[target] > LAYER[own]:
                upward.append(f"{rel}:{node.lineno} imports {module}")
    assert not upward, "imports that run up the chain:\n" + "\n".join(upward)


def test_no_import_inside_a_function_crosses_packages() -> None:
    found = []
    for rel, tree in _modules():
        own = _package(rel)
        for node, module, in_function in _imports(tree):
            target = module.split(".")[1] if "." in module else None
            if in_function and target != own and (rel, target) not in IN_FUNCTION_EXCEPTIONS:
                found.append(f"{rel}:{node.lineno} imports {module} inside a function")
    assert not found, "move these to the module top (or list the exception with its reason):\n" + "\n".join(found)


def test_other_stages_are_reached_through_their_entry_points() -> None:
    found = []
    for rel, tree in _modules():
        own = _package(rel)
        if rel in SUBMODULE_EXCEPTIONS:
            continue
        for node, module, _ in _imports(tree):
            parts = module.split(".")
            if len(parts) > 2 and parts[1] in STAGES and parts[1] != own:
                found.append(f"{rel}:{node.lineno} imports {module}")
            elif len(parts) == 2 and parts[1] in STAGES and parts[1] != own and isinstance(node, ast.ImportFrom):
                found += [f"{rel}:{node.lineno} imports the module {module}.{alias.name}" for alias in node.names
                          if (PACKAGE / parts[1] / f"{alias.name}.py").exists()]
    assert not found, "import these from the stage's package instead:\n" + "\n".join(found)


@pytest.mark.parametrize("stage", STAGES + ("governance",))
def test_every_exported_name_resolves(stage: str) -> None:
    package = importlib.import_module(f"chainkeeper.{stage}")
    names = getattr(package, "__all__", None)
    assert names, f"chainkeeper.{stage} declares no __all__"
    missing = [name for name in names if not hasattr(package, name)]
    assert not missing, f"chainkeeper.{stage} exports names it cannot resolve: {missing}"


def test_the_schema_loads_no_service_code() -> None:
    """Registering every table (as opening a context does) pulls in none of the heavy
    libraries the services use: the entry points load their modules lazily."""
    code = ("import sys, chainkeeper.core.context; "
            "print(','.join(m for m in ('torch', 'transformers', 'pyarrow', 'scipy', 'sklearn', 'onnxruntime') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"opening the schema imported {out}"


@pytest.mark.parametrize("stage", STAGES + ("governance",))
def test_the_export_list_is_the_lazy_table(stage: str) -> None:
    package = importlib.import_module(f"chainkeeper.{stage}")
    assert sorted(package.__all__) == sorted(package._EXPORTS), f"chainkeeper.{stage}: __all__ and _EXPORTS differ"
