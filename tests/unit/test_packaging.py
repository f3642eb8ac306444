"""The processor Lambda zip (:mod:`xacct_map.setup.packaging`): what it holds, reproducibility, errors."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile

import pytest

from xacct_map.setup import deploy
from xacct_map.setup.packaging import PackagingError, ProcessorSpec, package_processor


def _names(code: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(code)) as archive:
        return archive.namelist()


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "my_job.py"
    path.write_text("import json\n\ndef process(obj):\n    return {'key': obj.key}\n")
    return path


def test_a_file_is_packaged_with_the_sdk_and_a_generated_entry(user_file):
    code = package_processor(f"{user_file}:process")
    names = _names(code)
    assert names == sorted(names)
    assert "my_job.py" in names and "xacct_map_entry.py" in names and "xacct_map/__init__.py" in names
    assert {n for n in names if n.startswith("xacct_map/processor/")} >= {
        "xacct_map/processor/__init__.py",
        "xacct_map/processor/_handler.py",
    }
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    with zipfile.ZipFile(io.BytesIO(code)) as archive:
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in archive.infolist())


def test_the_zip_runs_as_lambda_would_import_it(user_file, tmp_path):
    """Unpacked alone (no xacct_map from this environment), the entry's handler imports and runs."""
    code_dir = tmp_path / "unpacked"
    with zipfile.ZipFile(io.BytesIO(package_processor(f"{user_file}:process"))) as archive:
        archive.extractall(code_dir)
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); import xacct_map_entry, xacct_map;"
        "assert xacct_map.__file__.startswith(sys.argv[1]), xacct_map.__file__;"
        "print(xacct_map_entry.handler.__name__)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-I", "-c", probe, str(code_dir)], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "process"


def test_same_inputs_same_bytes_and_a_change_changes_the_hash(user_file):
    first = package_processor(f"{user_file}:process")
    assert package_processor(f"{user_file}:process") == first
    user_file.write_text(user_file.read_text() + "# edited\n")
    assert deploy.code_sha256(package_processor(f"{user_file}:process")) != deploy.code_sha256(first)


def test_a_package_folder_is_packaged_whole(tmp_path):
    pkg = tmp_path / "jobpkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from jobpkg.sub.work import process\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "work.py").write_text("def process(obj):\n    return None\n")
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__" / "x.pyc").write_bytes(b"junk")
    names = _names(package_processor(f"{pkg}:process"))
    assert {"jobpkg/__init__.py", "jobpkg/sub/work.py"} <= set(names)
    assert not any("__pycache__" in n for n in names)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: f"{d}/missing.py:process", "no such file or folder"),
        (lambda d: f"{d}/my_job.py", "expected FILE.py:FUNCTION"),
        (lambda d: f"{d}/my_job.py:run", "defines no top-level 'run'"),
        (lambda d: f"{d}:process", "a package folder needs an __init__.py"),
    ],
)
def test_bad_specs_are_named(user_file, make, message):
    with pytest.raises(PackagingError, match=message):
        ProcessorSpec.parse(make(user_file.parent))


def test_syntax_errors_are_found_before_deploying(tmp_path):
    (tmp_path / "broken.py").write_text("def process(obj)\n    return 1\n")
    with pytest.raises(PackagingError, match=r"broken.py: syntax error line 1"):
        ProcessorSpec.parse(f"{tmp_path / 'broken.py'}:process")


def test_function_settings_are_validated():
    assert deploy.function_settings(memory=2048, timeout=60, ephemeral_storage=1024) == {
        **deploy.FUNCTION_SETTINGS,
        "MemorySize": 2048,
        "Timeout": 60,
        "EphemeralStorage": {"Size": 1024},
    }
    with pytest.raises(ValueError, match=r"--timeout 901 is outside Lambda's range 1-900"):
        deploy.function_settings(timeout=901)


@pytest.mark.parametrize("command", ["demo", "airflow"])
def test_demo_and_airflow_take_the_processor_options(command, capsys):
    from xacct_map import cli

    assert cli.main([command, "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--processor", "--processor-requirements", "--processor-env", "--source-dir", "--object-size"):
        assert option in out, (command, option)
    assert "--child-execution-type" in out
