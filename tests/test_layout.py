"""The house: imports point down with no cycle, the core stands alone, and an installed lcp-tune
claims no generic top-level module names."""
from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# installed names of the folders that live at the repository's top level (pyproject package-dir)
MAPPED = {"lcp_tune.analysis": ROOT / "analysis", "lcp_tune.search_spaces": ROOT / "search_spaces"}


def _modules() -> dict[str, Path]:
    out = {}
    for package, folder in [("lcp_tune", ROOT / "lcp_tune"), *MAPPED.items()]:
        for path in folder.rglob("*.py"):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the package modules it imports, at any level (function bodies included)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                module = f"{base}.{node.module}" if node.level and node.module else (node.module or base)
                names = [module] + [f"{module}.{a.name}" for a in node.names]
            else:
                continue
            for target in names:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle():
    graph = _imports(_modules())
    assert len(graph) > 50   # the walk found the package, the mapped folders included
    assert _cycles(graph) == []


def test_the_cycle_check_can_fail():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]


def test_imports_point_down():
    graph = _imports(_modules())
    for name, targets in graph.items():
        assert not any(t.startswith("lcp_tune.cli") for t in targets) or name.startswith("lcp_tune.cli"), \
            f"{name} imports the CLI"
        if name.startswith("lcp_tune.pruning"):
            allowed = ("lcp_tune.pruning", "lcp_tune.errors", "lcp_tune.registry", "lcp_tune.rules")
            assert all(t.startswith(allowed) for t in targets), f"{name} imports {targets}"
        if name.startswith(("lcp_tune.store", "lcp_tune.models", "lcp_tune.data", "lcp_tune.searchers")):
            assert not any(t.startswith(("lcp_tune.run", "lcp_tune.tune", "lcp_tune.api", "lcp_tune.analysis"))
                           for t in targets), f"{name} imports a layer above it: {targets}"


def test_pruning_core_imports_no_ray_click_or_pandas():
    for path in (ROOT / "lcp_tune" / "pruning").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            assert not any(n.split(".")[0] in ("ray", "click", "pandas") for n in names), path


def test_error_class_has_its_own_module_and_is_public():
    import lcp_tune
    from lcp_tune.errors import LcpTuneError

    assert lcp_tune.LcpTuneError is LcpTuneError
    assert set(lcp_tune.__all__) >= {"search", "prune", "load_pruned", "LcpTuneError"}
    for name in lcp_tune.__all__:
        assert getattr(lcp_tune, name) is not None


@pytest.mark.slow
def test_wheel_adds_only_lcp_tune_at_the_top_level(tmp_path):
    """`pip install lcp-tune` must not claim generic names such as `analysis` or `search_spaces`."""
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)]
    # without isolation when this Python's setuptools can build wheels (no download), else isolated
    if subprocess.run([*command, "--no-build-isolation"], capture_output=True, timeout=300).returncode:
        subprocess.run(command, check=True, capture_output=True, timeout=600)
    wheel = next(tmp_path.glob("lcp_tune-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"lcp_tune"}, top
    assert "lcp_tune/analysis/__init__.py" in names and "lcp_tune/search_spaces/lcp.yaml" in names
    assert "lcp_tune/tune/trials_table.py" in names
