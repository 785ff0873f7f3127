"""The floors of the house (docs/architecture.md, "Map of the tree"): what may import what.

    ops/                 may import services and shared
    services/<service>/  may import shared (and itself); never another service, never ops
    shared/              imports nothing of ours above it

Every module's imports are read from its syntax tree, those inside functions included, so a
late ``import`` cannot hide a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from shared.config import PROJECT_ROOT

FLOORS = ("shared", "services", "ops")


def modules(top: str) -> list[Path]:
    return sorted((PROJECT_ROOT / top).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """The absolute module names a file imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)  # `from services import x`
    return names


def floor_of(module: str) -> tuple[str, str | None] | None:
    """(floor, service) of one of our modules, None for a third-party one."""
    parts = module.split(".")
    if parts[0] not in FLOORS:
        return None
    if parts[0] == "services":
        return "services", parts[1] if len(parts) > 1 else None
    return parts[0], None


def forbidden(importer: str, target: str) -> str | None:
    """Why ``importer`` may not import ``target``, or None when it may."""
    mine, theirs = floor_of(importer), floor_of(target)
    if theirs is None or mine is None:
        return None
    if mine[0] == "shared" and theirs[0] != "shared":
        return "shared/ imports nothing of ours above it"
    if mine[0] == "services":
        if theirs[0] == "ops":
            return "a service never imports ops/"
        if theirs[0] == "services" and theirs[1] is not None and theirs[1] != mine[1]:
            return f"the {mine[1]} service never imports another service ({theirs[1]})"
    return None


def violations(top: str) -> list[str]:
    found = []
    for path in modules(top):
        importer = module_name(path)
        for target in sorted(imported(path)):
            why = forbidden(importer, target)
            if why:
                found.append(f"{path.relative_to(PROJECT_ROOT)} imports {target}: {why}")
    return found


@pytest.mark.parametrize("top", FLOORS)
def test_each_floor_imports_only_what_is_below_it(top):
    assert modules(top), f"no module under {top}/"
    assert violations(top) == []


@pytest.mark.parametrize("importer,target,allowed", [
    ("shared.bus.kafka", "services.recognition.points.app", False),
    ("shared.config", "ops.cli", False),
    ("shared.db", "shared.config", True),
    ("services.gateway.auth", "services.requests.domain", False),
    ("services.recognition.kudos.domain", "services.recognition.directory", True),
    ("services.requests.handlers", "ops.infra.process", False),
    ("services.requests.handlers", "shared.bus.outbox", True),
    ("ops.cli", "services.requests.app", True),
    ("ops.cli", "flask", True),
])
def test_the_rule_itself(importer, target, allowed):
    assert (forbidden(importer, target) is None) is allowed


def test_a_late_or_relative_import_is_seen(tmp_path, monkeypatch):
    package = tmp_path / "shared" / "sub"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "late.py").write_text("def f():\n    from ..x import y\n    import services.gateway\n")
    monkeypatch.setattr(f"{__name__}.PROJECT_ROOT", tmp_path)
    found = imported(package / "late.py")
    assert {"shared.x", "shared.x.y", "services.gateway"} <= found
    assert violations("shared") == ["shared/sub/late.py imports services.gateway: shared/ imports nothing of ours above it"]


IO_LIBRARIES = {"flask", "kafka", "mongoengine", "pymongo", "requests", "werkzeug", "graphene", "PIL"}
PURE = ["services/requests/domain.py", "services/recognition/kudos/domain.py", "services/recognition/points/domain.py",
        "services/recognition/person.py", "shared/vocabulary.py", "shared/calendar.py"]


def our_module_file(module: str) -> Path | None:
    base = PROJECT_ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@pytest.mark.parametrize("path", PURE)
def test_a_domain_does_no_io_not_even_through_what_it_imports(path):
    """The rules of a service are plain code: its domain, and everything of ours it imports,
    import no database, broker, web or drawing library."""
    seen, todo, found = set(), [PROJECT_ROOT / path], []
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for target in imported(current):
            if target.split(".")[0] in IO_LIBRARIES:
                found.append(f"{current.relative_to(PROJECT_ROOT)} imports {target}")
            elif (file := our_module_file(target)) is not None:
                todo.append(file)
    assert found == []
