"""The import map of docs/design.md is what the code does: built from the source with ast (imports inside
functions included), every import of a project module runs to the importer's own layer or one below it, no
module imports itself back through others (a circle), and a project module is imported only at the top of a
file (a lazy import is for an optional heavy package, never to dodge a circle)."""

import ast
import functools
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the lazy imports allowed, each for an optional heavy package the imported module stands for
LAZY = {("kernels.lfq", "kernels.lfq_triton"): "triton: the bit-split torch path runs without it"}


def layers():
    """docs/design.md's map, its first code block under "## Import direction": `layer: path ...` lines,
    highest first -> {module name: layer rank (0 = ground)}; a path ending in / stands for its .py files."""
    text = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    block = re.search(r"## Import direction\n.*?```\n(.*?)```", text, re.S).group(1)
    lines = [line.split(":", 1) for line in block.splitlines() if ":" in line]
    rank = {}
    for level, (_, paths) in enumerate(reversed(lines)):
        for path in paths.split():
            files = sorted((ROOT / path).glob("*.py")) if path.endswith("/") else [ROOT / path]
            for f in files:
                assert f.is_file(), f"docs/design.md's import map names {path}, which is not here"
                rank[module_name(f)] = level
    return rank


def module_name(path):
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def project_files():
    skip = {".venv", "tests", ".git", ".tmp", "out", "data"}
    return [p for p in ROOT.rglob("*.py") if not skip & set(p.relative_to(ROOT).parts)]


def imports(path, modules):
    """(module imported, line, inside a function?) for each import of a project module in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    inner = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f) if n is not f}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            # "from support import length" imports support.length; "from motion import FPS", motion
            names = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules]
            names = names or [node.module]
        else:
            continue
        found += [(name, node.lineno, id(node) in inner) for name in names if name in modules]
    return found


@functools.cache  # one walk of the tree for all the tests (it passes .venv/ and data/)
def graph():
    files = {module_name(p): p for p in project_files()}
    return files, {m: imports(p, files) for m, p in files.items()}


def test_every_module_has_a_place_in_the_map():
    rank = layers()
    missing = sorted(m for m in graph()[0] if m not in rank and not m.endswith("__init__")
                     and m not in ("experiments", "kernels", "support"))
    assert not missing, f"modules that docs/design.md's import map does not place: {missing}"


def test_imports_run_down_the_map():
    rank, (_, edges) = layers(), graph()
    upward = [f"{m}:{line} imports {target}" for m, found in edges.items() for target, line, _ in found
              if m in rank and target in rank and rank[target] > rank[m]]
    assert not upward, "imports against docs/design.md's map:\n" + "\n".join(upward)


def circles(edges):
    """Every circle a depth-first walk meets in {module: [(imported, line, inner), ...]}, as "a -> b -> a"."""
    succ = {m: {t for t, _, _ in found} for m, found in edges.items()}
    state, cycles = {}, []

    def visit(m, path):
        state[m] = "open"
        for t in sorted(succ.get(m, ())):
            if state.get(t) == "open":
                cycles.append(" -> ".join(path[path.index(t):] + [t]))
            elif t not in state:
                visit(t, path + [t])
        state[m] = "done"

    for m in sorted(succ):
        if m not in state:
            visit(m, [m])
    return cycles


def test_no_circle():
    found = circles(graph()[1])
    assert not found, "import circles:\n" + "\n".join(found)


def test_no_project_import_inside_a_function():
    _, edges = graph()
    hidden = [f"{m}:{line} imports {t} inside a function" for m, found in edges.items()
              for t, line, inner in found if inner and (m, t) not in LAZY]
    assert not hidden, "\n".join(hidden)


def test_the_pipeline_imports_no_driver():
    _, edges = graph()
    drivers = ("experiments.", "bench.", "docs.", "demo")
    wrong = [f"{m} imports {t}" for m, found in edges.items() for t, _, _ in found
             if not m.startswith(drivers) and t.startswith(drivers)]
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_a_circle_and_an_upward_import(tmp_path):
    """The checks can fail: a module pair importing each other (one of them inside a function) is found."""
    (tmp_path / "a.py").write_text("import b\n")
    (tmp_path / "b.py").write_text("def f():\n    import a\n")
    modules = {"a": tmp_path / "a.py", "b": tmp_path / "b.py"}
    edges = {m: imports(path, modules) for m, path in modules.items()}
    assert edges == {"a": [("b", 1, False)], "b": [("a", 2, True)]}
    assert circles(edges) == ["a -> b -> a"]
