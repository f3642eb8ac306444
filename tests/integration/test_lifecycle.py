"""Execution lifecycle: attach/redrive/fail on an existing execution, deferrable waiting, stop on kill,
actionable failures, console links."""

from __future__ import annotations

import asyncio
import datetime
import json
import time

import pytest
from botocore.stub import Stubber

from xacct_map.core.map_run import MapRunSnapshot, failure_details
from xacct_map.core.naming import execution_arn, execution_name
from xacct_map.links import ManifestObjectLink, MapRunLink
from xacct_map.local.emulator import SOURCE_ACCOUNT
from xacct_map.operators import StartDistributedMapOperator
from xacct_map.sensors import DistributedMapSensor
from xacct_map.triggers import DistributedMapTrigger
from xacct_map.version_compat import AirflowException, AirflowFailException, AirflowRescheduleException, TaskDeferred

WAIT_MACHINE = {"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 60, "End": True}}}


@pytest.fixture(scope="module")
def waiting_machine(local_aws):
    """A state machine whose executions stay RUNNING for a minute."""
    aws, pipeline = local_aws
    sfn = aws.client("stepfunctions")
    return sfn.create_state_machine(
        name="xacct-map-test-wait",
        definition=json.dumps(WAIT_MACHINE),
        roleArn=f"arn:aws:iam::{pipeline.pipeline_account}:role/xacct-map-state-machine",
    )["stateMachineArn"]


def _start_waiting(aws, machine, name):
    return aws.client("stepfunctions").start_execution(stateMachineArn=machine, name=name, input="{}")["executionArn"]


def _status(aws, arn):
    return aws.client("stepfunctions").describe_execution(executionArn=arn)["status"]


def _status_once_stopped(aws, arn, within: float = 10.0):
    """The status once the execution has left RUNNING (bounded): after a StopExecution the emulator's
    execution thread records ABORTED a moment after the call returns (seen RUNNING right after it on a
    loaded box; AWS answers once it is stopped), and an execution on a missing manifest fails soon."""
    deadline = time.monotonic() + within
    while (status := _status(aws, arn)) == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.05)
    return status


def _sensor(arn, **kwargs):
    return DistributedMapSensor(
        task_id="wait_for_map_run", execution_arn=arn, aws_conn_id="xacct_map_pipeline", poke_interval=0.2, **kwargs
    )


def _run_manifest(aws, pipeline, name, batches):
    s3, sfn = aws.client("s3"), aws.client("stepfunctions")
    s3.put_object(Bucket=pipeline.inventory_bucket, Key=f"tests/{name}.json", Body=json.dumps(batches).encode())
    return sfn.start_execution(
        stateMachineArn=pipeline.state_machine_arn,
        name=name,
        input=json.dumps(
            {
                "manifest": {"bucket": pipeline.inventory_bucket, "key": f"tests/{name}.json"},
                "source": {"bucket": pipeline.source_bucket, "account_id": SOURCE_ACCOUNT},
            }
        ),
    )["executionArn"]


def _first_keys(aws, pipeline, n):
    listing = aws.client("s3", SOURCE_ACCOUNT).list_objects_v2(
        Bucket=pipeline.source_bucket, Prefix="data/part", MaxKeys=n
    )
    return [o["Key"] for o in listing["Contents"]]


# --- deferrable, reschedule and poke modes --------------------------------------------------------


def test_deferrable_sensor_defers_then_trigger_runs_to_completion(local_aws, run_context, monkeypatch):
    monkeypatch.setattr(DistributedMapTrigger, "no_event_window", 0)  # no deferring process to wait for here
    aws, pipeline = local_aws
    arn = _run_manifest(
        aws,
        pipeline,
        "deferred-ok",
        [{"bucket": pipeline.source_bucket, "keys": _first_keys(aws, pipeline, 30), "bytes": 0}],
    )
    sensor = _sensor(arn, deferrable=True, timeout=600, poll_before_defer=0)  # defer after one look
    context = run_context("run-deferred")
    try:
        result = sensor.execute(context)  # may already be finished: then it returns at once
        assert result["status"] == "SUCCEEDED"
        return
    except TaskDeferred as deferred:
        trigger, method = deferred.trigger, deferred.method_name
        # the sensor's timeout, less the time it polled before deferring (one look here)
        assert datetime.timedelta(seconds=570) < deferred.timeout <= datetime.timedelta(seconds=600)
    assert isinstance(trigger, DistributedMapTrigger) and method == "execute_complete"
    # The trigger survives serialisation (the triggerer rebuilds it from this).
    path, kwargs = trigger.serialize()
    assert path == "xacct_map.triggers.DistributedMapTrigger"
    rebuilt = DistributedMapTrigger(**kwargs)

    async def first_event():
        async for event in rebuilt.run():
            return event

    event = asyncio.run(asyncio.wait_for(first_event(), timeout=60))
    summary = getattr(sensor, method)(context, event.payload)
    assert summary["status"] == "SUCCEEDED" and summary["item_counts"]["succeeded"] == 1
    assert summary["result_writer"]["key"].startswith("xacct-map/results/")
    # The Map Run link was persisted from the event.
    assert "map_run_arn" in context["ti"].pushed["_xacct_map_map_run"]


