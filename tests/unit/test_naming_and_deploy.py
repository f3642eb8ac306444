"""Deterministic names, ASL rendering and function packaging."""

from __future__ import annotations

import io
import json
import re
import zipfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xacct_map.core.naming import execution_arn, execution_name, manifest_key
from xacct_map.setup.deploy import package_function, render_definition
from xacct_map.setup.resources import asl_path

# AWS: 1-80 characters, no whitespace, none of  < > { } [ ] ? * " # % \ ^ | ~ ` $ & , ; : /  nor control characters.
AWS_FORBIDDEN = re.compile(r"[\s<>{}\[\]?*\"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f]")


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=250), st.text(min_size=1, max_size=250))
def test_execution_name_is_valid_and_deterministic(dag_id, run_id):
    name = execution_name(dag_id, run_id)
    assert 1 <= len(name) <= 80
    assert not AWS_FORBIDDEN.search(name)
    assert name == execution_name(dag_id, run_id)


def test_execution_names_differ_for_runs_that_sanitise_alike():
    a = execution_name("dag", "manual__2026-11-26T00:00:00+00:00")
    b = execution_name("dag", "manual__2026-11-26T00-00-00-00-00")
    assert a != b
    long_a, long_b = execution_name("d" * 200, "run-1"), execution_name("d" * 200, "run-2")
    assert long_a != long_b and len(long_a) == 80


def test_manifest_key_and_execution_arn():
    key = manifest_key("my_dag", "scheduled__2026-11-26T00:00:00+00:00")
    assert key.startswith("xacct-map/manifests/my_dag/scheduled__2026-11-26T00-00-00-00-00-") and key.endswith(
        "/manifest.json"
    )
    assert execution_arn("arn:aws:states:eu-west-1:123456789012:stateMachine:m", "n") == (
        "arn:aws:states:eu-west-1:123456789012:execution:m:n"
    )
    with pytest.raises(ValueError, match="is not a state machine ARN"):
        execution_arn("arn:aws:lambda:eu-west-1:123456789012:function:f", "n")


def test_asl_renders_typed_placeholders():
    definition = json.loads(
        render_definition(
            asl_path(),
            {
                "ProcessorFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:p",
                "MaxConcurrency": 40,
                "ToleratedFailurePercentage": 5.0,
                "ResultsBucket": "inventory",
                "ResultsPrefix": "xacct-map/results",
            },
        )
    )
    state = definition["States"]["ProcessManifest"]
    assert state["MaxConcurrency"] == 40 and state["ToleratedFailurePercentage"] == 5.0
    assert state["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    assert state["ItemReader"]["ReaderConfig"]["InputType"] == "JSON"
    task = state["ItemProcessor"]["States"]["ProcessBatch"]
    assert task["Parameters"]["FunctionName"].endswith(":function:p")
    assert "Lambda.TooManyRequestsException" in task["Retry"][0]["ErrorEquals"]
    assert state["ResultWriter"]["Parameters"] == {"Bucket": "inventory", "Prefix": "xacct-map/results"}
    assert "${" not in json.dumps(definition)


def test_asl_placeholder_without_value_is_named():
    with pytest.raises(KeyError, match=r"\$\{MaxConcurrency\}"):
        render_definition(asl_path(), {"ProcessorFunctionArn": "x", "ToleratedFailurePercentage": 0.0})


def test_function_package_has_handler_at_root_and_is_reproducible():
    code = package_function()
    assert code == package_function()
    with zipfile.ZipFile(io.BytesIO(code)) as archive:
        assert {"handler.py", "xacct_map_entry.py", "xacct_map/processor/__init__.py"} <= set(archive.namelist())
        assert "from handler import process as _process" in archive.read("xacct_map_entry.py").decode()
