"""scripts/compat_matrix.py's run: the older targets beside the whole suite, and every failure (pytest's
exit 5, "no tests collected", too) failing the run, in the foreground or beside it. The installs,
tests and demos are stood in for by short shell commands run through the script's own ``sh``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def matrix(tmp_path, monkeypatch):
    """The module, with ``build``, ``create_env``, ``run_demo`` and ``versions`` stubbed and every test
    command a ``bash -c`` that exits with ``matrix.exit_codes.get(<target or target-beside>, 0)``."""
    spec = importlib.util.spec_from_file_location("compat_matrix", ROOT / "scripts" / "compat_matrix.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "compat_matrix", module)  # dataclasses look it up
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "ROOT", tmp_path)
    monkeypatch.setattr(module, "ENVS", tmp_path / ".venvs")
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    module.exit_codes = {}
    module.ran = []

    def run_tests(target, python, out=module.CONSOLE, *, beside=False):
        name = target.name + ("-beside" if beside else "")
        module.ran.append((name, out.nice))
        module.sh("bash", "-c", f"echo {name}; exit {module.exit_codes.get(name, 0)}", out=out)

    monkeypatch.setattr(module, "build", lambda: tmp_path / "xacct_map.whl")
    monkeypatch.setattr(module, "create_env", lambda target, wheel, out=module.CONSOLE: f"/{target.name}/python")
    monkeypatch.setattr(module, "run_tests", run_tests)
    monkeypatch.setattr(module, "run_demo", lambda python, out=module.CONSOLE: module.ran.append((python, out.nice)))
    monkeypatch.setattr(module, "versions", lambda python: {"python": "3.x"})
    return module


def test_the_older_targets_and_the_newest_s_slow_files_run_beside_the_whole_suite(matrix, capsys):
    assert matrix.run([]) == 0
    assert ("newest", 0) in matrix.ran  # the whole suite, in front
    beside = [name for name, nice in matrix.ran if nice == matrix.BESIDE_NICE]
    assert beside == ["oldest", "/oldest/python", "airflow-3.1", "/airflow-3.1/python", "newest-beside"]
    out = capsys.readouterr().out
    assert "=== oldest (ran beside; .venvs/oldest.log) ===" in out and "every target passed" in out


@pytest.mark.parametrize("failing", ["newest", "newest-beside", "oldest"])
def test_no_tests_collected_anywhere_fails_the_run(matrix, failing):
    matrix.exit_codes[failing] = 5
    assert matrix.main(["run"]) == 1


def test_a_narrowed_run_keeps_the_whole_suite_in_one_pytest(matrix, monkeypatch):
    monkeypatch.setenv("PYTEST_ADDOPTS", "-k sensor")
    assert matrix.run(["newest"]) == 0
    assert [name for name, _ in matrix.ran] == ["newest"]
