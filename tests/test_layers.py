"""The layers of hessdiff, enforced: a module imports only from its own layer or below.

    core (IR, op catalogue, oracle) <- backends <- checking <- search <- reporting
        <- front door <- CLI

Every module under ``harness/``, ``backends/`` and ``hessdiff/`` is parsed (not imported)
and each of its imports of hessdiff, function-local ones included (a lazy import is still
a dependency), is held against ``LAYERS``. The test fails on a module ``LAYERS`` does not
place (a new module must be placed), an import of a higher layer, a cycle in the module
graph (lazy imports included: two modules importing each other, one of them inside a
function, is still a cycle; only ``if TYPE_CHECKING:`` imports, which never run, are
not edges), Hypothesis imported outside the search layer, and an import of the
checkout's folder names (``harness.``, ``backends.``) instead of ``hessdiff.``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The source folders and the package each installs as (pyproject's package-dir).
PACKAGES = {"harness": "hessdiff.harness", "backends": "hessdiff.backends", "hessdiff": "hessdiff"}

LAYER_NAMES = ("core", "backends", "checking", "search", "reporting", "front door", "cli")

# Module -> layer. A key places the module of that name and every module below it
# (``hessdiff.harness.ops`` places ``hessdiff.harness.ops.unary`` if ops is a package);
# the longest key that matches wins. The two namespace packages are placed exactly, in
# EXACT, so that a module nobody placed is not taken for theirs.
LAYERS: Mapping[str, str] = {
    # --- core: the program IR, the op catalogue and framework-free mathematics over them.
    "hessdiff.harness.ops": "core",
    "hessdiff.harness.ir": "core",
    "hessdiff.harness.parse": "core",  # programs from text: the IR's own front
    "hessdiff.harness.case": "core",  # a program, a point and a dtype
    "hessdiff.harness.domains": "core",
    # The oracle is exact mathematics over the IR and the catalogue (mpmath jets, no
    # framework, no judging): the truth every layer above measures against. It sits here,
    # below the backends, so that nothing of a framework can leak into it; the generator
    # (search) aims points with it and the judge (checking) compares with it.
    "hessdiff.harness.oracle": "core",
    "hessdiff.harness.exact": "core",  # which values a framework's rounded nodes hit exactly
    # --- backends: one adapter per framework, the registry, the probes.
    "hessdiff.backends": "backends",
    # --- checking: judging one case, and what is known about findings.
    "hessdiff.harness.tolerance": "checking",
    "hessdiff.harness.fdcheck": "checking",
    "hessdiff.harness.findings": "checking",
    # The known-issues baseline is findings data (signatures and their upstream issues):
    # the search consults it (a known fault is not shrunk again) and reports split by it.
    "hessdiff.harness.baseline": "checking",
    "hessdiff.harness.bounds": "checking",
    "hessdiff.harness.engine": "checking",
    "hessdiff.harness.outcomes": "checking",  # running one variant on one case
    "hessdiff.harness.verdicts": "checking",
    "hessdiff.harness.underflow": "checking",
    "hessdiff.harness.kink_judge": "checking",
    # Findings as files: the crash-safe log and JSON-ready values import only findings;
    # the search appends to the log as it finds.
    "hessdiff.harness.json_safe": "checking",
    "hessdiff.harness.findings_jsonl": "checking",
    "hessdiff.harness.screen": "checking",
    "hessdiff.harness.worker": "checking",
    "hessdiff.harness.batch": "checking",
    "hessdiff.harness.judge_pool": "checking",
    "hessdiff.harness.relations": "checking",
    "hessdiff.harness.relation_findings": "checking",  # a relation's result, attributed by the oracle
    "hessdiff.harness.probe_relations": "checking",  # a probe's matrix against the oracle's target
    "hessdiff.harness.pair_relations": "checking",  # two of a framework's own results compared
    "hessdiff.harness.blame": "checking",
    # --- search: generating, running and shrinking cases (Hypothesis lives here).
    "hessdiff.harness.strategies": "search",
    "hessdiff.harness.program_builder": "search",  # a program being grown, and its choices
    "hessdiff.harness.op_args": "search",  # one op and its arguments, drawn
    "hessdiff.harness.aiming": "search",  # intermediates moved onto special values
    "hessdiff.harness.profiles": "search",
    "hessdiff.harness.seeding": "search",
    "hessdiff.harness.minimize": "search",
    "hessdiff.harness.campaign": "search",
    "hessdiff.harness.campaign_records": "search",
    "hessdiff.harness.campaign_stats": "search",
    "hessdiff.harness.steering": "search",
    "hessdiff.harness.remembered": "search",  # a nightly leg's example database, and the cases saved in it
    # --- reporting: findings written, rendered, replayed and triaged.
    "hessdiff.harness.repro": "reporting",
    "hessdiff.harness.repro_check": "reporting",  # a repro.py's comparison rule, prelude and check
    "hessdiff.harness.repro_issue": "reporting",  # a repro.py's docstring: the issue text
    "hessdiff.harness.report": "reporting",
    "hessdiff.harness.plots": "reporting",
    "hessdiff.harness.report_rows": "reporting",
    "hessdiff.harness.summary_md": "reporting",
    "hessdiff.harness.coverage_md": "reporting",
    "hessdiff.harness.junit_xml": "reporting",
    "hessdiff.harness.html_report": "reporting",
    "hessdiff.harness.html_folder": "reporting",
    "hessdiff.harness.html_finding": "reporting",
    "hessdiff.harness.html_overview": "reporting",
    "hessdiff.harness.highlight": "reporting",
    "hessdiff.harness.triage": "reporting",
    "hessdiff.harness.bisect": "reporting",
    "hessdiff.harness.merge": "reporting",
    # --- front door: whole runs, a search and then its reports, for a program or a person.
    "hessdiff.harness.api": "front door",
    "hessdiff.harness.run": "front door",  # ``hessdiff run``/``replay``: campaign, then report
    "hessdiff.harness.baseline_replay": "front door",  # ``hessdiff baseline check``: every entry replayed
    "hessdiff.harness.baseline_record": "front door",  # an entry's repro from one case, by hand
    "hessdiff.harness.baseline_upgrade": "front door",  # ``hessdiff baseline upgrade``: older entries rewritten
    # --- cli: argument parsing and exit codes.
    "hessdiff.harness.cli": "cli",
    "hessdiff.harness.__main__": "cli",
    "hessdiff.__main__": "cli",
}
EXACT: Mapping[str, str] = {
    "hessdiff": "front door",  # the public API, imported lazily from the layers below
    "hessdiff.harness": "core",  # an empty package
}

SEARCH_ONLY = ("hypothesis",)  # imported by the search layer alone


def layer_of(module: str) -> str | None:
    """The layer ``module`` is placed in, or None."""
    if module in EXACT:
        return EXACT[module]
    keys = [k for k in LAYERS if module == k or module.startswith(k + ".")]
    return LAYERS[max(keys, key=len)] if keys else None


def rank(layer: str) -> int:
    return LAYER_NAMES.index(layer)


# --- reading the tree -------------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # a hessdiff module, or the top-level name of another package
    line: int
    type_only: bool  # under ``if TYPE_CHECKING:``: for annotations, never run


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the source folders: dotted name -> file."""
    found: dict[str, Path] = {}
    for folder, package in PACKAGES.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = list(path.relative_to(root / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def imports(module: str, path: Path, known: Mapping[str, Path]) -> Iterator[Import]:
    """The imports in ``path``: of a hessdiff module (resolved to the most specific known
    module: ``from hessdiff.harness import ir`` is ``hessdiff.harness.ir``), or of any
    other package by its top-level name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node, type_only in _walk(tree, False):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, _resolve(alias.name, known), node.lineno, type_only)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parent + ([node.module] if node.module else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield Import(module, full if full in known else _resolve(base, known), node.lineno,
                             type_only)


def _resolve(name: str, known: Mapping[str, Path]) -> str:
    if not name.startswith("hessdiff"):
        return name.split(".", 1)[0]
    while name not in known and "." in name:
        name = name.rpartition(".")[0]
    return name


def _walk(node: ast.AST, type_only: bool) -> Iterator[tuple[ast.AST, bool]]:
    for child in ast.iter_child_nodes(node):
        yield child, type_only
        yield from _walk(child, type_only or _type_checking(child))


def _type_checking(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:``: imported for annotations only, never at run time."""
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def all_imports(root: Path = ROOT) -> tuple[dict[str, Path], list[Import]]:
    known = modules(root)
    return known, [i for module, path in known.items() for i in imports(module, path, known)]


# --- the rules ----------------------------------------------------------------------------


def unplaced(known: Mapping[str, Path]) -> list[str]:
    return [f"{module} ({path.relative_to(path.parents[1])}) is in no layer: add it to LAYERS"
            for module, path in known.items() if layer_of(module) is None]


def upward(found: list[Import]) -> list[str]:
    out = []
    for i in found:
        if not i.target.startswith("hessdiff"):
            continue
        mine, theirs = layer_of(i.importer), layer_of(i.target)
        if mine is not None and theirs is not None and rank(theirs) > rank(mine):
            out.append(f"{i.importer} ({mine}) imports {i.target} ({theirs}) at line {i.line}")
    return out


def search_only(found: list[Import]) -> list[str]:
    return [f"{i.importer} ({layer_of(i.importer)}) imports {i.target} at line {i.line}; only the "
            "search layer may" for i in found if i.target in SEARCH_ONLY and layer_of(i.importer) != "search"]


def by_folder_name(found: list[Import]) -> list[str]:
    return [f"{i.importer} imports {i.target} at line {i.line}: import it as hessdiff.{i.target}"
            for i in found if i.target in PACKAGES and i.target != "hessdiff"]


def cycles(found: list[Import]) -> list[list[str]]:
    """The strongly connected components (of two or more modules, or a module importing
    itself) of the import graph, lazy imports included, ``TYPE_CHECKING`` ones not."""
    graph: dict[str, set[str]] = {}
    for i in found:
        if not i.type_only and i.target.startswith("hessdiff"):
            graph.setdefault(i.importer, set()).add(i.target)
            graph.setdefault(i.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan; the graph is a few dozen modules deep at most
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
            if len(component) > 1 or v in graph[v]:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


# --- the tree as it is ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tree() -> tuple[dict[str, Path], list[Import]]:
    return all_imports()


def test_every_module_is_in_a_layer(tree) -> None:
    known, _ = tree
    assert len(known) > 40 and "hessdiff.harness.engine" in known  # the tree was read
    assert not unplaced(known), "\n".join(unplaced(known))


def test_no_module_imports_a_higher_layer(tree) -> None:
    _, found = tree
    assert not upward(found), "\n".join(upward(found))


def test_the_module_graph_has_no_cycle(tree) -> None:
    _, found = tree
    assert not cycles(found), cycles(found)


def test_hypothesis_is_imported_by_the_search_layer_only(tree) -> None:
    _, found = tree
    assert any(i.target == "hypothesis" for i in found)  # the search layer does
    assert not search_only(found), "\n".join(search_only(found))


def test_hessdiff_is_imported_by_its_installed_name(tree) -> None:
    _, found = tree
    assert not by_folder_name(found), "\n".join(by_folder_name(found))


# --- the rules catch what they are for --------------------------------------------------------


def _tree(tmp_path: Path, files: Mapping[str, str]) -> tuple[dict[str, Path], list[Import]]:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for folder in PACKAGES:
        (tmp_path / folder).mkdir(exist_ok=True)
        (tmp_path / folder / "__init__.py").touch()
    return all_imports(tmp_path)


def test_a_lazy_upward_import_is_a_violation(tmp_path: Path) -> None:
    known, found = _tree(tmp_path, {
        "harness/engine.py": "def f():\n    from hessdiff.harness import report\n",
        "harness/report.py": "",
    })
    assert upward(found) == ["hessdiff.harness.engine (checking) imports hessdiff.harness.report "
                             "(reporting) at line 2"]
    assert not cycles(found)


def test_a_cycle_is_found_lazy_or_not(tmp_path: Path) -> None:
    """As mlx_backend and scenarios/mlx_probes were: one imports the other inside a function."""
    _, found = _tree(tmp_path, {
        "backends/a.py": "from hessdiff.backends import b\n",
        "backends/b.py": "from hessdiff.backends.a import X\n",
        "backends/c.py": "from hessdiff.backends import d\n",
        "backends/d.py": "def f():\n    import hessdiff.backends.c\n",
        "backends/e.py": "from hessdiff.backends import c\n",
    })
    assert cycles(found) == [["hessdiff.backends.a", "hessdiff.backends.b"],
                             ["hessdiff.backends.c", "hessdiff.backends.d"]]


def test_a_new_module_must_be_placed_and_a_package_s_modules_are_its(tmp_path: Path) -> None:
    known, _ = _tree(tmp_path, {"harness/newthing.py": "", "harness/ops/__init__.py": "",
                                "harness/ops/unary.py": "", "harness/oracle/jets.py": ""})
    assert [u.split(" ")[0] for u in unplaced(known)] == ["hessdiff.harness.newthing"]
    assert layer_of("hessdiff.harness.ops.unary") == layer_of("hessdiff.harness.oracle.jets") == "core"


def test_hypothesis_outside_search_and_folder_names_are_caught(tmp_path: Path) -> None:
    _, found = _tree(tmp_path, {
        "harness/engine.py": "import hypothesis.strategies as st\nfrom harness.ir import Program\n",
        "harness/ir.py": "",
        "harness/strategies.py": "from hypothesis import given\n",
    })
    assert search_only(found) == ["hessdiff.harness.engine (checking) imports hypothesis at line 1; "
                                  "only the search layer may"]
    assert by_folder_name(found) == ["hessdiff.harness.engine imports harness at line 2: import it as "
                                     "hessdiff.harness"]


def test_type_checking_imports_make_no_cycle(tmp_path: Path) -> None:
    _, found = _tree(tmp_path, {
        "backends/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                         "    from hessdiff.backends.b import B\n",
        "backends/b.py": "from hessdiff.backends import a\n",
    })
    assert not cycles(found)
    assert [i.type_only for i in found if i.target == "hessdiff.backends.b"] == [True]
