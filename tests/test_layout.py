"""The library's layout: imports run downhill through its layers, with no circle.

Layers, bottom to top (a module may import its own layer or any layer below, never above):
  0  errors, allocator, checkpoints, training_loop, paths, metrics, reporting, plotting, geometry/*
  1  data/*
  2  rprloc/*, baselines/*, pin/*, detector/*, cc2d/*
  3  settings
  4  evaluation/*
  5  experiments/*
  6  gui, cli, reproduce, compare_results
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "rprloc_core"
LAYERS = {"errors": 0, "allocator": 0, "checkpoints": 0, "training_loop": 0, "paths": 0, "metrics": 0, "reporting": 0, "plotting": 0, "geometry": 0,
          "data": 1,
          "rprloc": 2, "baselines": 2, "pin": 2, "detector": 2, "cc2d": 2,
          "settings": 3, "evaluation": 4, "experiments": 5,
          "gui": 6, "cli": 6, "reproduce": 6, "compare_results": 6}


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


def imports_of(path: Path) -> set[str]:
    """rprloc_core modules imported anywhere in the file (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rprloc_core"):
            assert node.level == 0, f"{path.name}: relative import"
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if (PACKAGE.parent / Path(*candidate.split("."))).with_suffix(".py").exists()
                          or (PACKAGE.parent / Path(*candidate.split("."))).is_dir() else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("rprloc_core"))
    return found


def layer(module: str) -> int:
    top = module.split(".")[1]
    assert top in LAYERS, f"{module} belongs to no layer: add it to LAYERS"
    return LAYERS[top]


GRAPH = {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m != "rprloc_core"))
def test_imports_run_downhill(module):
    for imported in GRAPH[module]:
        if imported == "rprloc_core":
            continue
        assert layer(imported) <= layer(module), f"{module} (layer {layer(module)}) imports {imported} " \
                                                 f"(layer {layer(imported)})"


def test_the_library_never_imports_the_adapters():
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            assert not any(n.split(".")[0] == "data_prep" for n in names), f"{path.name} imports data_prep"


def test_no_import_circle():
    def visit(module, stack):
        assert module not in stack, "import circle: " + " -> ".join([*stack, module])
        for imported in GRAPH.get(module, ()):
            if imported in GRAPH and imported != module:
                visit(imported, [*stack, module])

    for module in GRAPH:
        visit(module, [])
