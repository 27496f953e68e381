"""The package's layers point down only (docs/DESIGN.md's table): drivers know no
registry, storage (the model) knows neither the passes nor FUSE, the passes know no
FUSE, and no package's modules import each other in a cycle."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "layerfs"

# what each package may import from the others
MAY_USE = {
    "drivers": set(),
    "storage": {"drivers"},
    "passes": {"drivers", "storage"},
    "images": {"drivers", "storage"},
    "fs": {"storage"},  # storage is its only door to the store
    "cli": {"drivers", "storage", "passes", "images", "fs"},
}


def _imports(path: Path) -> set[str]:
    """The ``layerfs`` modules ``path`` imports (relative ones resolved), as dotted
    names below ``layerfs``."""
    module = path.relative_to(PACKAGE).with_suffix("").parts
    package = module[:-1] if module[-1] != "__init__" else module[:-1]
    tree = ast.parse(path.read_text())
    typing_only = {  # imports under ``if TYPE_CHECKING:``: annotations, never run
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = (*base, *(node.module.split(".") if node.module else ()))
            elif node.module and node.module.startswith("layerfs."):
                target = tuple(node.module.split(".")[1:])
            else:
                continue
            names = [alias.name for alias in node.names]
            found |= {".".join(target)} | {".".join((*target, n)) for n in names}
        elif isinstance(node, ast.Import):
            found |= {a.name[8:] for a in node.names if a.name.startswith("layerfs.")}
    return found


def _modules() -> dict[str, set[str]]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = _imports(path)
    return {name: {i for i in found if i in modules} for name, found in modules.items()}


def test_every_package_imports_only_the_layers_below_it() -> None:
    wrong = []
    for name, found in _modules().items():
        own = name.split(".")[0]
        if own not in MAY_USE:
            continue
        for target in found:
            other = target.split(".")[0]
            if other != own and other in MAY_USE and other not in MAY_USE[own]:
                wrong.append(f"{name} imports {target}")
    assert not wrong, wrong


def test_no_modules_of_a_package_import_each_other_in_a_cycle() -> None:
    """Imports that run, at module level or inside functions (``TYPE_CHECKING``
    imports, for annotations only, are no cycle)."""
    graph = _modules()
    cycles = []

    def visit(start: str, current: str, seen: list[str]) -> None:
        for target in graph.get(current, ()):
            if target.split(".")[0] != start.split(".")[0] or target.count(".") == 0:
                continue
            if target == start:
                cycles.append(" -> ".join([*seen, target]))
            elif target not in seen:
                visit(start, target, [*seen, target])

    for name in graph:
        if name.count("."):  # a module inside a package
            visit(name, name, [name])
    assert not cycles, cycles[:5]


# a component of the registry's layout, as a path spells it
LAYOUT_SEGMENT = re.compile(
    r"(^|/)(_layers|_manifests|_uploads|blobs|repositories|revisions|tags|hashstates"
    r"|startedat|current|index|link|data)(/|$)"
)
# where layout paths are spelled: the layout itself; drivers know no layout, and
# images/ spells the OCI layout's own paths
SPELLERS = ("storage/paths.py", "drivers/", "images/")


def _spelled_paths(path: Path) -> list[tuple[int, str]]:
    """The string constants of ``path`` (docstrings aside) that spell a layout path."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and LAYOUT_SEGMENT.search(node.value)
    ]


def test_no_layout_path_is_spelled_outside_paths() -> None:
    """storage/paths.py owns every path of the layout (docs/DESIGN.md, "The layout,
    both ways"):
    nothing else builds one from its components, so a change of the layout is one
    change. (A component alone, such as ``"_manifests"`` in the view's table, names
    no path.)"""
    spelled = [
        f"{path.relative_to(PACKAGE)}:{line}: {text!r}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if not path.relative_to(PACKAGE).as_posix().startswith(SPELLERS)
        for line, text in _spelled_paths(path)
        if "/" in text
    ]
    assert not spelled, spelled


def test_the_layout_check_sees_a_path_spelled_by_hand(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text('"""Docs name _manifests/tags freely."""\nX = f"{tag}/index"\n')
    assert [text for _, text in _spelled_paths(module)] == ["/index"]
