"""The package's imports, read from the source (ast): the layers (`docs/design.md`), no import
circle, and library modules import the package's modules at the top only.

Every `import mwnet_tf...` and `from mwnet_tf... import ...` statement counts (relative ones
resolved), at module level and inside functions. Only the command modules (setup.cfg's console
scripts) may import the package inside a function: they parse their flags before importing
TensorFlow, for start-up time.
`importlib.import_module` (the methods registry's lookup by name) is not an import statement.
"""

import ast
import configparser
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "mwnet_tf")


def commands() -> set[str]:
    """The command modules: those setup.cfg's console scripts run."""
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(REPO, "setup.cfg"))
    lines = cfg["options.entry_points"]["console_scripts"].strip().splitlines()
    return {line.split("=")[1].strip().split(":")[0] for line in lines}


COMMANDS = commands()
# The layers, bottom up: a module may import its own layer and those below, never one above.
# A package name covers its sub-modules; the commands are the top layer.
LAYERS = (
    ("bottom", ("mwnet_tf.errors", "mwnet_tf.faults", "mwnet_tf.files")),
    ("core", ("mwnet_tf.config", "mwnet_tf.protocols", "mwnet_tf.data", "mwnet_tf.models",
              "mwnet_tf.methods")),
    ("wings", ("mwnet_tf.training", "mwnet_tf.reporting", "mwnet_tf.benchmarking",
               "mwnet_tf.outputs", "mwnet_tf.cli")),
)
# Old import paths kept for one release (each is the module it names): nothing imports them.
DEPRECATED = {"mwnet_tf.steps", "mwnet_tf.keras_model", "mwnet_tf.export", "mwnet_tf.optim"}


def _layer(module: str) -> int:
    """0 bottom, 1 core, 2 wings, 3 commands (and the package itself)."""
    for level, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return level
    return len(LAYERS)


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


def test_every_module_has_a_layer_and_no_import_runs_back_up():
    modules, graph = _graph()
    top = sorted(m for m in modules if _layer(m) == len(LAYERS))
    assert top == sorted({"mwnet_tf", *COMMANDS, *DEPRECATED}), top
    upward = sorted(f"{os.path.relpath(modules[name], REPO)}:{line} ({LAYERS[_layer(name)][0]}) "
                    f"imports {target}"
                    for name, imports in graph.items() if name not in DEPRECATED
                    for target, _, line in imports
                    if target in DEPRECATED or (name not in COMMANDS and name != "mwnet_tf"
                                                and _layer(target) > _layer(name)))
    assert not upward, "\n".join(upward)


def test_the_layer_check_sees_a_core_module_importing_a_wing():
    assert _layer("mwnet_tf.methods.mwnet") == 1 and _layer("mwnet_tf.outputs.serving") == 2
    assert _layer("mwnet_tf.files") == 0 and _layer("mwnet_tf.train") == 3
    assert _layer("mwnet_tf.datasets_extra") == 3  # a prefix is a package, not a string


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
                     if in_function})
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
