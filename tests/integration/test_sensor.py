"""DistributedMapSensor: every terminal status, tolerance checked against the Map Run's own counts."""

from __future__ import annotations

import datetime
import json
import re
import time

import pytest
from botocore.stub import Stubber

from task_fixtures import FakeTaskInstance
from xacct_map.local.emulator import SOURCE_ACCOUNT
from xacct_map.sensors import DistributedMapSensor
from xacct_map.version_compat import AirflowFailException

EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:machine:run-1"
MAP_RUN = "arn:aws:states:us-east-1:123456789012:mapRun:machine/ProcessManifest:abc"


def _counts(succeeded=0, failed=0, running=0, pending=0, total=4):
    return {
        "pending": pending,
        "running": running,
        "succeeded": succeeded,
        "failed": failed,
        "timedOut": 0,
        "aborted": 0,
        "total": total,
        "resultsWritten": succeeded,
        "failuresNotRedrivable": 0,
        "pendingRedrive": 0,
    }


def _stubbed_sensor(status, counts, *, error=None, cause=None, map_run_start=None, **kwargs):
    sensor = DistributedMapSensor(
        task_id="wait", execution_arn=EXECUTION, aws_conn_id=None, region_name="us-east-1", **kwargs
    )
    client = sensor.hook.conn
    stub = Stubber(client)
    now = datetime.datetime(2026, 11, 26, tzinfo=datetime.timezone.utc)
    execution = {
        "executionArn": EXECUTION,
        "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:machine",
        "status": status,
        "startDate": now,
    }
    if error:
        execution.update(error=error, cause=cause)
    if status != "RUNNING":
        execution["stopDate"] = now
    stub.add_response("describe_execution", execution, {"executionArn": EXECUTION})
    stub.add_response(
        "list_map_runs",
        {
            "mapRuns": [
                {
                    "executionArn": EXECUTION,
                    "mapRunArn": MAP_RUN,
                    "stateMachineArn": execution["stateMachineArn"],
                    "startDate": now,
                }
            ]
        },
        {"executionArn": EXECUTION},
    )
    stub.add_response(
        "describe_map_run",
        {
            "mapRunArn": MAP_RUN,
            "executionArn": EXECUTION,
            "status": "RUNNING" if status == "RUNNING" else "SUCCEEDED",
            "startDate": map_run_start or now,
            "maxConcurrency": 8,
            "toleratedFailurePercentage": 0.0,
            "toleratedFailureCount": 0,
            "itemCounts": counts,
            "executionCounts": counts,
        },
        {"mapRunArn": MAP_RUN},
    )
    stub.activate()
    return sensor


def test_running_is_not_done_and_logs_progress(capsys):
    # Airflow's task logger writes through structlog to stdout.
    started = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=100)
    sensor = _stubbed_sensor("RUNNING", _counts(succeeded=1, running=2, pending=1), map_run_start=started)
    assert sensor.poke({}) is False
    # 1 item done in ~100 s: 0.01 items/s, 3 left: ETA ~300 s.
    assert re.search(
        r"1 succeeded, 0 failed, 2 running, 1 pending of 4 items \(25\.0% done, 0\.01 items/s, ETA (29\d|30\d)s",
        capsys.readouterr().out,
    )


def test_succeeded_returns_summary():
    result = _stubbed_sensor("SUCCEEDED", _counts(succeeded=4)).poke({})
    assert result.is_done
    assert result.xcom_value["status"] == "SUCCEEDED"
    assert result.xcom_value["item_counts"]["succeeded"] == 4
    assert result.xcom_value["map_run_arn"] == MAP_RUN


@pytest.mark.parametrize("status", ["FAILED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE"])
def test_every_other_terminal_status_fails_with_error_and_cause(status):
    sensor = _stubbed_sensor(status, _counts(succeeded=3, failed=1), error="States.TaskFailed", cause="boom in batch 7")
    ti = FakeTaskInstance()
    with pytest.raises(
        AirflowFailException, match=rf"ended {status}: error='States.TaskFailed', cause='boom in batch 7'"
    ):
        sensor.poke({"ti": ti})
    # The final snapshot is kept in XCom even though the task fails (the Map runs page shows it).
    summary = ti.pushed["map_run_summary"]
    assert summary["status"] == status and summary["failed_items"] == 1 and summary["map_run_arn"] == MAP_RUN
    # So are the counts of its looks, for the page's chart: [when, succeeded, failed, running, pending, total].
    assert ti.pushed["map_run_progress"][-1][1:] == [3, 1, 0, 0, 4]


def test_succeeded_with_failed_items_beyond_tolerance_fails():
    with pytest.raises(AirflowFailException, match=r"SUCCEEDED but its Map Run .* has 1 failed items"):
        _stubbed_sensor("SUCCEEDED", _counts(succeeded=3, failed=1)).poke({})


