"""The package's shape, checked: data flows one way between the stage packages, no import cycle,
no module reaches another's private names, and every module stays readable in one sitting.

    errors, checks, cell_registry, config -> data -> model -> training -> generation -> inspection -> api
                                                                    api -> console, cli (adapters)
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "charrnn"
FOUNDATION = ("errors", "checks", "cell_registry", "config")
STAGES = ("data", "model", "training", "generation", "inspection", "api")
ADAPTERS = ("console", "cli", "serve", "__main__")
# what an adapter may import: the door, the plain settings and errors, the renderers
ADAPTER_MAY_IMPORT = {"charrnn", "api", "config", "errors", "checks", "console", "cli", "serve"}
MAX_LINES = 300
# os._exit: the standard library's documented name; torch._weight_int8pack_mm: PyTorch's CPU
# kernel for int8 weights, which has no public name (model/reduced.py asks once whether it runs);
# torch.ops.mkldnn's packed linear ops: what PyTorch's compiler emits for a CPU linear layer
# (model/cells/packed.py asks once whether they run)
STDLIB_PRIVATE_NAMES = {
    "_exit",
    "_weight_int8pack_mm",
    "_reorder_linear_weight",
    "_linear_pointwise",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports(name: str, path: Path) -> set[str]:
    """The charrnn modules `name` imports anywhere in its file (lazy imports included)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    known = modules()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("charrnn"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("charrnn"):
                continue
            for alias in node.names:  # `from . import catalog` imports the module catalog
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    found.discard(name)
    return found


def area(name: str) -> str:
    """'data', 'api', 'cli'... for charrnn.data.cache; the module itself at the top level."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "charrnn"


def rank(name: str) -> int:
    where = area(name)
    if where in FOUNDATION or where == "charrnn":
        return -1
    if where in STAGES:
        return STAGES.index(where)
    return len(STAGES)  # adapters come last


def test_stages_import_only_upstream_and_adapters_only_the_door():
    wrong = []
    for name, path in modules().items():
        for target in imports(name, path):
            where = area(name)
            if where in ADAPTERS:
                if area(target) not in ADAPTER_MAY_IMPORT | {where}:
                    wrong.append(f"{name} (an adapter) imports {target}")
            elif area(target) in ADAPTERS:
                wrong.append(f"{name} imports the adapter {target}")
            elif rank(target) > rank(name) and name != "charrnn":
                wrong.append(f"{name} imports {target}, downstream of it")
            elif where in FOUNDATION and area(target) not in FOUNDATION:
                wrong.append(f"{name} (foundation) imports {target}")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycle():
    graph = {name: imports(name, path) for name, path in modules().items()}
    # a package's __init__ that re-exports is entered by its modules' imports; skip those edges
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".")}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append(" -> ".join(trail[trail.index(target) :] + [node, target]))
            elif target not in state:
                visit(target, trail + [node] if target not in trail else trail)
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    assert not cycles, "\n".join(cycles)


def test_the_package_exports_only_the_door_and_the_settings():
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    exports = next(
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "_EXPORTS"
    )
    sources = {value.value for value in exports.values}
    assert sources <= {"api", "config", "errors"}, sources


def test_no_module_reaches_another_objects_private_names():
    reached = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                reached += [
                    f"{name} imports {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and node.attr not in STDLIB_PRIVATE_NAMES
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                reached.append(f"{name}:{node.lineno} reaches .{node.attr}")
    assert not reached, "\n".join(reached)


def test_modules_stay_short():
    long = {
        name: lines
        for name, path in modules().items()
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, long
