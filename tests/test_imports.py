"""The direction of every import: page (ui) -> core (annotation) -> model (sam2), never back,
and no import cycles among the project's modules.

Two checks: every ``import`` statement in the source, wherever it is (a function-level import
counts: that is how build.py and video_predictor.py once imported each other), and what
importing the packages really loads, in a fresh interpreter.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("annotation", "ui", "sam2", "checkpoints")
WEB = {"gradio", "gradio_client", "starlette", "fastapi", "uvicorn"}

FORBIDDEN = {
    # the core runs without a web framework (the command line, Python users)
    "annotation": WEB | {"ui", "tests", "app"},
    # the model knows nothing of what is built on it
    "sam2": WEB | {"annotation", "ui", "tests", "app", "checkpoints"},
    "checkpoints": WEB | {"annotation", "ui", "tests", "app"},
    # the page reaches the model through the core; it never touches tensors
    "ui": {"torch", "tests", "app"},
}
UI_MAY_USE_FROM_SAM2 = {"sam2.video_io"}  # the decoder's limits, which the page shows and passes on


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    found = {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    found["app"] = ROOT / "app.py"
    return found


def imports_of(name: str, path: Path) -> set[str]:
    """Every module an import statement in ``path`` names (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # `from pkg import module`
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: {m for m in imports_of(name, path) if m in modules and m != name} for name, path in modules.items()}


def all_imports() -> dict[str, set[str]]:
    return {name: imports_of(name, path) for name, path in project_modules().items()}


def test_every_layer_imports_only_downwards() -> None:
    wrong = []
    for name, imported in sorted(all_imports().items()):
        top = name.split(".")[0]
        for target in sorted(imported):
            root = target.split(".")[0]
            if root in FORBIDDEN.get(top, set()):
                wrong.append(f"{name} imports {target}")
            allowed = any(target == m or target.startswith(m + ".") for m in UI_MAY_USE_FROM_SAM2)
            if top == "ui" and root == "sam2" and not allowed:
                wrong.append(f"{name} imports {target} (the page reaches the model through annotation)")
    assert not wrong, "imports against the direction page -> core -> model:\n" + "\n".join(wrong)


def test_the_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    """The checker itself: a function-level and a relative import are both found."""
    source = tmp_path / "mod.py"
    source.write_text("def f():\n    from .build import x\n    import gradio\n")
    assert {"sam2.build", "sam2.build.x", "gradio"} <= imports_of("sam2.mod", source)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _without_package_inits(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """A package's ``__init__`` naming its own submodules is not a cycle: Python loads the
    submodule after the package (``sam2/__init__`` looks its names up lazily anyway)."""
    return {name: {m for m in targets if not name or not m.startswith(name + ".")} for name, targets in graph.items()}


def test_no_import_cycles() -> None:
    cycles = _cycles(_without_package_inits(import_graph()))
    assert not cycles, f"modules that import each other: {cycles}"


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize(
    ("package", "absent"),
    [("annotation", sorted(WEB | {"ui"})), ("sam2", sorted(WEB | {"annotation", "ui", "tests"}))],
)
def test_importing_a_package_loads_nothing_above_it(package: str, absent: list[str]) -> None:
    """In a fresh interpreter, import every module of the package and list what got loaded."""
    modules = sorted(m for m in project_modules() if m == package or m.startswith(package + "."))
    modules = [m for m in modules if not m.endswith("__main__")]  # running it would start the command line
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout))
    assert package in loaded
    assert not loaded & set(absent), f"importing {package} loaded {sorted(loaded & set(absent))}"


@pytest.mark.parametrize("module", ["annotation.cli", "app"])
def test_the_app_and_the_one_machine_command_line_never_load_ray(module: str) -> None:
    """Ray is optional (requirements-ray.txt): only ``--ray`` imports it, through annotation.ray_batch."""
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.') or " \
           "m == 'annotation.ray_batch'))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"importing {module} loaded {result.stdout.strip()}"
