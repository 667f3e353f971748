"""The house's rules, read from the code: no import circle among the project's modules, no arrow
from the library up to recipes/, no function over 80 lines, and imports inside functions only of
heavy packages (a module that imports torch, or what loads it, only when a function needs it)."""

import ast
from pathlib import Path

from conftest import REPO

FILES = sorted((REPO / "rlsft").rglob("*.py")) + sorted((REPO / "recipes").glob("*.py"))
MAX_LINES = 80
# packages that take seconds or gigabytes to import, or are optional extras; and the project's modules that import them at their top
HEAVY = {"torch", "transformers", "trl", "datasets", "peft", "vllm", "wandb", "matplotlib", "accelerate", "scipy", "submitit", "langdetect",
         "tokenizers", "gguf", "deepspeed", "flash_attn", "math_verify", "sympy"}
HEAVY_OWN = {"rlsft.epoch_order", "rlsft.grpo_trainer", "rlsft.scoring.decode", "rlsft.scoring.verify"}


def module_of(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_of(p): p for p in FILES}


def imports(path: Path):
    """(imported module, line, inside a function) for each import statement of `path`; a name
    imported from a package is the submodule when there is one."""
    tree = ast.parse(path.read_text())
    inside = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in ast.walk(f)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                package = module_of(path).split(".")[: -node.level + (path.name == "__init__.py")] or [""]
                base = ".".join([*package, base]) if base else ".".join(package)
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for name in names:
            yield name, node.lineno, id(node) in inside


def test_no_import_circle_and_no_arrow_from_the_library_to_recipes():
    graph = {m: {n for n, _, _ in imports(p) if n in MODULES and n != m} for m, p in MODULES.items()}
    up = [(m, n) for m, targets in graph.items() if m.startswith("rlsft") for n in targets if n.startswith("recipes")]
    assert not up, f"the library imports its recipes: {up}"
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m, path):
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError(f"import circle: {' -> '.join(path[path.index(n):] + [n])}")
            if n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert len(graph) > 40  # the walk saw the project


def test_no_function_is_longer_than_80_lines():
    long = [f"{p.relative_to(REPO)}:{f.lineno} {f.name} ({f.end_lineno - f.lineno + 1} lines)"
            for p in FILES for f in ast.walk(ast.parse(p.read_text()))
            if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and f.end_lineno - f.lineno + 1 > MAX_LINES]
    assert not long, long


def test_imports_inside_functions_are_heavy_packages_only():
    light = [f"{p.relative_to(REPO)}:{line} {name}" for p in FILES for name, line, inside in imports(p)
             if inside and name.split(".")[0] not in HEAVY and name not in HEAVY_OWN]
    assert not light, f"import these at the module's top: {light}"
