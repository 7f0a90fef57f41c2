"""The codebase's shape: packages by concern, no import cycles, and dvc.yaml deps that
cover every file each stage's script imports (so an edit can never leave a stage stale)."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest
import yaml
from paths import REPO

SRC = REPO / "src"
PACKAGE = SRC / "bonexray"
MAX_TOP_LEVEL = 12
# Bottom to top: a package imports only from its own layer and those below (README Layout).
LAYERS = (
    "errors",
    "io",
    "data",
    "features",
    "models",
    "evaluation",
    "explain",
    "reporting",
    "inference",
    "synth",
    "cli",
)


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(path: Path, run: bool = False) -> set[str]:
    """The bonexray modules a file imports anywhere (top level or inside a function); with
    ``run``, also those it names as a string (a module it starts with `python -m`)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif run and isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.add(node.value)
    return {name for name in found if name in MODULES}


def import_graph(run: bool = False) -> nx.DiGraph:
    graph = nx.DiGraph()
    for name, path in MODULES.items():
        graph.add_node(name)
        graph.add_edges_from((name, dep) for dep in imports_of(path, run))
    return graph


def closure(script: Path, graph: nx.DiGraph) -> set[Path]:
    """Every file a script runs: itself, the modules it reaches, and their packages'
    __init__.py (Python runs those on the way to a submodule)."""
    reached = set()
    for start in imports_of(script, run=True):
        reached |= {start, *nx.descendants(graph, start)}
    packages = {".".join(m.split(".")[:i]) for m in reached for i in range(1, m.count(".") + 1)}
    return {script, *(MODULES[m] for m in reached | packages)}


def stage_scripts(dvc: dict) -> dict[str, tuple[Path, list[str]]]:
    """Stage name -> (its script, its deps), from each stage's cmd."""
    stages = {}
    for name, stage in dvc["stages"].items():
        body = stage.get("do", stage)
        script = next(word for word in body["cmd"].split() if word.startswith("stages/"))
        stages[name] = (REPO / script, body["deps"])
    return stages


def uncovered(files: set[Path], deps: list[str]) -> list[str]:
    roots = [REPO / d for d in deps]
    return sorted(
        str(f.relative_to(REPO)) for f in files if not any(f == r or r in f.parents for r in roots)
    )


DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())
STAGES = stage_scripts(DVC)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_dvc_deps_cover_every_file_the_stage_runs(stage):
    script, deps = STAGES[stage]
    missing = uncovered(closure(script, import_graph(run=True)), deps)
    assert missing == [], f"dvc.yaml stage {stage}: deps miss {missing}"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_dvc_code_deps_exist(stage):
    _, deps = STAGES[stage]
    code = [d for d in deps if d.startswith(("src/", "stages/"))]
    assert [d for d in code if not (REPO / d).exists()] == []


def test_a_missing_deps_entry_is_caught():
    """The check above is not vacuous: drop the data package from census and it fails."""
    script, deps = STAGES["census"]
    dropped = [d for d in deps if d != "src/bonexray/data"]
    assert dropped != deps
    missing = uncovered(closure(script, import_graph(run=True)), dropped)
    assert "src/bonexray/data/census.py" in missing


def test_no_import_cycles():
    cycles = list(nx.simple_cycles(import_graph()))
    assert cycles == [], f"import cycles: {cycles[:5]}"


def test_no_package_imports_one_above_it():
    def layer(module: str) -> int:
        return LAYERS.index(module.split(".")[1]) if "." in module else -1

    upward = [(a, b) for a, b in import_graph().edges if layer(b) > layer(a) and layer(a) >= 0]
    assert upward == []
    assert {m.split(".")[1] for m in MODULES if "." in m} == set(LAYERS)


def test_the_package_has_few_top_level_entries():
    entries = sorted(p.name for p in PACKAGE.iterdir() if p.name != "__pycache__")
    assert len(entries) <= MAX_TOP_LEVEL, entries
