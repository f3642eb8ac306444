"""The one-way dependencies of ARCHITECTURE.md, checked on the source (``ast``; nothing is imported).

Every rule is a function returning its violations, so a break names the module, the line and the
import; ``test_each_rule_catches_a_violation`` feeds each rule a module that breaks it.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "plugins" / "xacct_map"
SHELLS = {"operators", "sensors", "triggers", "links", "hooks", "ui", "version_compat", "lineage", "assets", "metrics"}
_MODULE_NAME = re.compile(r"xacct_map(\.\w+)+")


@dataclass(frozen=True)
class Import:
    target: str  # dotted module imported (for ``from a import b``: ``a.b`` when that is a module, else ``a``)
    line: int
    in_function: bool  # inside a def (a lazy import) rather than at module level
    by_name: bool = False  # a string constant naming a module (importlib, COMMAND_MODULES)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "_bundled" not in p.parts}


def imports_of(source: str, name: str, is_package: bool = False, known=MODULES) -> list[Import]:
    """Every import in ``source`` (module ``name``), at any depth, plus strings that name one of ours."""
    found: list[Import] = []
    package = name if is_package else name.rpartition(".")[0]

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend(Import(alias.name, child.lineno, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in child.names:
                    sub = f"{base}.{alias.name}"
                    found.append(Import(sub if sub in known else base, child.lineno, in_function))
            elif (
                isinstance(child, ast.Constant) and isinstance(child.value, str) and _MODULE_NAME.fullmatch(child.value)
            ):
                found.append(Import(child.value, child.lineno, in_function, by_name=True))
            visit(child, nested)

    visit(ast.parse(source), False)
    return found


def part_of(name: str) -> str:
    """``core``, ``_engine``, ``setup``, ``cli``, ``local``, ``shell`` or ``root`` (the package itself)."""
    parts = name.split(".")
    if len(parts) == 1:
        return "root"
    return parts[1] if parts[1] in {"core", "_engine", "setup", "cli", "local", "processor"} else "shell"


def _is(target: str, prefix: str) -> bool:
    return target == prefix or target.startswith(prefix + ".")


# -- the rules: (module name, its imports) -> violations --------------------------------------------


def no_airflow_anywhere(name: str, imports: list[Import]) -> list[str]:
    """core/, _engine/ and the package root import no airflow, not even lazily or for type checking."""
    if part_of(name) not in {"core", "_engine", "root", "processor"}:
        return []
    return [f"{name}:{i.line} imports {i.target}" for i in imports if _is(i.target, "airflow")]


def engine_is_self_contained(name: str, imports: list[Import]) -> list[str]:
    """_engine/ imports nothing of xacct_map outside _engine/."""
    if part_of(name) != "_engine":
        return []
    return [
        f"{name}:{i.line} imports {i.target}"
        for i in imports
        if _is(i.target, "xacct_map") and not _is(i.target, "xacct_map._engine")
    ]


def processor_is_self_contained(name: str, imports: list[Import]) -> list[str]:
    """processor/ (shipped inside the Lambda zip) imports nothing of xacct_map outside processor/."""
    if part_of(name) != "processor":
        return []
    return [
        f"{name}:{i.line} imports {i.target}"
        for i in imports
        if _is(i.target, "xacct_map") and not _is(i.target, "xacct_map.processor")
    ]


def core_uses_only_core_and_the_engine(name: str, imports: list[Import]) -> list[str]:
    """core/ imports of ours: core/, the _engine package, and ``xacct_map`` itself (``__version__``)."""
    if part_of(name) != "core":
        return []
    allowed = ("xacct_map", "xacct_map._engine")
    return [
        f"{name}:{i.line} imports {i.target}"
        for i in imports
        if _is(i.target, "xacct_map") and i.target not in allowed and not _is(i.target, "xacct_map.core")
    ]


def engine_entered_by_its_package_only(name: str, imports: list[Import]) -> list[str]:
    """Outside _engine/, the engine is ``xacct_map._engine`` (its re-exports), never one of its modules."""
    if part_of(name) == "_engine":
        return []
    return [
        f"{name}:{i.line} imports {i.target}"
        for i in imports
        if _is(i.target, "xacct_map._engine") and i.target != "xacct_map._engine"
    ]


def setup_uses_core_only(name: str, imports: list[Import]) -> list[str]:
    """setup/ imports of ours: setup/ and core/; Airflow only inside a function."""
    if part_of(name) != "setup":
        return []
    return [
        f"{name}:{i.line} imports {i.target}"
        for i in imports
        if (_is(i.target, "xacct_map") and part_of(i.target) not in {"setup", "core"})
        or (_is(i.target, "airflow") and not i.in_function)
    ]


def local_only_from_cli(name: str, imports: list[Import]) -> list[str]:
    """Nothing in the package imports local/ (or names it) except local/ itself and cli/."""
    if part_of(name) in {"local", "cli"}:
        return []
    return [f"{name}:{i.line} imports {i.target}" for i in imports if _is(i.target, "xacct_map.local")]


def nothing_below_imports_cli_or_shells(name: str, imports: list[Import]) -> list[str]:
    """core/, _engine/ and setup/ never reach up into cli/ or the Airflow shells; shells never into cli/."""
    above = {
        "core": {"cli", "shell", "local"},
        "processor": {"cli", "shell", "local"},
        "_engine": {"cli", "shell", "local"},
        "setup": {"cli", "shell", "local"},
        "shell": {"cli", "local"},
    }.get(part_of(name), set())
    return [
        f"{name}:{i.line} imports {i.target}"
        for i in imports
        if _is(i.target, "xacct_map") and i.target != "xacct_map" and part_of(i.target) in above
    ]


RULES = [
    no_airflow_anywhere,
    engine_is_self_contained,
    processor_is_self_contained,
    core_uses_only_core_and_the_engine,
    engine_entered_by_its_package_only,
    setup_uses_core_only,
    local_only_from_cli,
    nothing_below_imports_cli_or_shells,
]


def _imports(name: str) -> list[Import]:
    path = MODULES[name]
    return imports_of(path.read_text(), name, is_package=path.name == "__init__.py")


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.__name__)
def test_rule_holds_for_every_module(rule):
    assert len(MODULES) > 30 and {"xacct_map.core", "xacct_map._engine"} <= set(MODULES)
    violations = [v for name in MODULES for v in rule(name, _imports(name))]
    assert not violations, f"{rule.__doc__}\n" + "\n".join(violations)


def test_command_modules_import_nothing_heavy_at_module_level():
    """``xacct-map --help`` imports every command module: Airflow and moto only inside the command."""
    (commands,) = [
        list(ast.literal_eval(node.value).values())
        for node in ast.parse(MODULES["xacct_map.cli"].read_text()).body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "COMMANDS"
    ]
    assert "xacct_map.cli.manifest" in commands and all(c in MODULES for c in commands)
    heavy = [
        f"{c}:{i.line} imports {i.target}"
        for c in commands
        for i in _imports(c)
        if not i.in_function and (_is(i.target, "airflow") or _is(i.target, "moto"))
    ]
    assert not heavy


BREAKS = {
    no_airflow_anywhere: ("xacct_map.core.x", "def f():\n    from airflow.sdk import Context\n"),
    engine_is_self_contained: ("xacct_map._engine.x", "from xacct_map.core.naming import execution_name\n"),
    processor_is_self_contained: ("xacct_map.processor.x", "from xacct_map import __version__\n"),
    core_uses_only_core_and_the_engine: ("xacct_map.core.x", "from xacct_map.setup import policies\n"),
    engine_entered_by_its_package_only: ("xacct_map.core.listing", "from xacct_map._engine.coordinator import X\n"),
    setup_uses_core_only: ("xacct_map.setup.x", "from airflow.models import DAG\n"),
    local_only_from_cli: ("xacct_map.operators", 'MODULES = ("xacct_map.local.demo",)\n'),
    nothing_below_imports_cli_or_shells: ("xacct_map.core.x", "def f():\n    from xacct_map.sensors import S\n"),
}


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.__name__)
def test_each_rule_catches_a_violation(rule):
    name, source = BREAKS[rule]
    known = set(MODULES) | {"xacct_map.setup.policies"}
    assert rule(name, imports_of(source, name, known=known)), f"{rule.__name__} let this through: {source!r}"


def test_architecture_md_names_every_part():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    subpackages = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))
    assert {"core", "_engine", "setup", "cli", "local"} <= set(subpackages)
    missing = [f"{d}/" for d in subpackages if f"`{d}/" not in text]
    missing += [f"{m}.py" for m in sorted(SHELLS) if f"{m}.py" not in text]
    missing += [d for d in ("dags/", "asl/", "functions/", "benchmarks/", "tests/") if f"`{d}" not in text]
    assert not missing, f"ARCHITECTURE.md does not mention {missing}"
    shells = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert shells == SHELLS, "a new top-level module is an Airflow shell: add it to SHELLS and ARCHITECTURE.md"


MAX_FUNCTION_LINES = 80


def test_no_function_in_the_package_is_longer_than_80_lines():
    """Long functions hide their steps: split them into named ones (signature and docstring count)."""
    long = [
        f"{path.relative_to(path.parents[1])}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in MODULES.values()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, long
