"""The architecture's rules (docs/architecture.md), read from the source tree with ``ast``.

No module under test is imported here (one test imports ``ondevice`` in a fresh process, on purpose), so a
rule broken by an import that would fail or load a framework is still reported as a rule, not as a crash.
An import edge is what one import statement names: ``from .base import Runner`` is an edge to
``ondevice.runtimes.base``, ``from . import progress`` one to ``ondevice.progress``. The parent packages Python
imports on the way (``ondevice``, ``ondevice.runtimes``) are not edges: every package that re-exports a child
would be a cycle, and the test that imports ``ondevice`` covers what those ``__init__`` files load.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# import name -> folder in the checkout: the card's folders install inside ondevice (pyproject's package-dir)
PACKAGE_DIRS = {
    "ondevice": ROOT / "ondevice",
    "ondevice.converters": ROOT / "converters",
    "ondevice.validators": ROOT / "validators",
}
# The nodes of the package graph: every module belongs to the longest of these its name starts with. The
# command line sits above everything (the zoo included, which runs the root's orchestration), so it is a node
# of its own; "ondevice" is the other root modules.
CLI = ("ondevice.cli", "ondevice.__main__")
PACKAGES = (
    "ondevice",
    "ondevice.cli",
    "ondevice.core",
    "ondevice.runtimes",
    "ondevice.zoo",
    "ondevice.examples",
    "ondevice.converters",
    "ondevice.validators",
)
FRAMEWORKS = ("numpy", "torch", "tensorflow", "keras", "onnx", "onnxruntime", "openvino", "executorch", "tf2onnx")
# The documented top-level calls: their parameters after the first two are keyword-only, however many.
KEYWORD_API = {"ondevice.api.check", "ondevice.api.export", "ondevice.api.validate"}
MAX_PARAMETERS = 7


@dataclass(frozen=True)
class Import:
    """One import statement's target in one module."""

    module: str  # the importing module
    target: str  # the imported name, resolved to absolute (a module of ours, or a third-party name)
    line: int
    deferred: bool  # inside a function: runs on call, not on import
    typing_only: bool  # under ``if TYPE_CHECKING:``: never runs

    def where(self) -> str:
        return f"{self.module}:{self.line} imports {self.target}"


@cache
def modules() -> dict[str, Path]:
    """Every module of ours by import name, from the folders the wheel maps (links in ondevice/ skipped)."""
    found: dict[str, Path] = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if package == "ondevice" and parts[0] in ("converters", "validators"):
                continue  # the links to the top-level folders, read above under their own names
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return isinstance(test, ast.Name | ast.Attribute) and ast.unparse(test).endswith("TYPE_CHECKING")


def _walk(node: ast.AST, deferred: bool = False, typing_only: bool = False) -> Iterator[tuple[ast.AST, bool, bool]]:
    """Every node with whether it sits inside a function and whether under ``if TYPE_CHECKING``."""
    for child in ast.iter_child_nodes(node):
        yield child, deferred, typing_only
        inner = deferred or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        yield from _walk(child, inner, typing_only or _is_type_checking(child))


def _absolute(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    is_package = modules()[module].name == "__init__.py"
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join([*base, node.module] if node.module else base)


def _ours(name: str) -> str | None:
    """The module of ours that ``name`` (a module or a name in one) lives in; None for third-party names."""
    while name and name not in modules():
        name = name.rpartition(".")[0]
    return name or None


@cache
def imports(module: str) -> tuple[Import, ...]:
    """Every import statement of ``module``, resolved: ``from pkg import mod`` names ``pkg.mod``."""
    out = []
    for node, deferred, typing_only in _walk(_tree(modules()[module])):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, node)
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules() else base for a in node.names]
        else:
            continue
        out += [Import(module, name, node.lineno, deferred, typing_only) for name in names]
    return tuple(out)