def _snapshot_event(status, failed=0):
    counts = {
        "pending": 0,
        "running": 0,
        "succeeded": 4 - failed,
        "failed": failed,
        "timedOut": 0,
        "aborted": 0,
        "total": 4,
    }
    snap = MapRunSnapshot(
        execution_arn="arn:aws:states:us-east-1:123456789012:execution:m:e",
        status=status,
        map_run_arn=None,
        item_counts=counts,
        error="E" if status != "SUCCEEDED" else None,
        cause="C" if status != "SUCCEEDED" else None,
    )
    return {"status": "success", "snapshot": snap.as_dict()}


@pytest.mark.parametrize("status", ["FAILED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE"])
def test_deferrable_completion_fails_on_every_failure_status(status, run_context):
    sensor = _sensor("arn:aws:states:us-east-1:123456789012:execution:m:e", deferrable=True)
    with pytest.raises(AirflowFailException, match=rf"ended {status}: error='E', cause='C'"):
        sensor.execute_complete(run_context(), _snapshot_event(status))


def test_deferrable_completion_fails_on_an_error_event_or_none(run_context):
    sensor = _sensor("arn:aws:states:us-east-1:123456789012:execution:m:e", deferrable=True)
    with pytest.raises(AirflowException, match=r"ended without a result: Describing .* failed: AccessDenied"):
        sensor.execute_complete(run_context(), {"status": "error", "message": "Describing e failed: AccessDenied"})
    with pytest.raises(AirflowException, match=r"event is None"):
        sensor.execute_complete(run_context(), None)


def test_trigger_reports_an_aws_error_as_an_error_event(local_aws, monkeypatch):
    monkeypatch.setattr(DistributedMapTrigger, "no_event_window", 0)
    missing = "arn:aws:states:us-east-1:123456789012:execution:xacct-map-distributed-map:never-started"
    trigger = DistributedMapTrigger(execution_arn=missing, poll_interval=0, aws_conn_id="xacct_map_pipeline")

    async def first_event():
        async for event in trigger.run():
            return event

    event = asyncio.run(asyncio.wait_for(first_event(), timeout=60))
    assert event.payload["status"] == "error" and "ExecutionDoesNotExist" in event.payload["message"]


def test_deferrable_completion_checks_tolerance(run_context):
    sensor = _sensor("arn:aws:states:us-east-1:123456789012:execution:m:e", deferrable=True, max_failed_percentage=10)
    with pytest.raises(
        AirflowFailException, match=r"1 failed items .* of 4, more than max_failed_items=0, max_failed_percentage=10"
    ):
        sensor.execute_complete(run_context(), _snapshot_event("SUCCEEDED", failed=1))
    tolerant = _sensor(
        "arn:aws:states:us-east-1:123456789012:execution:m:e",
        deferrable=True,
        max_failed_items=1,
        max_failed_percentage=25,
    )
    assert tolerant.execute_complete(run_context(), _snapshot_event("SUCCEEDED", failed=1))["failed_items"] == 1


def test_reschedule_mode_reschedules_while_running(local_aws, waiting_machine, run_context):
    aws, _ = local_aws
    arn = _start_waiting(aws, waiting_machine, "reschedule-mode")
    with pytest.raises(AirflowRescheduleException):
        _sensor(arn, mode="reschedule").execute(run_context("run-reschedule"))
    aws.client("stepfunctions").stop_execution(executionArn=arn)


# --- stop on kill -----------------------------------------------------------------------------


def test_on_kill_stops_the_running_execution_naming_the_run(local_aws, waiting_machine, run_context):
    aws, _ = local_aws
    arn = _start_waiting(aws, waiting_machine, "kill-poke")
    sensor = _sensor(arn, mode="reschedule")
    with pytest.raises(AirflowRescheduleException):
        sensor.execute(run_context("scheduled__2026-11-26"))
    sensor.on_kill()
    assert _status_once_stopped(aws, arn) == "ABORTED"


