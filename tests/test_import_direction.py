"""The arrows between bnnflow's worlds point one way, and none closes a circle.

Worlds: ``models/`` (torch), ``hw_builds/`` (FINN), ``host/`` (numpy; copied to the board),
``reporting/`` (the report: reads stage outputs only), ``larq_models/`` (Larq; its own environment) and ``workflow/`` (Snakefile, rules, scripts: the
only place that reaches into every world). Every import is read from the source with ``ast``, lazy
imports inside functions included, and from the ``.smk`` rule files (Snakemake syntax, not Python)
line by line; each arrow between two worlds must be one of ALLOWED.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WORLDS = ("host", "models", "hw_builds", "reporting", "workflow", "larq_models")

# importer -> worlds it may import. host/ is the bottom: numpy only, on the board, so it knows no other
# world (the FINN emulation is handed to its validation by hw_builds.validate_emulated). models/ uses host's
# atomic writers and input layout; hw_builds/ verifies FINN against Brevitas (models) and the XNOR
# reference (host); the report reads stage outputs, using only host's atomic writers for its own files;
# workflow/ drives them all and nothing imports it.
ALLOWED = {
    "host": set(),
    "models": {"host"},
    "hw_builds": {"host", "models"},
    "reporting": {"host"},
    "workflow": {"host", "models", "hw_builds", "reporting"},
    # the Larq world runs in its own environment (.venv-larq): it imports no other world, and none imports it
    # (workflow/ runs it as `python -m larq_models` in shell rules)
    "larq_models": set(),
}
# The report's one arrow, module by module: it writes through host's atomic writers and reads nothing of
# another world's code (its data comes through reporting.inputs, from files).
REPORTING_MAY_IMPORT = {"host.atomic"}
SMK_IMPORT = re.compile(r"^\s*(?:from\s+([\w.]+)\s+import|import\s+([\w.]+))", re.M)


def world_of(path: Path) -> str | None:
    """The world a source file belongs to (its top folder; the root Snakefile is workflow's)."""
    rel = path.relative_to(REPO)
    if rel.parts[0] in WORLDS:
        return rel.parts[0]
    return "workflow" if rel.name == "Snakefile" else None


def imported_modules(source: str, module: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``, at any depth (lazy imports too).

    ``module`` is the importing module's dotted name, for relative imports; ``from a import b`` yields
    ``a.b`` as well as ``a`` (b may be a submodule).
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".")[: -node.level]
                base = ".".join(parent + ([base] if base else []))
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names if alias.name != "*"]
    return found


def all_imports() -> list[tuple[str, Path, int, str]]:
    """(importing world, file, line, imported module) over every Python and Snakemake file of the worlds."""
    out = []
    files = [p for w in WORLDS if (REPO / w).is_dir() for p in (REPO / w).rglob("*.py")]
    for path in sorted(files):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        for line, name in imported_modules(path.read_text(), module):
            out.append((world_of(path), path, line, name))
    smk = sorted((REPO / "workflow").rglob("*.smk")) + [REPO / "Snakefile"]
    for path in smk:
        text = path.read_text()
        for m in SMK_IMPORT.finditer(text):
            out.append(("workflow", path, text.count("\n", 0, m.start()) + 1, m.group(1) or m.group(2)))
    return out


def arrows() -> dict[tuple[str, str], list[str]]:
    """(importer world, imported world) -> 'file:line module' for every import that crosses worlds."""
    found: dict[tuple[str, str], list[str]] = {}
    for world, path, line, name in all_imports():
        target = name.split(".")[0]
        if target in WORLDS and target != world:
            found.setdefault((world, target), []).append(f"{path.relative_to(REPO)}:{line} {name}")
    return found


def test_every_arrow_between_worlds_is_allowed() -> None:
    wrong = {f"{a} -> {b}": where for (a, b), where in arrows().items() if b not in ALLOWED[a]}
    assert not wrong, f"imports against the direction of the worlds: {wrong}"


def test_host_reaches_no_other_world() -> None:
    """host/ is copied to the board: not even a lazy import may reach hw_builds/, models/, reporting/ or workflow/."""
    offending = [where for (a, _), where in arrows().items() if a == "host"]
    assert not offending, offending


def test_report_uses_only_host_atomic_writers() -> None:
    used = {name for world, _, _, name in all_imports() if world == "reporting" and name.split(".")[0] in WORLDS
            and name.split(".")[0] != "reporting"}
    # ``from host.atomic import atomic_path`` gives host.atomic and host.atomic.atomic_path: both inside host.atomic
    other = {name for name in used if not any(name == m or name.startswith(m + ".") for m in REPORTING_MAY_IMPORT)}
    assert used and not other, f"reporting/ imports {sorted(other)}"


def test_no_circles_between_worlds() -> None:
    """The graph of arrows actually present (and the allowed one) has no cycle."""
    for graph in ({a: {b for (x, b) in arrows() if x == a} for a in WORLDS}, ALLOWED):
        done: set[str] = set()

        def visit(node: str, path: tuple[str, ...]) -> None:
            assert node not in path, f"circle between worlds: {' -> '.join(path + (node,))}"
            if node not in done:
                for nxt in graph[node]:
                    visit(nxt, path + (node,))
                done.add(node)

        for world in WORLDS:
            visit(world, ())


def test_every_world_is_seen() -> None:
    """The scan is not vacuous: it reads files of every world and finds the arrows the worlds do have."""
    seen = {world for world, *_ in all_imports()}
    assert seen == set(WORLDS)
    present = set(arrows())
    assert {("workflow", "hw_builds"), ("workflow", "reporting"), ("hw_builds", "host"), ("models", "host")} <= present


@pytest.mark.parametrize("source, module, wanted", [
    ("def f():\n    from hw_builds.emulation import X\n", "host.accelerator", "hw_builds.emulation"),
    ("class A:\n    def g(self):\n        import models.train\n", "host.x", "models.train"),
    ("from . import inputs\n", "reporting.plots", "reporting.inputs"),
    ("from ..emulation import E\n", "hw_builds.sub.m", "hw_builds.emulation"),
])
def test_imports_are_found_at_any_depth(source: str, module: str, wanted: str) -> None:
    assert wanted in {name for _, name in imported_modules(source, module)}