def _edges(package_level: bool = False) -> dict[str, set[str]]:
    def node(name: str) -> str:
        if not package_level:
            return name
        if name in CLI:
            return "ondevice.cli"
        return max((p for p in PACKAGES if name == p or name.startswith(p + ".")), key=len)

    graph: dict[str, set[str]] = {node(m): set() for m in modules()}
    for module in modules():
        for imp in imports(module):
            target = _ours(imp.target)
            if target is not None and node(target) != node(module):
                graph[node(module)].add(node(target))
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the components of more than one node (each one is a cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def _cycles(graph: dict[str, set[str]]) -> str:
    """Each cycle as its edges, one a line, with the statements behind each edge: the failure message."""
    lines = []
    for component in strongly_connected(graph):
        members = set(component)
        lines.append("cycle: " + ", ".join(component))
        lines += [f"  {a} -> {b}" for a in component for b in sorted(graph[a] & members)]
    return "\n".join(lines)


# --- the rules --------------------------------------------------------------------------------------------


def test_the_tree_is_read():
    """The rules below would pass on an empty tree: check that they see the modules they are about."""
    names = modules()
    for name in ("ondevice.core.vocab", "ondevice.converters.registry", "ondevice.validators.parity", "ondevice.cli"):
        assert name in names
    assert "ondevice.runtimes.base" in {i.target for i in imports("ondevice.runtimes.onnxruntime_runner")}
    assert len(names) > 80


def test_converters_and_validators_import_only_the_core_and_their_own_package():
    broken = []
    for module in modules():
        package = next((p for p in ("ondevice.converters", "ondevice.validators") if module.startswith(p)), None)
        if package is None:
            continue
        for imp in imports(module):
            target = _ours(imp.target)
            allowed = target is None or target.startswith((package, "ondevice.core"))
            if not allowed:
                broken.append(imp.where())
    assert broken == [], "\n".join(broken)


def test_no_module_imports_the_bare_names_pypi_owns():
    """``import validators`` would load PyPI's validators when it is installed, ``converters`` someone else's."""
    bare = [
        imp.where()
        for module in modules()
        for imp in imports(module)
        if imp.target.split(".")[0] in ("converters", "validators")
    ]
    assert bare == []


def test_the_core_imports_only_the_core_the_stdlib_and_numpy_at_module_level():
    broken = []
    for module in modules():
        if not module.startswith("ondevice.core"):
            continue
        for imp in imports(module):
            if imp.deferred or imp.typing_only:
                continue  # frameworks load inside the function that needs them
            top = imp.target.split(".")[0]
            ours = _ours(imp.target)
            allowed = ours.startswith("ondevice.core") if ours else top in sys.stdlib_module_names or top == "numpy"
            if not allowed or (top == "ondevice" and ours is None):
                broken.append(imp.where())
    assert broken == []


def test_importing_ondevice_loads_only_the_core():
    code = "import ondevice, json, sys; print(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout)
    ours = [m for m in loaded if m == "ondevice" or m.startswith("ondevice.")]
    assert "ondevice.core.errors" in ours
    assert [m for m in ours if m != "ondevice" and not m.startswith("ondevice.core")] == []
    assert [m for m in loaded if m.split(".")[0] in FRAMEWORKS] == []


def test_no_import_cycle_between_modules():
    """Every import statement counts, also those inside functions: a deferred import hides a cycle, not cures it."""
    graph = _edges()
    assert sum(map(len, graph.values())) > 200  # the graph is really built
    assert not strongly_connected(graph), _cycles(graph)


def test_no_import_cycle_between_packages():
    graph = _edges(package_level=True)
    assert set(graph) == set(PACKAGES)
    assert "ondevice.core" in graph["ondevice.converters"] and "ondevice.zoo" in graph["ondevice.cli"]
    assert not strongly_connected(graph), _cycles(graph)


def test_nothing_imports_the_command_line():
    """The CLI builds options and prints; a library module that imported it would run above its caller."""
    found = [
        imp.where() for module in modules() if module not in CLI for imp in imports(module) if _ours(imp.target) in CLI
    ]
    assert found == []


def test_the_cycle_finder_finds_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "e"}, "e": {"d"}, "f": set()}
    assert strongly_connected(graph) == [["a", "b", "c"], ["d", "e"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def _functions() -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    for module, path in modules().items():
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("_"):
                yield f"{module}.{node.name}", node


def _parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[int, int]:
    """(parameters, of which positional), ``self``/``cls`` and ``*args``/``**kwargs`` not counted."""
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    if positional and positional[0].arg in ("self", "cls"):
        positional = positional[1:]
    return len(positional) + len(args.kwonlyargs), len(positional)


def test_no_public_function_takes_more_than_seven_parameters():
    """Options travel as one frozen object; only the top-level API calls take many, and those by keyword."""
    long = sorted(
        f"{name} ({count})"
        for name, node in _functions()
        for count, _ in [_parameters(node)]
        if count > MAX_PARAMETERS and name not in KEYWORD_API
    )
    assert long == [], "\n".join(long)


def test_the_api_calls_take_their_options_by_keyword():
    seen = {name: _parameters(node)[1] for name, node in _functions() if name in KEYWORD_API}
    assert set(seen) == KEYWORD_API
    assert {name: n for name, n in seen.items() if n > 2} == {}


@cache
def target_members() -> dict[str, str]:
    """``Target``'s members in ondevice/core/vocab.py: {"ONNX": "onnx", ...}."""
    tree = _tree(modules()["ondevice.core.vocab"])
    target = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Target")
    return {
        n.targets[0].id: n.value.value
        for n in target.body
        if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name) and isinstance(n.value, ast.Constant)
    }


def target_names() -> frozenset[str]:
    return frozenset(target_members().values())


def target_lists(tree: ast.Module) -> list[str]:
    """Literals listing the targets: a tuple, list or set of strings, or a string like "onnx,tflite" / "onnx tflite"."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            names = {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = set(node.value.replace(",", " ").split())
            names = names if names <= target_names() else set()
        else:
            continue
        if {"onnx", "tflite"} <= names:
            found.append(f"{node.lineno}: {ast.unparse(node)[:80]}")
    return found


def test_the_target_names_are_listed_only_in_the_vocabulary():
    """Adding a target edits one line of ondevice/core/vocab.py: nothing else may list the targets."""
    assert {"onnx", "tflite", "openvino"} <= target_names()
    paths = {m: p for m, p in modules().items() if m != "ondevice.core.vocab"}
    paths["scripts.coverage"] = ROOT / "scripts" / "coverage.py"
    assert [f"{m}:{line}" for m, p in paths.items() for line in target_lists(_tree(p))] == []


def test_the_target_list_finder_finds_lists():
    tree = ast.parse('A = ("onnx", "tflite")\nB = ["tflite", "x", "onnx"]\nC = "onnx,tflite"\nD = ("onnx", "openvino")')
    assert [line.split(":")[0] for line in target_lists(tree)] == ["1", "2", "3"]


def _strategies() -> dict[str, set[str]]:
    """{route module: the targets of the strategies it registers}, from its ``@strategy(source, target, ...)``."""
    found: dict[str, set[str]] = {}
    for module, path in modules().items():
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.FunctionDef):
                for deco in node.decorator_list:
                    if isinstance(deco, ast.Call) and ast.unparse(deco.func).endswith("strategy"):
                        found.setdefault(module, set()).add(ast.literal_eval(deco.args[1]))
    return found


def _assigned(module: str, name: str) -> ast.expr:
    tree = _tree(modules()[module])
    return next(
        n.value
        for n in tree.body
        if isinstance(n, ast.Assign | ast.AnnAssign)
        and name in [ast.unparse(t) for t in (n.targets if isinstance(n, ast.Assign) else [n.target])]
        and n.value is not None
    )


def test_every_target_has_a_route_and_a_runtime_and_every_route_module_is_registered():
    """The recipe for a target (docs/architecture.md): route modules, a runner, the vocabulary's line."""
    members = target_members()
    runtimes = _assigned("ondevice.runtimes.registry", "TARGET_RUNTIMES")
    assert isinstance(runtimes, ast.Dict)
    with_runtime = {members[k.attr] for k in runtimes.keys if isinstance(k, ast.Attribute)}
    strategies = _strategies()
    routed = set().union(*strategies.values())
    assert with_runtime == routed == target_names()
    listed = ast.literal_eval(_assigned("ondevice.converters.registry", "ROUTE_MODULES"))
    assert sorted(f"ondevice.converters.{m}" for m in listed) == sorted(strategies)


def test_every_target_has_a_suffix_and_every_runtime_a_module():
    """The rest of the recipe: the vocabulary's suffix line and the runtime registry's module line."""
    from ondevice.core.vocab import ARTIFACT_SUFFIX, TARGETS
    from ondevice.runtimes.registry import RUNTIME_MODULES, TARGET_RUNTIMES

    assert sorted(ARTIFACT_SUFFIX) == sorted(TARGETS)
    assert len(set(ARTIFACT_SUFFIX.values())) == len(TARGETS)  # validate tells a file's target by its suffix
    assert {r for runtimes in TARGET_RUNTIMES.values() for r in runtimes} == set(RUNTIME_MODULES)