def test_on_kill_can_be_switched_off(local_aws, waiting_machine):
    aws, _ = local_aws
    arn = _start_waiting(aws, waiting_machine, "kill-off")
    _sensor(arn, stop_on_kill=False).on_kill()
    assert _status(aws, arn) == "RUNNING"
    aws.client("stepfunctions").stop_execution(executionArn=arn)


def test_trigger_on_kill_stops_the_execution(local_aws, waiting_machine):
    aws, _ = local_aws
    arn = _start_waiting(aws, waiting_machine, "kill-deferred")
    trigger = DistributedMapTrigger(execution_arn=arn, aws_conn_id="xacct_map_pipeline", stop_cause="run X killed")
    asyncio.run(trigger.on_kill())
    assert _status_once_stopped(aws, arn) == "ABORTED"
    # A finished execution is left alone (no error either).
    asyncio.run(trigger.on_kill())
    assert _status(aws, arn) == "ABORTED"


# --- existing executions: attach / redrive / fail --------------------------------------------------


def _start_operator(pipeline, on_existing):
    manifest = {"bucket": pipeline.inventory_bucket, "key": "m.json", "source_bucket": pipeline.source_bucket}
    return StartDistributedMapOperator(
        task_id="start_map_run",
        aws_conn_id="xacct_map_pipeline",
        state_machine_arn=pipeline.state_machine_arn,
        manifest=manifest,
        on_existing=on_existing,
    )


def test_on_existing_fail_refuses_to_attach(local_aws, run_context):
    """An execution of this run that has ended (here: FAILED, its manifest m.json does not exist) is not
    attached to with on_existing='fail'. (A RUNNING one with the same input is what StartExecution
    itself returns, in every mode: the operator's docstring.)"""
    aws, pipeline = local_aws
    first = _start_operator(pipeline, "attach").execute(run_context("run-exists"))
    assert _status_once_stopped(aws, first, within=30) == "FAILED"  # the emulator fails it a moment later
    with pytest.raises(AirflowFailException, match=r"already exists .* on_existing='fail'"):
        _start_operator(pipeline, "fail").execute(run_context("run-exists"))


def test_on_existing_redrive_redrives_a_failed_execution(local_aws, run_context):
    _, pipeline = local_aws
    op = _start_operator(pipeline, "redrive")
    context = run_context("run-redrive")
    client = op.hook.conn
    stub = Stubber(client)
    # The run's execution exists, FAILED, with this run's input: the operator redrives it.
    arn = execution_arn(pipeline.state_machine_arn, execution_name("test_dag", "run-redrive"))
    stub.add_client_error("start_execution", "ExecutionAlreadyExists", "exists")
    expected_input = {
        "manifest": {"bucket": pipeline.inventory_bucket, "key": "m.json"},
        "run": {"dag_id": "test_dag", "run_id": "run-redrive"},
        "source": {"account_id": None, "bucket": pipeline.source_bucket, "prefix": "", "region": None},
    }
    stub.add_response(
        "describe_execution",
        {
            "executionArn": arn,
            "stateMachineArn": pipeline.state_machine_arn,
            "status": "FAILED",
            "startDate": datetime.datetime(2026, 11, 26),
            "input": json.dumps(expected_input),
        },
        {"executionArn": arn},
    )
    stub.add_response("redrive_execution", {"redriveDate": datetime.datetime(2026, 11, 26)}, {"executionArn": arn})
    with stub:
        assert op.execute(context) == arn
    stub.assert_no_pending_responses()


def test_redrive_on_the_local_emulator_says_it_is_not_available(local_aws, run_context):
    aws, pipeline = local_aws
    arn = _run_manifest(aws, pipeline, "redrive-local", [])
    with pytest.raises(Exception, match=r"not implemented by the local emulator"):
        aws.client("stepfunctions").redrive_execution(executionArn=arn)


def test_invalid_on_existing_is_rejected(local_aws, run_context):
    _, pipeline = local_aws
    with pytest.raises(AirflowFailException, match=r"on_existing='sometimes'"):
        _start_operator(pipeline, "sometimes").execute(run_context("run-x"))


# --- failures you can act on -------------------------------------------------------------------------


