"""The package's imports, read from the source (ast): no import circle, and library modules
import the package's modules at the top only.

Every `import mwnet_tf...` and `from mwnet_tf... import ...` statement counts (relative ones
resolved), at module level and inside functions. Only the seven command modules may import the
package inside a function: they parse their flags before importing TensorFlow, for start-up time.
`importlib.import_module` (the methods registry's lookup by name) is not an import statement.
"""

import ast
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "mwnet_tf")
COMMANDS = {f"mwnet_tf.{name}" for name in ("train", "bench", "plot", "report", "launch",
                                            "predict", "bench_jpeg", "bench_jit")}
# Known: own_files imports the pipeline (TensorFlow) inside the functions that decode images so
# that `import mwnet_tf.data` stays free of TensorFlow.
PENDING = {("mwnet_tf.data.custom.from_files", "mwnet_tf.data.pipeline")}


def _modules() -> dict[str, str]:
    """Module name -> file, for every module of the package."""
    out = {}
    for root, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                parts = os.path.relpath(path, REPO)[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                out[".".join(parts)] = path
    return out


def _imports(name: str, path: str, modules) -> list[tuple[str, bool, int]]:
    """(imported module, inside a function, line) of each of the package's imports."""
    tree = ast.parse(open(path).read(), path)
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    functions = {id(n) for f in ast.walk(tree)
                 if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                 for n in ast.walk(f)}
    out = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            # `from pkg import mod` imports the module pkg.mod when there is one
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                       for a in node.names]
        for target in targets:
            while target not in modules and "." in target:
                target = target.rpartition(".")[0]
            if target in modules and target.startswith("mwnet_tf"):
                out.append((target, id(node) in functions, node.lineno))
    return out


def _graph():
    modules = _modules()
    return modules, {name: _imports(name, path, modules) for name, path in modules.items()}


def test_no_import_circle():
    modules, graph = _graph()
    edges = {name: {t for t, _, _ in graph[name] if t != name} for name in modules}
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for name in sorted(modules):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_library_modules_import_the_package_at_the_top_only():
    modules, graph = _graph()
    inside = sorted({f"{os.path.relpath(modules[name], REPO)}:{line} imports {target}"
                     for name, imports in graph.items() if name not in COMMANDS
                     for target, in_function, line in imports
                     if in_function and (name, target) not in PENDING})
    assert not inside, "\n".join(inside)


def test_the_walk_sees_function_level_and_relative_imports(tmp_path):
    modules = {"mwnet_tf", "mwnet_tf.a", "mwnet_tf.b", "mwnet_tf.sub", "mwnet_tf.sub.c"}
    path = tmp_path / "c.py"
    path.write_text("from .. import a\n\ndef f():\n    from mwnet_tf.b import x\n")
    assert _imports("mwnet_tf.sub.c", str(path), modules) == [
        ("mwnet_tf.a", False, 1), ("mwnet_tf.b", True, 4)]


MAX_FUNCTION_LINES = 60  # lines of code, the docstring aside


def test_no_function_is_longer_than_sixty_lines_of_code():
    long = []
    for name, path in _modules().items():
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            body = node.body
            has_doc = (len(body) > 1 and isinstance(body[0], ast.Expr)
                       and isinstance(body[0].value, ast.Constant))
            first = body[1] if has_doc else body[0]
            start = min([first.lineno] + [d.lineno for d in getattr(first, "decorator_list", [])])
            lines = node.end_lineno - start + 1
            if lines > MAX_FUNCTION_LINES:
                long.append(f"{name}.{node.name}: {lines} lines")
    assert not long, "\n".join(long)
