"""The shape of the code base: no import cycles between the library's modules (lazy imports inside
functions included), no ``while True`` loops, no class of the training package over ~250 lines."""

import ast
from pathlib import Path

import keypointgan

SRC = Path(keypointgan.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The keypointgan modules ``path`` imports, anywhere in the file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("keypointgan"):
                candidates = [f"{target}.{a.name}" for a in node.names] + [target]
                out.update(c for c in candidates if c in MODULES)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in MODULES)
    out.discard(name)
    return out


MODULES = {module_name(p): p for p in SRC.rglob("*.py")}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_no_import_cycles():
    # a package's __init__ re-exports its modules: edges into a package are edges into its __init__,
    # and the __init__'s own imports of its submodules are not cycles of the code
    graph = {}
    for name, path in MODULES.items():
        deps = imports(path)
        if path.name == "__init__.py":
            deps = {d for d in deps if not d.startswith(name + ".")}
        graph[name] = {d for d in deps if not name.startswith(d + ".")}  # a module importing its own package
    assert find_cycle(graph) is None, " → ".join(find_cycle(graph))
    # the check can fail: a constructed cycle is found
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_while_true_and_small_training_classes():
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.While) and isinstance(node.test, ast.Constant) and node.test.value is True:
                raise AssertionError(f"{path}:{node.lineno}: while True")
            if name.startswith("keypointgan.training") and isinstance(node, ast.ClassDef):
                assert node.end_lineno - node.lineno <= 250, f"{path}: class {node.name} has {node.end_lineno - node.lineno} lines"
