"""``xacct-map deploy --processor`` / ``--processor-arn`` / ``--child-execution-type`` against the emulator.

The user's function lives in a temporary folder outside the repository; it is packaged with the SDK,
deployed, deployed again (nothing uploaded), invoked through the emulator's Lambda runtime and run by
the Distributed Map with STANDARD and EXPRESS children.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import time
import zipfile
from pathlib import Path

import pytest

from xacct_map import cli
from xacct_map.local.emulator import PIPELINE_ACCOUNT, SOURCE_ACCOUNT
from xacct_map.setup import deploy
from xacct_map.setup.packaging import package_processor

ROOT = Path(__file__).resolve().parents[2]
USER_CODE = """
import json

def process(obj):
    with obj.open() as body:
        data = body.read()
    if b"poison" in data:
        raise ValueError("poisoned object")
    return {"length": len(data), "account": obj.context.source_account, "execution": obj.context.execution}
"""


def _deploy(aws, pipeline, *extra: str, name: str = "xacct-map-proc-test") -> tuple[int, dict | str]:
    argv = [
        "deploy",
        *("--source-bucket", pipeline.source_bucket, "--source-account", SOURCE_ACCOUNT),
        *("--prefix", pipeline.source_prefix, "--region", "us-east-1", "--endpoint-url", aws.endpoint_url),
        *("--inventory-bucket", pipeline.inventory_bucket, "--state-machine", name, "--function", name),
        *("--processor-role", name, "--state-machine-role", f"{name}-sm", "--max-concurrency", "4"),
        *extra,
        "--json",
    ]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, (json.loads(out.getvalue().strip().splitlines()[-1]) if code == 0 else err.getvalue())


@pytest.fixture(scope="module")
def user_function(tmp_path_factory):
    folder = tmp_path_factory.mktemp("user-code")
    (folder / "my_processor.py").write_text(USER_CODE)
    return f"{folder / 'my_processor.py'}:process"


def _run_map(aws, pipeline, machine_arn: str, keys: list[str], batch: int = 5, timeout: float = 90) -> dict:
    """Start the state machine on a batched manifest of ``keys`` (as the DAG would) and wait for it."""
    s3, sfn = aws.client("s3"), aws.client("stepfunctions")
    items = [
        {"bucket": pipeline.source_bucket, "keys": keys[i : i + batch], "bytes": 0} for i in range(0, len(keys), batch)
    ]
    key = f"xacct-map/manifests/proc-test/{time.monotonic_ns()}.json"
    s3.put_object(Bucket=pipeline.inventory_bucket, Key=key, Body=json.dumps(items).encode())
    body = {
        "manifest": {"bucket": pipeline.inventory_bucket, "key": key},
        "source": {"bucket": pipeline.source_bucket, "account_id": SOURCE_ACCOUNT, "region": "us-east-1"},
    }
    arn = sfn.start_execution(stateMachineArn=machine_arn, name=f"t{time.monotonic_ns()}", input=json.dumps(body))[
        "executionArn"
    ]
    deadline = time.monotonic() + timeout
    while (described := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, f"{arn} still RUNNING after {timeout}s"
        time.sleep(0.5)
    return described


def _source_keys(aws, pipeline) -> list[str]:
    listed = aws.client("s3").list_objects_v2(Bucket=pipeline.source_bucket, Prefix=pipeline.source_prefix)
    return [o["Key"] for o in listed["Contents"]]


def test_user_function_deploys_once_and_a_second_deploy_uploads_nothing(local_aws, user_function):
    aws, pipeline = local_aws
    options = ("--processor", user_function, "--memory", "512", "--timeout", "60", "--ephemeral-storage", "1024")
    code, first = _deploy(aws, pipeline, *options, "--processor-env", "MODE=test")
    assert code == 0, first
    assert "created function xacct-map-proc-test" in first["changes"]
    code, second = _deploy(aws, pipeline, *options, "--processor-env", "MODE=test")
    assert code == 0 and second["changes"] == []  # same zip, same CodeSha256: nothing uploaded
    config = aws.client("lambda").get_function(FunctionName="xacct-map-proc-test")["Configuration"]
    assert config["CodeSha256"] == deploy.code_sha256(package_processor(user_function))
    assert (config["Handler"], config["MemorySize"], config["Timeout"]) == ("xacct_map_entry.handler", 512, 60)
    assert config["EphemeralStorage"] == {"Size": 1024}
    assert config["Environment"]["Variables"] == {"MODE": "test", "SOURCE_ACCOUNT_ID": SOURCE_ACCOUNT}


def test_the_deployed_function_runs_on_every_object_and_a_raising_one_is_named(local_aws, user_function):
    aws, pipeline = local_aws
    assert _deploy(aws, pipeline, "--processor", user_function)[0] == 0
    keys = _source_keys(aws, pipeline)
    execution = _run_map(
        aws, pipeline, f"arn:aws:states:us-east-1:{PIPELINE_ACCOUNT}:stateMachine:xacct-map-proc-test", keys
    )
    assert execution["status"] == "SUCCEEDED"
    runs = [i for i in aws.runtime.invocations if i.function_name == "xacct-map-proc-test" and i.ok]
    results = {r["key"]: r["result"] for i in runs for r in i.result["results"]}
    assert set(results) == set(keys) and all(r["account"] == SOURCE_ACCOUNT for r in results.values())
    # The run context names the parent execution (the state machine passes $$.Execution.Id).
    assert {r["execution"] for r in results.values()} == {execution["executionArn"]}

    poisoned = pipeline.source_prefix + "poison/pill.txt"
    aws.client("s3", SOURCE_ACCOUNT).put_object(Bucket=pipeline.source_bucket, Key=poisoned, Body=b"poison")
    try:
        lmb = aws.client("lambda")
        event = {
            "bucket": pipeline.source_bucket,
            "keys": [keys[0], poisoned],
            "source": {"account_id": SOURCE_ACCOUNT},
        }
        response = lmb.invoke(FunctionName="xacct-map-proc-test", Payload=json.dumps(event).encode())
        error = json.loads(response["Payload"].read())
        assert response["FunctionError"] == "Unhandled" and error["errorType"] == "ObjectsFailed"
        assert (
            f"1 of 2 objects failed: s3://{pipeline.source_bucket}/{poisoned}: ValueError: poisoned object"
            in (error["errorMessage"])
        )
    finally:
        aws.client("s3", SOURCE_ACCOUNT).delete_object(Bucket=pipeline.source_bucket, Key=poisoned)


def test_express_children_render_and_run(local_aws, user_function):
    aws, pipeline = local_aws
    code, result = _deploy(aws, pipeline, "--processor", user_function, "--child-execution-type", "EXPRESS")
    assert code == 0 and result["changes"] == ["updated state machine xacct-map-proc-test"]
    definition = json.loads(
        aws.client("stepfunctions").describe_state_machine(stateMachineArn=result["state_machine_arn"])["definition"]
    )
    config = definition["States"]["ProcessManifest"]["ItemProcessor"]["ProcessorConfig"]
    assert config == {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"}
    assert _deploy(aws, pipeline, "--processor", user_function, "--child-execution-type", "EXPRESS")[1]["changes"] == []
    keys = _source_keys(aws, pipeline)
    assert _run_map(aws, pipeline, result["state_machine_arn"], keys)["status"] == "SUCCEEDED"


def test_processor_arn_invokes_an_existing_function_without_deploying_one(local_aws):
    aws, pipeline = local_aws
    existing = pipeline.function_arn  # the emulator's own processor
    code, result = _deploy(aws, pipeline, "--processor-arn", existing, name="xacct-map-arn-test")
    assert code == 0, result
    assert result["function_arn"] == existing and result["processor_role_arn"] is None
    lmb, iam = aws.client("lambda"), aws.client("iam")
    assert not any(f["FunctionName"] == "xacct-map-arn-test" for f in lmb.list_functions()["Functions"])
    policy = iam.get_role_policy(RoleName="xacct-map-arn-test-sm", PolicyName="xacct-map-arn-test-sm-policy")
    document = deploy._policy_json(policy["PolicyDocument"])
    (invoke,) = [s for s in document["Statement"] if s["Sid"] == "XacctMapInvokeProcessor"]
    assert invoke["Resource"] == [existing, f"{existing}:*"]
    definition = json.loads(
        aws.client("stepfunctions").describe_state_machine(stateMachineArn=result["state_machine_arn"])["definition"]
    )
    task = definition["States"]["ProcessManifest"]["ItemProcessor"]["States"]["ProcessBatch"]
    assert task["Parameters"]["FunctionName"] == existing
    assert _deploy(aws, pipeline, "--processor-arn", existing, name="xacct-map-arn-test")[1]["changes"] == []


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--processor", "/nowhere/job.py:process"), "--processor /nowhere/job.py: no such file or folder"),
        (("--processor-arn", "arn:aws:lambda:us-east-1:123456789012:function:f:3"), "unqualified Lambda function"),
        (("--memory", "64"), "--memory: 64 is out of range: give an integer from 128 to 10,240"),
        (("--processor-env", "no-equals"), "expected NAME=value"),
    ],
)
def test_bad_processor_options_are_named_and_change_nothing(local_aws, extra, message):
    aws, pipeline = local_aws
    code, err = _deploy(aws, pipeline, *extra, name="xacct-map-bad-test")
    assert code in (1, 2) and message in err
    names = [f["FunctionName"] for f in aws.client("lambda").list_functions()["Functions"]]
    assert "xacct-map-bad-test" not in names


def _installer() -> str | None:
    for candidate in (ROOT / ".tools" / "bin" / "uv", shutil.which("uv")):
        if candidate and Path(candidate).is_file():
            return f"{candidate} pip"
    return None


def _wheel(folder: Path) -> None:
    """A pure-Python wheel, written by hand: no index, no network."""
    import base64
    import hashlib

    files = {
        "tinyfmt/__init__.py": b"def shout(s):\n    return s.upper() + '!'\n",
        "tinyfmt-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinyfmt\nVersion: 1.0\n",
        "tinyfmt-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    lines = [
        f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}"
        for n, d in files.items()
    ]
    with zipfile.ZipFile(folder / "tinyfmt-1.0-py3-none-any.whl", "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr("tinyfmt-1.0.dist-info/RECORD", "\n".join(lines) + "\ntinyfmt-1.0.dist-info/RECORD,,\n")


def test_requirements_are_installed_into_the_zip_and_import_in_the_sandbox(local_aws, tmp_path, monkeypatch):
    installer = _installer()
    if installer is None:
        pytest.skip("neither uv (.tools/bin/uv, PATH) nor pip is available to install requirements")
    monkeypatch.setenv("XACCT_MAP_PIP", installer)
    aws, pipeline = local_aws
    _wheel(tmp_path)
    (tmp_path / "requirements.txt").write_text(f"--no-index\n--find-links {tmp_path}\ntinyfmt==1.0\n")
    (tmp_path / "shouty.py").write_text("import tinyfmt\n\ndef process(obj):\n    return tinyfmt.shout(obj.key[-3:])\n")
    spec, requirements = f"{tmp_path / 'shouty.py'}:process", str(tmp_path / "requirements.txt")
    code = package_processor(spec, requirements)
    assert code == package_processor(spec, requirements)  # reproducible with installed requirements too
    with zipfile.ZipFile(io.BytesIO(code)) as archive:
        assert "tinyfmt/__init__.py" in archive.namelist()
        assert not any(n.endswith(("uv_cache.json", "INSTALLER", ".lock")) for n in archive.namelist())
    args = ("--processor", spec, "--processor-requirements", requirements)
    assert _deploy(aws, pipeline, *args, name="xacct-map-req-test")[0] == 0
    key = _source_keys(aws, pipeline)[0]
    response = aws.client("lambda").invoke(
        FunctionName="xacct-map-req-test", Payload=json.dumps({"bucket": pipeline.source_bucket, "keys": [key]})
    )
    assert json.loads(response["Payload"].read())["results"] == [{"key": key, "result": key[-3:].upper() + "!"}]
    # Without the requirement, the import fails in the sandbox as it would on AWS, naming the module.
    assert _deploy(aws, pipeline, "--processor", spec, name="xacct-map-req-test")[0] == 0
    response = aws.client("lambda").invoke(
        FunctionName="xacct-map-req-test", Payload=json.dumps({"bucket": pipeline.source_bucket, "keys": [key]})
    )
    error = json.loads(response["Payload"].read())
    assert error["errorType"] == "Runtime.ImportModuleError" and "No module named 'tinyfmt'" in error["errorMessage"]


def test_the_lambda_deadline_is_real_locally(local_aws, tmp_path):
    """--timeout 2: the SDK stops taking objects before it (DeadlineReached, naming them); a function
    that outlives it is killed as Lambda kills it (Sandbox.Timedout)."""
    aws, pipeline = local_aws
    (tmp_path / "slow.py").write_text(
        "import time\n\ndef process(obj):\n    time.sleep(5 if obj.key.endswith('stuck') else 0.4)\n"
    )
    args = ("--processor", f"{tmp_path / 'slow.py'}:process", "--timeout", "2")
    assert _deploy(aws, pipeline, *args, "--processor-env", "XACCT_MAP_CONCURRENCY=1", name="xacct-map-slow")[0] == 0
    lmb = aws.client("lambda")
    keys = [f"k{i}" for i in range(10)]
    started = time.monotonic()
    response = lmb.invoke(FunctionName="xacct-map-slow", Payload=json.dumps({"bucket": "b", "keys": keys}))
    error = json.loads(response["Payload"].read())
    assert error["errorType"] == "DeadlineReached", error
    assert "objects not started before the Lambda deadline" in error["errorMessage"]
    left = int(re.match(r"(\d+) of 10 objects not started", error["errorMessage"]).group(1))
    assert 3 <= left <= 8 and f"{10 - left} of 10 processed" in error["errorMessage"]
    assert f": s3://b/k{10 - left}; " in error["errorMessage"]  # the first one left is named
    assert time.monotonic() - started < 2.5
    response = lmb.invoke(FunctionName="xacct-map-slow", Payload=json.dumps({"bucket": "b", "keys": ["stuck"]}))
    error = json.loads(response["Payload"].read())
    assert error == {"errorType": "Sandbox.Timedout", "errorMessage": "Task timed out after 2.00 seconds"}
    # The killed sandbox was replaced: the function still answers.
    response = lmb.invoke(FunctionName="xacct-map-slow", Payload=json.dumps({"bucket": "b", "keys": ["k0"]}))
    assert json.loads(response["Payload"].read())["objects"] == 1
