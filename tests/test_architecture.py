"""The shape of the codebase, checked: imports go down, no cycles, no big modules, errors by condition.

These are the rules docs/architecture.md states; a test keeps them true as the code grows.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "flair_viz"
MAX_LINES = 450
FEATURES = ("predict", "metrics", "change", "annotate", "correct", "overview")
# Entry points: they wire features together, so features must not import them.
ENTRY_POINTS = ("flair_viz.server", "flair_viz.cli")
FAMILY_OR_BASE = {"FlairVizError", "RasterError", "CatalogError", "ModelError"}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {module_name(p): p for p in LIB.rglob("*.py")}


def imports_of(path: Path) -> set[str]:
    """Every flair_viz module a file imports, at module level or inside functions."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("flair_viz"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("flair_viz"):
            out.add(node.module)  # `from pkg import sub` runs pkg/__init__ first: a facade import too
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                if sub in MODULES:
                    out.add(sub)
    return out


def all_imports(path: Path) -> set[str]:
    """Top-level names of every package a file imports (flair_viz or not)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


GRAPH = {name: imports_of(path) & set(MODULES) for name, path in MODULES.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a module importing itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

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
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_inside_flair_viz():
    assert find_cycles(GRAPH) == []


def test_core_imports_nothing_above_it():
    bad = {m: sorted(i for i in deps if not i.startswith("flair_viz.core"))
           for m, deps in GRAPH.items() if m.startswith("flair_viz.core")}
    assert {m: d for m, d in bad.items() if d} == {}


@pytest.mark.parametrize("feature", FEATURES)
def test_feature_engines_do_not_import_entry_points_or_web(feature):
    """A feature imports core and other features, never flair_viz.cli, the server or the web layer
    (its cli.py included: the shared arguments live in core.cliargs)."""
    bad = {}
    for m, deps in GRAPH.items():
        if not m.startswith(f"flair_viz.{feature}"):
            continue
        up = sorted(d for d in deps if d.startswith(ENTRY_POINTS) or d.startswith("flair_viz.web"))
        if up:
            bad[m] = up
    assert bad == {}


def test_library_never_imports_a_cli_module_outside_cli_entry_points():
    bad = {m: sorted(d for d in deps if d.endswith(".cli") or d == "flair_viz.cli.main")
           for m, deps in GRAPH.items()
           if not (m.endswith(".cli") or m.startswith("flair_viz.cli") or m == "flair_viz.__main__")}
    assert {m: d for m, d in bad.items() if d} == {}


def test_library_never_imports_streamlit():
    assert [m for m, p in MODULES.items() if "streamlit" in all_imports(p)] == []


def test_modules_stay_small():
    sizes = {m: len(p.read_text(encoding="utf-8").splitlines()) for m, p in MODULES.items()}
    assert {m: n for m, n in sizes.items() if n > MAX_LINES} == {}


def test_raises_name_a_condition_not_the_base_or_a_family():
    """``raise FlairVizError(...)``/``RasterError(...)`` carry no condition, so no HTTP status of their own."""
    bad = []
    for m, p in MODULES.items():
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                f = node.exc.func
                name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
                if name in FAMILY_OR_BASE:
                    bad.append(f"{m}:{node.lineno} {name}")
    assert bad == []


def test_no_string_registries_of_modules():
    """Modules are imported by name in code, not looked up from strings (importlib.import_module)."""
    users = [m for m, p in MODULES.items() if "import_module(" in p.read_text(encoding="utf-8")]
    assert users == []


def _environment_uses(path: Path) -> list[int]:
    """Lines that touch the process environment: ``os.environ``, ``os.getenv``/``putenv``/``unsetenv``, or
    those names imported from ``os``."""
    names = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Attribute) and node.attr in names and isinstance(node.value, ast.Name)
                and node.value.id == "os"):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os" and {a.name for a in node.names} & names:
            lines.append(node.lineno)
    return lines


def test_only_config_reads_the_environment():
    """Every setting has one name, parser and default (core/config.py's table): modules ask config, never
    ``os.environ``, so no second reader drifts from the documented default."""
    users = {m: _environment_uses(p) for m, p in MODULES.items() if m != "flair_viz.core.config"}
    assert {m: lines for m, lines in users.items() if lines} == {}


def test_environment_finder_finds_planted_reads(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text("import os\nfrom os import getenv\nx = os.environ.get('A')\ny = os.getenv('B')\nz = 'environ'\n")
    assert sorted(_environment_uses(planted)) == [2, 3, 4]  # the import, os.environ, os.getenv; not the string


def _facade_uses(name: str, path: Path) -> list[str]:
    """Names a package's module takes from its own package's ``__init__`` (not a sibling submodule)."""
    package = ".".join(name.split(".")[:2])
    own = package.split(".")[1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module == "flair_viz":
            out += [a.name for a in node.names if a.name == own]
        elif isinstance(node, ast.ImportFrom) and node.module == package:
            out += [a.name for a in node.names if f"{package}.{a.name}" not in MODULES]
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name == package]
    return out


def test_package_modules_never_import_their_own_facade():
    """A facade ``__init__`` re-exports for outside callers; inside, modules import siblings, so the facade
    can change without an import cycle (docs/architecture.md)."""
    bad = {m: _facade_uses(m, p) for m, p in MODULES.items()
           if m.count(".") >= 2 and m.split(".")[1] in FEATURES and not p.name == "__init__.py"}
    assert {m: names for m, names in bad.items() if names} == {}


def test_facade_finder_finds_planted_uses(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text("from flair_viz import metrics\nfrom flair_viz.metrics import scores, Scores\n"
                       "from flair_viz.metrics.scores import view\n")
    assert sorted(_facade_uses("flair_viz.metrics.cli", planted)) == ["Scores", "metrics"]  # scores is a module


def documented_modules() -> dict[str, set[str]]:
    """Per package, the modules docs/architecture.md names: core's table rows, each feature's bullet, and the
    diagram's lists for server, cli and web."""
    import re

    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = {"core": set(re.findall(r"^\| `(\w+)\.py` \|", doc, re.M))}
    for pkg in FEATURES:
        bullet = re.search(rf"^- \*\*{pkg}/\*\* —(.*?)(?=^- \*\*|^## )", doc, re.S | re.M)
        named[pkg] = set(re.findall(r"`(\w+)\.py`", bullet.group(1))) if bullet else set()
    for pkg in ("server", "cli", "web"):
        listed = re.search(rf"flair_viz/{pkg}  \(([^)]*)\)", doc)
        named[pkg] = set(re.split(r"[,\s]+", listed.group(1).strip())) if listed else set()
    return named


def test_the_architecture_doc_names_every_module_and_no_other():
    named = documented_modules()
    on_disk = {pkg: {p.stem for p in (LIB / pkg).glob("*.py") if p.stem != "__init__"} for pkg in named}
    assert {pkg: sorted(on_disk[pkg] ^ named[pkg]) for pkg in named if on_disk[pkg] != named[pkg]} == {}
    assert all(named.values())  # every list was found (a renamed heading would otherwise pass silently)
