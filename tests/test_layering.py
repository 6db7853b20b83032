"""Layers that only look down: every nnxform module imports only its own layer and the layers below it, the
import graph has no cycle, and every module imports alone in a fresh interpreter.

``LAYERS`` is the one written statement of the order, lowest first. A module belongs to the most specific entry
naming it or a package holding it (``"nnxform.passes"`` holds every pass). For the layers every import counts, wherever it is written: at the top, inside a function,
or under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "nnxform"

LAYERS: list[tuple[str, ...]] = [
    # files and errors: no nnxform import
    ("nnxform.version", "nnxform.errors", "nnxform.fileio", "nnxform.handoff", "nnxform.stopping",
     "nnxform.processes"),
    # what each operator means: evaluation, gradients, forms, relaxations
    ("nnxform.operators",),
    # the IR: graph, loader, exporter (shapes and onnxruntime handed in from above by nnxform/__init__.py)
    ("nnxform.ir",),
    # running a Model: numpy evaluator and gradients, onnxruntime, the one gradient attack; writing affine nodes
    ("nnxform.runtime", "nnxform.interpreter", "nnxform.gradient", "nnxform.affine", "nnxform.attack"),
    # the layered form: a chain of typed layers with parameters and gradients (merge, pad, compress, pruning, training)
    ("nnxform.layered",),
    # input domains, VNN-LIB boxes
    ("nnxform.domain", "nnxform.vnnlib"),
    # sound bounds
    ("nnxform.analyzers",),
    # the sampled check in onnxruntime (its tolerance follows the rounding analysis's absolute chain) and the graph
    # rewrites it checks (pad reads the dense layers analyzers.network compiles)
    ("nnxform.exactness", "nnxform.passes"),
    # analyses and tools built on the passes
    ("nnxform.merge", "nnxform.discrepancy", "nnxform.stable", "nnxform.pruning", "nnxform.accuracy",
     "nnxform.summary", "nnxform.verifiers", "nnxform.training", "nnxform.verify", "nnxform.grid",
     "nnxform.equiv"),
    # workflows the commands run, callable from Python (compress certifies with the discrepancy analysis)
    ("nnxform.workflows", "nnxform.repair"),
    # running one command over many rows: workers, engines, results (the command line handed in from above)
    ("nnxform.batch",),
    # the command line and the package's front door (which hands the IR its evaluator)
    ("nnxform.cli", "nnxform.__main__", "nnxform"),
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _layer(module: str) -> int:
    """The index in ``LAYERS`` of the most specific entry naming ``module`` or a package holding it."""
    best, depth = None, -1
    for index, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and name.count(".") > depth:
                best, depth = index, name.count(".")
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_layering.py")
    return best


def _type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"
                                         or isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(module: str) -> tuple[set[str], set[str]]:
    """The nnxform modules ``module`` imports anywhere in its text, as (executed at some point, annotation-only
    under ``if TYPE_CHECKING:``); a name imported from a package counts as the submodule when it is one."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    annotation_only = {id(n) for block in ast.walk(tree) if _type_checking_block(block)
                       for stmt in block.body for n in ast.walk(stmt)}
    found: tuple[set[str], set[str]] = (set(), set())
    for node in ast.walk(tree):
        names: set[str] = set()
        if isinstance(node, ast.Import):
            names = {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = {f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target for a in node.names}
        found[id(node) in annotation_only].update(m for m in names if m in MODULES and m != module)
    return found


GRAPH = {module: _imports(module) for module in MODULES}


def test_every_module_imports_only_its_layer_and_below():
    upward = [f"{m} (layer {_layer(m)}) imports {d} (layer {_layer(d)})"
              for m, (run, annotation) in GRAPH.items() for d in sorted(run | annotation) if _layer(d) > _layer(m)]
    assert not upward, "imports of a higher layer:\n" + "\n".join(upward)


def test_no_import_cycles():
    """No cycle among the imports that run, inside functions too (an annotation-only import never runs); a
    package's submodules may import the package itself (it is always initialised before them, and imports them
    at its end to register them)."""
    edges = {m: {d for d in run if not m.startswith(d + ".")} for m, (run, _) in GRAPH.items()}
    try:
        TopologicalSorter(edges).prepare()
    except CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def _third_party() -> set[str]:
    """The top-level packages outside nnxform that its modules import."""
    names = set()
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names.add(node.module.split(".")[0])
    return names - {"nnxform", "__future__"}


#: Run in a fresh interpreter: import the third-party packages once, then import each nnxform module in a forked
#: child that has no nnxform module loaded yet; print the modules that fail, with the last line of their error.
#: The children read nnxform's bytecode, compiled once into a temporary cache (``sys.pycache_prefix``, outside the
#: tree), so under PYTHONDONTWRITEBYTECODE each does not compile its ~60 modules again; what runs on import is the same.
_IMPORT_EACH = """
import compileall, importlib, os, sys, tempfile, traceback
for name in sys.argv[1].split(","):
    try:
        importlib.import_module(name)
    except ImportError:
        pass
assert not [m for m in sys.modules if m == "nnxform" or m.startswith("nnxform.")]
cache = tempfile.TemporaryDirectory()
sys.pycache_prefix, sys.dont_write_bytecode = cache.name, False
compileall.compile_dir(sys.argv[2], quiet=2)
for module in sys.argv[3:]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            importlib.import_module(module)
            os._exit(0)
        except BaseException:
            os.write(write, traceback.format_exc().strip().splitlines()[-1].encode())
            os._exit(1)
    os.close(write)
    with os.fdopen(read) as pipe:
        error = pipe.read()
    if os.waitpid(pid, 0)[1]:
        print(f"{module}: {error}")
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="imports each module in a forked child")
def test_every_module_imports_alone():
    """Each module imported first, with no other nnxform module loaded (what ``python -c "import M"`` does, so an
    import cycle that only works in some order fails here); one interpreter forks a child per module, so the
    test takes seconds rather than a minute of ``python -c``."""
    modules = [m for m in MODULES if m != "nnxform.__main__"]  # ``python -m nnxform``: importing it runs the command
    result = subprocess.run([sys.executable, "-c", _IMPORT_EACH, ",".join(sorted(_third_party())), PACKAGE, *modules],
                            capture_output=True, text=True, cwd=PACKAGE.parent, timeout=600)
    assert result.returncode == 0, result.stderr
    assert not result.stdout.strip(), "modules that do not import alone:\n" + result.stdout
