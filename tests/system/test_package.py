"""The package as users install it: version, dependency ranges, bundled files, provider metadata.

Run by the compatibility matrix against the installed wheel of each target (``scripts/compat_matrix.py``),
and in the development checkout.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import distribution, requires, version
from pathlib import Path

import pytest

import xacct_map
from xacct_map.setup import resources

ROOT = Path(__file__).resolve().parents[2]
INSTALLED = "site-packages" in xacct_map.__file__ and "_bundled" in str(resources.home())
BIN = Path(sys.executable).parent


def test_the_version_is_one_everywhere():
    """The package's constant, the installed metadata, pyproject.toml, the provider info and the CHANGELOG."""
    project_version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), flags=re.M).group(1)
    assert xacct_map.__version__ == version("xacct-map") == project_version
    assert xacct_map.get_provider_info()["versions"] == [project_version]
    assert f"## {project_version}" in (ROOT / "CHANGELOG.md").read_text()


def test_dependencies_are_ranges_never_pins():
    """A provider must never move the Airflow it is installed into: no == anywhere, Airflow 3 below 4."""
    declared = requires("xacct-map")
    assert declared and not [r for r in declared if "==" in r.split(";")[0]], declared
    (airflow,) = [r for r in declared if re.match(r"apache-airflow\s*[<>=!]", r)]
    assert re.search(r">=\s*3\.", airflow) and "<4" in airflow.replace(" ", ""), airflow
    local = [r for r in declared if re.search(r"extra\s*==\s*['\"]local['\"]", r)]
    assert any(r.startswith("moto") for r in local), declared


def test_the_bundled_files_are_the_sources():
    """asl/, functions/ and dags/ ship in the package: byte for byte the repository's top-level folders."""
    sources = sorted(
        p.relative_to(ROOT)
        for folder in ("asl", "functions", "dags", "examples")
        for p in (ROOT / folder).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    assert sources and {"asl", "functions", "dags", "examples"} == {p.parts[0] for p in sources}
    for relative in sources:
        assert (resources.home() / relative).read_bytes() == (ROOT / relative).read_bytes(), relative
    assert resources.asl_path().name == "distributed_map.asl.json" and resources.asl_path("flat").is_file()
    assert (resources.processor_dir() / "handler.py").is_file()
    assert (resources.dags_dir() / "xacct_distributed_map.py").is_file()
    assert (resources.examples_dir() / "copy_objects.py").is_file()


def test_the_processor_sdk_and_the_price_table_ship_in_the_package():
    """``deploy --processor`` zips the SDK from the installed package; the estimate reads its price table."""
    from xacct_map.core.estimate import PRICES_FILE, load_prices
    from xacct_map.setup.packaging import package_processor

    assert (resources.processor_sdk_dir() / "_handler.py").is_file()
    assert PRICES_FILE.is_file() and load_prices()["as_of"]
    assert package_processor(f"{resources.examples_dir() / 'validate_records.py'}:process")


@pytest.mark.skipif(not INSTALLED, reason="an editable install reads the checkout itself")
def test_an_installed_package_reads_its_own_copy_and_mounts_no_plugins_folder():
    assert resources.home() == Path(xacct_map.__file__).parent / "_bundled"
    assert resources.plugins_dir() is None  # the UI plugin comes through the entry point


def test_xacct_map_home_overrides_and_a_wrong_one_says_what_to_do(tmp_path, monkeypatch):
    shutil.copytree(resources.home() / "asl", tmp_path / "asl")
    monkeypatch.setenv("XACCT_MAP_HOME", str(tmp_path))
    assert resources.asl_path("flat") == tmp_path / "asl" / "distributed_map_flat.asl.json"
    monkeypatch.setenv("XACCT_MAP_HOME", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="XACCT_MAP_HOME"):
        resources.asl_path()


def _airflow(*args: str) -> str:
    # Unit-test mode logs a line to stdout, before the JSON.
    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW__CORE__UNIT_TEST_MODE"}
    proc = subprocess.run([str(BIN / "airflow"), *args], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Airflow 3.0 logs to stdout too: the JSON is the last line.
    return proc.stdout.strip().splitlines()[-1]


def test_airflow_providers_get_and_links_show_every_part():
    (info,) = json.loads(_airflow("providers", "get", "xacct-map", "--full", "-o", "json"))
    assert info["package-name"] == "xacct-map" and info["versions"] == [xacct_map.__version__]
    assert info["hooks"][0]["python-modules"] == ["xacct_map.hooks"]
    assert info["operators"][0]["python-modules"] == ["xacct_map.operators"]
    assert info["sensors"][0]["python-modules"] == ["xacct_map.sensors"]
    assert info["triggers"][0]["python-modules"] == ["xacct_map.triggers"]
    assert info["plugins"] == [{"name": "xacct_map", "plugin-class": "xacct_map.ui.XacctMapPlugin"}]
    assert info["integrations"][0]["how-to-guide"]
    # Every module and class the metadata names imports.
    import importlib

    for kind in ("operators", "sensors", "triggers"):
        importlib.import_module(info[kind][0]["python-modules"][0])
    links = {row["extra_link_class_name"] for row in json.loads(_airflow("providers", "links", "-o", "json"))}
    assert {"xacct_map.links.MapRunLink", "xacct_map.links.ManifestObjectLink"} <= links


def test_commands_work_from_any_directory(tmp_path):
    """No command reads files relative to the working directory or the checkout."""
    proc = subprocess.run(
        [
            str(BIN / "xacct-map"),
            "policy",
            "--source-bucket",
            "their-data",
            "--source-account",
            "111111111111",
            "--pipeline-account",
            "222222222222",
            "--only",
            "source_bucket_policy",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "arn:aws:s3:::their-data" in proc.stdout
    assert distribution("xacct-map").entry_points.select(group="console_scripts", name="xacct-map")


def test_readme_lists_the_versions_ci_tests():
    """README's "Supported versions" table is the compatibility matrix CI runs."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("compat_matrix", ROOT / "scripts" / "compat_matrix.py")
    matrix = sys.modules["compat_matrix"] = importlib.util.module_from_spec(spec)  # dataclasses look it up
    spec.loader.exec_module(matrix)
    readme = (ROOT / "README.md").read_text()
    assert matrix.with_table(readme) == readme, "run: python scripts/compat_matrix.py table --write"
    for target in matrix.MATRIX:
        assert target.locked or target.constraints.is_file(), target
