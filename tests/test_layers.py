"""The layer contract: imports point down the floors, never up (an AST walk of the package).

Floors, bottom to top (docs/architecture.md)::

    errors, limits, config, versions → chem, elements, datasets → featurize
    → sources, store, engine, cluster → models → zoo (storage only)
    → workflows, transfer, design → viz → testing, cli, demo

Every ``import xenonscale.X`` / ``from xenonscale.X import ...`` in every
module, at module level or inside a function, is checked. Arrows that still
point up are listed in ``KNOWN_UPWARD`` with the issue that removes them: the
test fails on any new one, and on a listed one that is gone (so the list only
shrinks).
"""

from __future__ import annotations

import ast
from pathlib import Path

import xenonscale

PACKAGE = Path(xenonscale.__file__).parent

FLOORS = {
    "errors": 0, "limits": 0, "config": 0, "versions": 0,
    "chem": 1, "elements": 1, "datasets": 1,
    "featurize": 2,
    "sources": 3, "store": 3, "engine": 3, "cluster": 3,
    "models": 4,
    "zoo": 5,
    "transfer": 6, "design": 6, "workflows": 6,
    "viz": 7,
    "testing": 8, "cli": 8, "demo": 8,
}  # fmt: skip

#: (importing module, imported module) pairs that still point up: none since the
#: train-and-register split (issue 13); the mechanism stays so the list can only shrink.
KNOWN_UPWARD: set[tuple[str, str]] = set()
#: The floors below the zoo may import nothing from these.
NEVER_FROM_BELOW = ("zoo", "transfer", "design", "workflows", "cli", "demo")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {name for name in found if name.startswith("xenonscale.")}


def _edges() -> list[tuple[str, str, int, int]]:
    edges = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).with_suffix("").as_posix()
        top = module.split("/")[0]
        if top == "__init__":
            continue  # the package root re-exports its public API
        assert top in FLOORS, f"{module}: put {top!r} on a floor in FLOORS"
        for name in _imports(path):
            target = name.split(".")[1]
            assert target in FLOORS, f"{module} imports {name}: {target!r} has no floor"
            edges.append((module, name, FLOORS[top], FLOORS[target]))
    return edges


def test_every_import_points_down_or_sideways():
    upward = {(module, name) for module, name, mine, theirs in _edges() if theirs > mine}
    assert upward - KNOWN_UPWARD == set(), "new imports that point up a floor"
    assert KNOWN_UPWARD - upward == set(), "gone: remove them from KNOWN_UPWARD"


def test_the_engine_floors_import_nothing_from_the_workflows():
    """featurize, sources, store, engine and models: nothing from zoo, workflows or above."""
    for module, name, mine, _ in _edges():
        if mine <= FLOORS["models"]:
            assert name.split(".")[1] not in NEVER_FROM_BELOW, f"{module} imports {name}"


def test_imports_in_function_bodies_say_why_they_are_lazy():
    """Outside the CLI (lazy by design: start-up time), a xenonscale import in a function body
    is there for a heavy dependency or a real cycle, and a ``# lazy: ...`` line says which."""
    silent = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).with_suffix("").as_posix()
        if module.split("/")[0] == "cli":
            continue
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines), filename=str(path))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for inner in ast.walk(node):
                names = _imported_names(inner)
                if not any(name.startswith("xenonscale") for name in names):
                    continue
                said = lines[inner.lineno - 2].strip() + lines[inner.lineno - 1]
                if "# lazy:" not in said:
                    silent.append(f"{module}:{inner.lineno}")
    assert silent == [], "hoist these to module level, or say why with '# lazy: ...'"


def test_no_package_hides_a_module_behind_a_name():
    """``xenonscale.transfer.shotgun`` is the function: a package never exports a name that
    is also one of its modules (the module would only be reachable through ``sys.modules``)."""
    hidden = []
    for init in sorted(PACKAGE.rglob("__init__.py")):
        modules = {p.stem for p in init.parent.glob("*.py")}
        modules |= {p.parent.name for p in init.parent.glob("*/__init__.py")}
        tree = ast.parse(init.read_text(), filename=str(init))
        exported = {
            alias.asname or alias.name
            for node in tree.body
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
        }
        package = init.parent.relative_to(PACKAGE.parent).as_posix().replace("/", ".")
        hidden += [f"{package}.{name}" for name in sorted(exported & modules)]
    assert hidden == [], "rename the module after what it holds"


def _imported_names(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [node.module]
    return []


def test_featurize_finds_the_frozen_family_without_importing_transfer():
    import subprocess
    import sys

    code = (
        "import sys; from xenonscale.featurize.registry import family_names, _factory; "
        "import xenonscale.engine, xenonscale.sources, xenonscale.store; "
        "loaded = sorted(m for m in sys.modules if m.startswith('xenonscale.') and "
        "m.split('.')[1] in ('zoo', 'transfer', 'design', 'workflows', 'viz', 'cli', 'models')); "
        "assert loaded == [], loaded; assert 'frozen' in family_names(); "
        "assert _factory('composition', 'frozen:m@1') is not None; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr
