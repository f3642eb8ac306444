"""Shared fixtures: a throwaway Airflow home, and one embedded two-account AWS for the session."""

from __future__ import annotations

import os
import tempfile

# Before anything imports Airflow: it reads AIRFLOW_HOME once.
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="xacct-map-test-airflow-")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
for _name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL"):
    os.environ.pop(_name, None)
os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")

import datetime  # noqa: E402

import pytest  # noqa: E402

from task_fixtures import FakeTaskInstance  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives a real Airflow UI in headless Chromium")
    if os.environ.get("XACCT_MAP_EXPECT_INSTALLED"):
        # The compatibility matrix tests the installed wheel: a checkout on sys.path would hide it.
        import xacct_map

        if "site-packages" not in xacct_map.__file__:
            raise pytest.UsageError(
                f"XACCT_MAP_EXPECT_INSTALLED: xacct_map comes from {xacct_map.__file__}, not from an installed wheel"
            )


@pytest.fixture(scope="module")
def local_aws():
    """moto's server on loopback with both accounts deployed (40 objects, awkward keys included).

    Module-scoped: moto keeps its state in process-wide backends, which any test using the
    in-process ``mock_aws`` resets; a fresh deployment per module keeps modules independent.
    """
    from xacct_map.local.emulator import LocalAws

    with LocalAws(lambda_workers=2) as aws:
        pipeline = aws.deploy(objects=40)
        os.environ.update(aws.airflow_environment(pipeline))
        yield aws, pipeline


@pytest.fixture
def run_context():
    """``run_context(run_id)``: the slice of an Airflow context the operators read."""
    from airflow.sdk import DAG

    def make(run_id: str = "manual__2026-11-26T00:00:00+00:00", dag_id: str = "test_dag") -> dict:
        dag = DAG(dag_id, schedule=None, start_date=datetime.datetime(2026, 1, 1))
        return {"dag": dag, "run_id": run_id, "ti": FakeTaskInstance(), "task_instance": FakeTaskInstance()}

    return make
