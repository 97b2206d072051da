"""The floor plan holds: no import cycle, no import from a folder above, small modules.

The layers are those of docs/architecture.md, top first. Every import in the source counts,
also one inside a function; imports under ``if TYPE_CHECKING:`` do not.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "napari_unet"

#: Folders (and root modules) from the top down; a module may import from its own folder
#: and from the layers below it.
LAYERS = [
    {"_widgets"},
    {"cli", "_writer"},
    {"route"},
    {"distributed"},
    {"live"},
    {"training"},
    {"inference"},
    {"models"},
    {"testing", "metrics", "_sample_data"},
    {"method"},
    {"io", "runtime"},
]
MAX_LINES = 400
#: Modules allowed over MAX_LINES (none).
LONG_MODULES: dict[str, int] = {}
#: Import circles allowed (none: the package reader checks weights with ``models.checks``).
KNOWN_CYCLE_EDGES: set[tuple[str, str]] = set()
MAX_ROOT_MODULES = 8


def _name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in PACKAGE.rglob("*.py")}


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for child in node.body for n in ast.walk(child)}
    return skipped


def _imports(name: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _type_checking_nodes(tree)
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = name if path.name == "__init__.py" else name.rpartition(".")[0]
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            candidates = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {c for c in candidates if c in MODULES and c not in (name, "napari_unet")}
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(name: str) -> tuple[int, str]:
    folder = name.split(".")[1] if "." in name else ""
    for index, members in enumerate(LAYERS):
        if folder in members:
            return index, folder
    raise AssertionError(f"{name}: its folder {folder!r} is in no layer of the architecture")


def test_no_import_cycle():
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str):
        state[name] = 1
        stack.append(name)
        for target in sorted(GRAPH[name]):
            if (name, target) in KNOWN_CYCLE_EDGES:
                continue
            if state.get(target) == 1:
                cycle = stack[stack.index(target) :] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)


def test_no_import_from_a_folder_above():
    upward = []
    for name, targets in GRAPH.items():
        if name == "napari_unet":
            continue  # the lazy public API names every layer
        level, folder = _layer(name)
        for target in sorted(targets):
            target_level, target_folder = _layer(target)
            if target_folder != folder and target_level <= level:
                upward.append(f"{name} -> {target}")
    assert not upward, "imports against the architecture's layers:\n" + "\n".join(upward)


def test_modules_are_small_and_the_root_is_short():
    lines = {n: len(p.read_text(encoding="utf-8").splitlines()) for n, p in MODULES.items()}
    long = {n: c for n, c in lines.items() if c > LONG_MODULES.get(n, MAX_LINES)}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
    root = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    assert len(root) <= MAX_ROOT_MODULES, f"too many modules at the package root: {root}"
