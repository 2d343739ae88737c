"""The architecture, checked: dependencies point down, fronts use the public API (and the
fronts' helpers) only, and the keeper stays small.

    cli/ (the front that serves the others)                     10
    testing (fakes for tests), mcpserver/, dashboard/ (fronts)    9
    twin.py (Manager: the facade's blocking twin, generated)      9
    manager.py (the facade), fronts.py (the fronts' helpers)     8
    observe/   demo                                               7
    keeper/    tasks/  routing.py  (siblings never import each other)
                                                                  6
    cluster/                                                      5
    instances/                                                    4
    client/    scripted_model/    registry    limits/             3
    database, process, portal, secretfile, secretbook             2
    models, settings, text, sockets, lines, dbfile, migrations,   1
    load
    errors, supervision                                           0
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import opencode_manager
from opencode_manager import fronts

PACKAGE = Path(opencode_manager.__file__).parent
RANKS = {
    "errors": 0,
    "supervision": 0,  # supervision limits and restart decisions (pure; models reads DEFAULTS)
    "models": 1, "settings": 1, "durations": 1, "redaction": 1, "text": 1, "sockets": 1,
    "deadline": 1, "load": 1, "dbfile": 1, "lines": 1, "migrations": 1,
    "database": 2, "process": 2, "portal": 2, "secretfile": 2, "secretbook": 2,
    "client": 3, "scripted_model": 3, "limits": 3,
    "registry": 3,  # the instance state machine, over the database
    "instances": 4,
    "cluster": 5,  # host agents on Ray: instances on other hosts, through their agents
    "keeper": 6, "tasks": 6,
    "routing": 6,  # local instances to instances/, cluster ones to cluster/: by name, once
    "observe": 7, "demo": 7,
    "manager": 8,
    "fronts": 8,  # helpers for the fronts, beside the facade (neither imports the other)
    "twin": 9,  # Manager, generated from the facade (scripts/twin.py)
    "testing": 9,
    "mcpserver": 9,  # a front the CLI serves (`ocm mcp`)
    "dashboard": 9,  # a front the CLI serves (`ocm dashboard`)
    "cli": 10, "__main__": 10, "__init__": 10,
}  # fmt: skip
# The fronts: they drive the facade through the public API and nothing else.
FRONTS = ("cli", "mcpserver", "dashboard")
# Documented subpackages a front may use as they are (the MCP front is one of the fronts).
PUBLIC_PACKAGES = {"scripted_model", "mcpserver", "dashboard"}


def _modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        found.append((".".join(rel.parts), path))
    return found


def _unit(module: str) -> str:
    return module.split(".")[0]


def _imports(module: str, path: Path) -> list[tuple[str, list[str], int]]:
    """(absolute module inside the package, names imported, line) for every import."""
    tree = ast.parse(path.read_text())
    is_package = path.name == "__init__.py"
    here = module.split(".")
    base = here if is_package else here[:-1]
    if base == ["__init__"]:
        base = []
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*parts, *([node.module] if node.module else [])])
            elif node.module and node.module.startswith("opencode_manager"):
                target = node.module.removeprefix("opencode_manager").lstrip(".")
            else:
                continue
            out.append((target, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("opencode_manager."):
                    out.append((alias.name.removeprefix("opencode_manager."), [], node.lineno))
    return out


def test_every_module_has_a_rank() -> None:
    missing = {_unit(m) for m, _ in _modules()} - set(RANKS)
    assert not missing, f"give these a place in RANKS (and in docs/architecture.md): {missing}"


def test_dependencies_point_down() -> None:
    wrong = []
    for module, path in _modules():
        unit = _unit(module)
        for target, names, line in _imports(module, path):
            targets = [target] if target else [n for n in names]  # `from . import x`
            for dest in targets:
                dest_unit = _unit(dest) if dest else unit
                if dest_unit == unit or dest_unit not in RANKS:
                    continue
                if RANKS[dest_unit] >= RANKS[unit] and unit not in ("__init__", "__main__"):
                    wrong.append(f"{path.relative_to(PACKAGE)}:{line} {unit} -> {dest_unit}")
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(wrong)


def test_the_fronts_use_only_the_public_api() -> None:
    """A front imports `opencode_manager.__all__` (the library's API), `fronts.__all__` (the
    helpers only fronts need), documented subpackages, and its own modules: nothing else."""
    allowed = {"": set(opencode_manager.__all__), "fronts": set(fronts.__all__)}
    wrong = []
    checked = set()
    for module, path in _modules():
        if _unit(module) not in FRONTS:
            continue
        checked.add(_unit(module))
        for target, names, line in _imports(module, path):
            where = f"{path.relative_to(PACKAGE)}:{line}"
            if _unit(target) == _unit(module) or _unit(target) in PUBLIC_PACKAGES:
                continue
            if target in allowed:
                private = [n for n in names if n not in allowed[target]]
                if private:
                    wrong.append(f"{where} imports {private} (not in {target or 'the'} __all__)")
                continue
            wrong.append(f"{where} imports the private module {target}")
    assert checked == set(FRONTS)
    assert not wrong, "\n".join(wrong)


def test_the_fronts_helpers_are_theirs_alone() -> None:
    """`fronts` is not a second public API: its names are not the library's, and below the
    fronts nothing imports it (the ranks say so too; this names the rule)."""
    assert not set(fronts.__all__) & set(opencode_manager.__all__)
    users = {
        _unit(module)
        for module, path in _modules()
        for target, names, _ in _imports(module, path)
        if target == "fronts" or (target == "" and "fronts" in names)
    }
    assert users <= {*FRONTS, "testing"}, users


def test_every_name_in_all_is_importable() -> None:
    for name in opencode_manager.__all__:
        assert getattr(opencode_manager, name) is not None, name


def test_the_keeper_loads_no_httpx_click_or_rich() -> None:
    code = (
        "import sys, opencode_manager.keeper.loop\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'httpx', 'click', 'rich'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


#: The names a registry goes by at its call sites (`fleet.registry`, `self.registry`, `reg`).
_REGISTRY_NAMES = {"registry", "_registry", "reg"}


def test_only_the_state_machine_writes_rows_free_form() -> None:
    """Outside registry.py an instance row changes by a named transition (`set_spec`,
    `mark_running_on_host`, ...), never by columns: so every change says when it applies.
    Tests stage impossible rows through one helper, `helpers.forge_row`."""
    tests = Path(__file__).parent
    files = [p for p in PACKAGE.rglob("*.py") if p.name != "registry.py" or p.parent != PACKAGE]
    files += [p for p in tests.rglob("*.py") if p != tests / "helpers.py"]
    wrong = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            receiver = node.func.value
            name = receiver.attr if isinstance(receiver, ast.Attribute) else None
            name = receiver.id if isinstance(receiver, ast.Name) else name
            attr = node.func.attr
            if attr in ("_update", "_set") or (attr == "update" and name in _REGISTRY_NAMES):
                wrong.append(f"{path}:{node.lineno} {ast.unparse(node.func)}(...)")
    assert not wrong, "free-form registry writes outside registry.py:\n" + "\n".join(wrong)
