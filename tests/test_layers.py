"""The package layers: every import in kernelagent/ goes down the declared order (or
stays inside its own package), so no two packages import each other."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "kernelagent"

LAYERS: list[tuple[str, ...]] = [
    ("literals", "errors", "hashing", "machine_files"),
    ("events", "manifest", "database"),
    ("testing", "telemetry"),
    ("execution",),
    ("sandbox", "localmodel"),
    ("agent",),
    ("notebook", "memory"),
    ("replay",),
    ("session",),
    ("cluster",),
    ("api", "mcp_server"),
    ("cli", "server"),
]
"""Bottom to top. A unit is a subpackage or a top-level module of ``kernelagent``; units
in one tier are independent of each other."""

TIER = {unit: tier for tier, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str | None:
    """``kernelagent.sandbox.pool`` -> ``sandbox``; the root package itself -> None."""
    parts = module.split(".")
    return parts[1] if parts[0] == "kernelagent" and len(parts) > 1 else None


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, module) of every import of a kernelagent module, at any depth (lazy ones too)."""
    found = []
    package = module_name(path.parent / "__init__.py", root)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            if base == "kernelagent":  # from kernelagent import events
                found += [(node.lineno, f"kernelagent.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, base))
    return [(line, name) for line, name in found if name.split(".")[0] == "kernelagent"]


def edges(root: Path = PACKAGE) -> list[tuple[str, str, str]]:
    """(importing unit, imported unit, where) for imports across units."""
    found = []
    for path in sorted(root.rglob("*.py")):
        source = unit_of(module_name(path, root))
        if source is None:
            continue
        for line, name in imports(path, root):
            target = unit_of(name)
            if target is not None and target != source:
                found.append((source, target, f"{path.relative_to(root.parent)}:{line}"))
    return found


def test_every_unit_has_a_layer() -> None:
    units = {unit_of(module_name(path)) for path in PACKAGE.rglob("*.py")} - {None}
    missing = sorted(unit for unit in units if unit not in TIER)
    assert not missing, f"add these to LAYERS in {__file__}: {missing}"


def test_imports_only_go_down_the_layers() -> None:
    upward = [
        f"{where}: {source} (tier {TIER[source]}) imports {target} (tier {TIER[target]})"
        for source, target, where in edges()
        if source in TIER and target in TIER and TIER[target] >= TIER[source]
    ]
    assert not upward, "imports up (or sideways) the layers:\n" + "\n".join(upward)


def test_no_cycle_between_packages() -> None:
    graph: dict[str, set[str]] = {}
    for source, target, _ in edges():
        graph.setdefault(source, set()).add(target)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cycles = sorted(unit for unit in graph if reaches(unit, unit, {unit}))
    assert not cycles, f"these packages import themselves through others: {cycles}"


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    sample = tmp_path / "kernelagent" / "sandbox" / "bad.py"
    sample.parent.mkdir(parents=True)
    sample.write_text(
        "def f():\n    from ..session import store\n    from kernelagent import api\n"
    )
    root = tmp_path / "kernelagent"
    assert [name for _, name in imports(sample, root)] == ["kernelagent.session", "kernelagent.api"]
    assert {(s, t) for s, t, _ in edges(root)} == {("sandbox", "session"), ("sandbox", "api")}