def test_failed_items_within_tolerance_succeed():
    assert _stubbed_sensor("SUCCEEDED", _counts(succeeded=3, failed=1), max_failed_items=1).poke({}).is_done


def _wait_until_done(sfn, arn, timeout=60):
    deadline = time.monotonic() + timeout
    while sfn.describe_execution(executionArn=arn)["status"] == "RUNNING":
        assert time.monotonic() < deadline, f"{arn} still RUNNING after {timeout}s"
        time.sleep(0.3)


def _run(aws, pipeline, name, batches):
    s3, sfn = aws.client("s3"), aws.client("stepfunctions")
    key = f"tests/{name}.json"
    s3.put_object(Bucket=pipeline.inventory_bucket, Key=key, Body=json.dumps(batches).encode())
    arn = sfn.start_execution(
        stateMachineArn=pipeline.state_machine_arn,
        name=name,
        input=json.dumps(
            {
                "manifest": {"bucket": pipeline.inventory_bucket, "key": key},
                "source": {"bucket": pipeline.source_bucket, "account_id": SOURCE_ACCOUNT},
            }
        ),
    )["executionArn"]
    _wait_until_done(sfn, arn)
    return DistributedMapSensor(task_id="wait", execution_arn=arn, aws_conn_id="xacct_map_pipeline")


def test_real_run_succeeds_on_the_emulator(local_aws):
    aws, pipeline = local_aws
    keys = [
        k["Key"]
        for k in aws.client("s3", SOURCE_ACCOUNT).list_objects_v2(
            Bucket=pipeline.source_bucket, Prefix=pipeline.source_prefix, MaxKeys=6
        )["Contents"]
    ]
    sensor = _run(
        aws,
        pipeline,
        "sensor-ok",
        [
            {"bucket": pipeline.source_bucket, "keys": keys[:3], "bytes": 0},
            {"bucket": pipeline.source_bucket, "keys": keys[3:], "bytes": 0},
        ],
    )
    result = sensor.poke({})
    assert result.xcom_value["status"] == "SUCCEEDED"
    assert result.xcom_value["item_counts"]["succeeded"] == 2


def test_real_run_with_an_unreadable_object_fails_the_task(local_aws):
    """The emulator reports SUCCEEDED with failed items: the sensor must still fail."""
    aws, pipeline = local_aws
    sensor = _run(
        aws,
        pipeline,
        "sensor-missing-object",
        [{"bucket": pipeline.source_bucket, "keys": ["data/does-not-exist.bin"], "bytes": 1}],
    )
    with pytest.raises(AirflowFailException, match=r"1 failed items"):
        sensor.poke({})


def test_real_aborted_run_fails_the_task(local_aws):
    aws, pipeline = local_aws
    sfn = aws.client("stepfunctions")
    s3 = aws.client("s3")
    # Enough items that the run is still going when it is stopped. moto answers 500 to a stop that
    # comes before its worker started or after it finished (a race on a busy machine): try again.
    batches = [{"bucket": pipeline.source_bucket, "keys": [f"data/missing-{i}.bin"], "bytes": 1} for i in range(40)]
    s3.put_object(Bucket=pipeline.inventory_bucket, Key="tests/abort.json", Body=json.dumps(batches).encode())
    for attempt in range(5):
        arn = sfn.start_execution(
            stateMachineArn=pipeline.state_machine_arn,
            name=f"sensor-aborted-{attempt}",
            input=json.dumps(
                {"manifest": {"bucket": pipeline.inventory_bucket, "key": "tests/abort.json"}, "source": {}}
            ),
        )["executionArn"]
        time.sleep(0.5)
        try:
            sfn.stop_execution(executionArn=arn, error="Operator", cause="stopped by test")
        except sfn.exceptions.ClientError:
            pass
        _wait_until_done(sfn, arn)
        if sfn.describe_execution(executionArn=arn)["status"] == "ABORTED":
            break
    else:
        pytest.fail("moto finished every execution before it could be stopped")
    with pytest.raises(AirflowFailException, match=r"ended ABORTED"):
        DistributedMapSensor(task_id="wait", execution_arn=arn, aws_conn_id="xacct_map_pipeline").poke({})


@pytest.mark.parametrize(
    "status, outcome",
    [("SUCCEEDED", "ok"), ("FAILED", "fail"), ("TIMED_OUT", "fail"), ("ABORTED", "fail"), ("PENDING_REDRIVE", "fail")],
)
def test_reschedule_mode_verdicts_match_poke_mode(status, outcome, run_context):
    sensor = _stubbed_sensor(status, _counts(succeeded=4), error="E", cause="C", mode="reschedule")
    context = run_context()
    if outcome == "ok":
        assert sensor.execute(context)["status"] == "SUCCEEDED"
    else:
        with pytest.raises(AirflowFailException, match=rf"ended {status}"):
            sensor.execute(context)