def test_failed_items_name_the_failed_children_and_the_results(local_aws):
    aws, pipeline = local_aws
    arn = _run_manifest(
        aws,
        pipeline,
        "child-errors",
        [{"bucket": pipeline.source_bucket, "keys": ["data/missing-object.bin"], "bytes": 1}],
    )
    sfn = aws.client("stepfunctions")
    while sfn.describe_execution(executionArn=arn)["status"] == "RUNNING":
        time.sleep(0.2)
    sensor = _sensor(arn)
    client = sensor.hook.conn
    real_list = client.list_executions
    # moto cannot list a Map Run's child executions (ListExecutions with mapRunArn answers 500):
    # answer that one call the way AWS does, from the run's real child execution history.
    child = "arn:aws:states:us-east-1:123456789012:execution:xacct-map-distributed-map/ProcessManifest:child-1"
    client.list_executions = lambda **kw: (
        {"executions": [{"executionArn": child}]} if "mapRunArn" in kw else real_list(**kw)
    )
    real_describe = client.describe_execution
    client.describe_execution = lambda executionArn: (
        {"status": "FAILED", "error": "RuntimeError", "cause": "cannot read s3://src/data/missing-object.bin"}
        if executionArn == child
        else real_describe(executionArn=executionArn)
    )
    with pytest.raises(AirflowFailException) as failure:
        sensor.poke({})
    message = str(failure.value)
    assert "1 failed items" in message
    assert f"failed child {child}: error='RuntimeError'" in message
    assert "results manifest: s3://xacct-map-demo-inventory/xacct-map/results/" in message


def test_failure_details_sample_the_failed_results_file(local_aws):
    aws, pipeline = local_aws
    s3 = aws.client("s3")
    s3.put_object(
        Bucket=pipeline.inventory_bucket,
        Key="r/manifest.json",
        Body=json.dumps(
            {
                "DestinationBucket": pipeline.inventory_bucket,
                "ResultFiles": {"FAILED": [{"Key": "r/FAILED_0.json", "Size": 120}], "SUCCEEDED": []},
            }
        ).encode(),
    )
    s3.put_object(
        Bucket=pipeline.inventory_bucket,
        Key="r/FAILED_0.json",
        Body=json.dumps(
            [{"Error": "RuntimeError", "Cause": "cannot read s3://src/k1", "Input": '{"keys": ["k1"]}'}]
        ).encode(),
    )
    snap = MapRunSnapshot(
        execution_arn="arn:aws:states:us-east-1:123456789012:execution:m:e",
        status="FAILED",
        result_writer={"bucket": pipeline.inventory_bucket, "key": "r/manifest.json"},
    )
    details = failure_details(aws.client("stepfunctions"), snap, s3_client=s3)
    assert f"FAILED results: s3://{pipeline.inventory_bucket}/r/FAILED_0.json (120 bytes in 1 files)" in details
    assert "'RuntimeError': 'cannot read s3://src/k1'" in details


# --- console links -----------------------------------------------------------------------------------


def test_links_render_partition_and_region_aware_urls():
    map_run = "arn:aws:states:eu-west-1:123456789012:mapRun:m/ProcessManifest:abc"
    assert MapRunLink().format_link(
        aws_domain=MapRunLink.get_aws_domain("aws"), region_name="eu-west-1", map_run_arn=map_run
    ) == (
        "https://console.aws.amazon.com/states/home?region=eu-west-1#/v2/map-run/details/"
        "arn%3Aaws%3Astates%3Aeu-west-1%3A123456789012%3AmapRun%3Am%2FProcessManifest%3Aabc"
    )
    assert ManifestObjectLink().format_link(
        aws_domain=ManifestObjectLink.get_aws_domain("aws-cn"),
        region_name="cn-north-1",
        bucket="inv",
        key="xacct-map/manifests/d/r 1/manifest.json",
    ) == (
        "https://console.amazonaws.cn/s3/object/inv?region=cn-north-1&prefix=xacct-map%2Fmanifests%2Fd%2Fr%201%2Fmanifest.json"
    )


def test_operators_persist_their_links(local_aws, run_context):
    from xacct_map.operators import BuildKeyManifestOperator

    _, pipeline = local_aws
    context = run_context("run-links")
    BuildKeyManifestOperator(
        task_id="b",
        aws_conn_id="xacct_map_pipeline",
        source_aws_conn_id="xacct_map_source",
        source_bucket=pipeline.source_bucket,
        manifest_bucket=pipeline.inventory_bucket,
    ).execute(context)
    link = context["ti"].pushed["_xacct_map_manifest"]
    assert link["bucket"] == pipeline.inventory_bucket and link["key"].endswith("/manifest.json")
    assert link["region_name"] == "us-east-1" and link["aws_domain"] == "aws.amazon.com"
