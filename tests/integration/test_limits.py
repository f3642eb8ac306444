"""Step Functions' limits end to end, through the local emulator (issue 14).

* Child inputs that always fit: ``xacct-map manifest`` closes a batch before the child execution's
  input (the ItemSelector output: the item plus the ``source`` block) would pass ``--max-batch-bytes``,
  measured as UTF-8 JSON; the two cases of the issue run locally to SUCCEEDED.
* The local mode fails where AWS would (``xacct_map.local.limits``): a child input over 256 KiB
  (``States.DataLimitExceeded``), a manifest over the ItemReader's size limit and a manifest bucket
  in another Region (``States.ItemReaderFailed``).
"""

from __future__ import annotations

import json
import time

import pytest

from xacct_map.cli import main
from xacct_map.core.layouts import DEFAULT_MAX_BATCH_BYTES, MAX_CHILD_INPUT_BYTES
from xacct_map.local.emulator import SOURCE_ACCOUNT
from xacct_map.operators import build_execution_input

EMOJI = "\U0001f680"  # 4 UTF-8 bytes; 12 as a \ud83d\ude80 escape


def _seed(pipeline, keys: list[str]) -> None:
    """Put ``keys`` (small bodies) into the source bucket through moto's backend (fast, same process)."""
    from moto.s3.models import s3_backends

    backend = s3_backends[SOURCE_ACCOUNT]["aws"]
    for i, key in enumerate(keys):
        backend.put_object(pipeline.source_bucket, key, f"body {i}".encode())


def _manifest(aws, pipeline, prefix: str, name: str, *args: str) -> tuple[dict, list]:
    """Run ``xacct-map manifest --json`` over ``prefix``; the metadata and the manifest's items."""
    dest_key = f"xacct-map/manifests/limits/{name}.json"
    argv = ["manifest", "--endpoint-url", aws.endpoint_url, "--region", "us-east-1", "--json"]
    argv += [
        "--source",
        f"s3://{pipeline.source_bucket}/{prefix}",
        "--dest",
        f"s3://{pipeline.inventory_bucket}/{dest_key}",
    ]
    argv += ["--role-arn", pipeline.source_role_arn, "--expected-bucket-owner", SOURCE_ACCOUNT, *args]
    assert main(argv) == 0
    body = aws.client("s3").get_object(Bucket=pipeline.inventory_bucket, Key=dest_key)["Body"].read()
    meta = json.loads(
        aws.client("s3").get_object(Bucket=pipeline.inventory_bucket, Key=dest_key + ".meta.json")["Body"].read()
    )
    return meta, json.loads(body)


def _child_inputs(meta: dict, items: list) -> list[int]:
    """UTF-8 bytes of every child input the batched ASL's ItemSelector makes from ``items``."""
    source = build_execution_input(meta)["source"]
    return [
        len(json.dumps({**item, "source": source}, ensure_ascii=False, separators=(",", ":")).encode())
        for item in items
    ]


def _run(aws, pipeline, manifest: dict, name: str, timeout: float = 90) -> dict:
    """Start the deployed state machine on ``manifest`` and wait for the execution to end."""
    sfn = aws.client("stepfunctions")
    body = build_execution_input(manifest, run={"dag_id": "test_limits", "run_id": name})
    arn = sfn.start_execution(stateMachineArn=pipeline.state_machine_arn, name=name, input=json.dumps(body))[
        "executionArn"
    ]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        execution = sfn.describe_execution(executionArn=arn)
        if execution["status"] != "RUNNING":
            return execution
        time.sleep(0.3)
    raise AssertionError(f"{arn} still RUNNING after {timeout}s")


def _put_manifest(aws, bucket: str, key: str, items: list, source_bucket: str) -> dict:
    body = json.dumps(items, ensure_ascii=False).encode()
    aws.client("s3").put_object(Bucket=bucket, Key=key, Body=body)
    return {"bucket": bucket, "key": key, "source_bucket": source_bucket, "source_prefix": "data/"}


def test_emoji_keys_are_written_as_utf8_and_every_child_input_fits(local_aws):
    """600 keys of 250 emoji, default batching: UTF-8 (no \\u escapes), every child input at most
    240 KiB, the largest reported in the sidecar, and the local Map Run processes every key once."""
    aws, pipeline = local_aws
    keys = [f"emoji/{i:03d}" + EMOJI * 250 for i in range(600)]
    _seed(pipeline, keys)
    meta, items = _manifest(aws, pipeline, "emoji/", "emoji")
    sizes = _child_inputs(meta, items)
    assert max(sizes) == meta["largest_item_bytes"] <= DEFAULT_MAX_BATCH_BYTES
    assert sorted(k for item in items for k in item["keys"]) == keys
    assert meta["batching"]["max_batch_bytes"] == DEFAULT_MAX_BATCH_BYTES
    body = aws.client("s3").get_object(Bucket=meta["bucket"], Key=meta["key"])["Body"].read()
    assert b"\\u" not in body and len(body) == meta["manifest_bytes"]
    execution = _run(aws, pipeline, meta, "emoji-keys")
    assert execution["status"] == "SUCCEEDED", execution


def test_long_keys_with_1000_keys_per_batch_close_on_the_byte_budget(local_aws):
    """1,500 keys of 1,000 characters with --max-keys-per-batch 1000 (1 MB in one item before): the
    budget closes batches first, at most 240 KiB each; a smaller --max-batch-bytes cuts finer."""
    aws, pipeline = local_aws
    keys = [f"long/{i:05d}-".ljust(1000, "x") for i in range(1500)]
    _seed(pipeline, keys)
    meta, items = _manifest(aws, pipeline, "long/", "long", "--max-keys-per-batch", "1000")
    sizes = _child_inputs(meta, items)
    assert max(sizes) == meta["largest_item_bytes"] <= DEFAULT_MAX_BATCH_BYTES
    assert len(items) == meta["batch_count"] == 7 and [k for item in items for k in item["keys"]] == keys
    small, small_items = _manifest(
        aws, pipeline, "long/", "long-small", "--max-keys-per-batch", "1000", "--max-batch-bytes", "8192"
    )
    assert max(_child_inputs(small, small_items)) == small["largest_item_bytes"] <= 8192
    assert [k for item in small_items for k in item["keys"]] == keys
    execution = _run(aws, pipeline, meta, "long-keys")
    assert execution["status"] == "SUCCEEDED", execution


@pytest.mark.parametrize("budget", ["1000", str(MAX_CHILD_INPUT_BYTES + 1)])
def test_a_budget_outside_the_limits_is_refused_before_listing(local_aws, capsys, budget):
    aws, pipeline = local_aws
    code = main(
        ["manifest", "--endpoint-url", aws.endpoint_url, "--source", f"s3://{pipeline.source_bucket}/data/"]
        + ["--dest", f"s3://{pipeline.inventory_bucket}/x.json", "--max-batch-bytes", budget]
    )
    assert code == 2
    assert "262144" in capsys.readouterr().err


def test_an_oversized_hand_made_item_fails_the_local_run_with_data_limit_exceeded(local_aws):
    aws, pipeline = local_aws
    keys = [f"data/{i:04d}-".ljust(1000, "y") for i in range(300)]  # ~300 KB in one item
    manifest = _put_manifest(
        aws,
        pipeline.inventory_bucket,
        "limits/oversized.json",
        [{"bucket": pipeline.source_bucket, "keys": keys, "bytes": 1}],
        pipeline.source_bucket,
    )
    execution = _run(aws, pipeline, manifest, "oversized-item")
    assert execution["status"] == "FAILED"
    assert execution["error"] == "States.DataLimitExceeded", execution
    assert "262144" in execution["cause"] and "item 0" in execution["cause"]


def test_a_manifest_over_the_item_reader_limit_fails(local_aws, monkeypatch):
    aws, pipeline = local_aws
    monkeypatch.setenv("XACCT_MAP_LOCAL_ITEM_READER_MAX_BYTES", "1000")
    items = [{"bucket": pipeline.source_bucket, "keys": [f"data/{i}"], "bytes": 1} for i in range(40)]
    manifest = _put_manifest(aws, pipeline.inventory_bucket, "limits/too-big.json", items, pipeline.source_bucket)
    execution = _run(aws, pipeline, manifest, "too-big-manifest")
    assert execution["status"] == "FAILED" and execution["error"] == "States.ItemReaderFailed", execution
    assert "more than the 1000 bytes" in execution["cause"] and "limits/too-big.json" in execution["cause"]


def test_a_manifest_bucket_in_another_region_fails(local_aws):
    aws, pipeline = local_aws
    bucket = "xacct-map-limits-eu-inventory"
    aws.client("s3").create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    items = [{"bucket": pipeline.source_bucket, "keys": ["data/x"], "bytes": 1}]
    manifest = _put_manifest(aws, bucket, "m.json", items, pipeline.source_bucket)
    execution = _run(aws, pipeline, manifest, "other-region")
    assert execution["status"] == "FAILED" and execution["error"] == "States.ItemReaderFailed", execution
    assert "eu-west-1" in execution["cause"] and "us-east-1" in execution["cause"] and bucket in execution["cause"]


# -- checks before the money is spent (issue 14, item 3) ------------------------------------------


def _eu_bucket(aws, name: str = "xacct-map-limits-eu-inventory") -> str:
    s3 = aws.client("s3")
    if name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return name


def _executions(aws, pipeline) -> int:
    return len(aws.client("stepfunctions").list_executions(stateMachineArn=pipeline.state_machine_arn)["executions"])


def test_start_refuses_a_manifest_bucket_in_another_region_before_starting(local_aws, run_context):
    from xacct_map.operators import StartDistributedMapOperator
    from xacct_map.version_compat import AirflowFailException

    aws, pipeline = local_aws
    manifest = {"bucket": _eu_bucket(aws), "key": "m.json", "source_bucket": pipeline.source_bucket}
    before = _executions(aws, pipeline)
    op = StartDistributedMapOperator(
        task_id="start",
        aws_conn_id="xacct_map_pipeline",
        state_machine_arn=pipeline.state_machine_arn,
        manifest=manifest,
    )
    with pytest.raises(AirflowFailException) as raised:
        op.execute(run_context("manual__region"))
    message = str(raised.value)
    assert "eu-west-1" in message and "us-east-1" in message and manifest["bucket"] in message
    assert pipeline.state_machine_arn in message
    assert _executions(aws, pipeline) == before  # nothing started


def test_start_refuses_a_manifest_whose_largest_batch_no_longer_fits(local_aws, run_context):
    """The manifest reserved room for the source block it knew; a much longer one given at start
    (here an extra-long Region override) would push its largest child input past 256 KiB."""
    from xacct_map.operators import StartDistributedMapOperator
    from xacct_map.version_compat import AirflowFailException

    aws, pipeline = local_aws
    manifest = {
        "bucket": pipeline.inventory_bucket,
        "key": "m.json",
        "source_bucket": pipeline.source_bucket,
        "largest_item_bytes": MAX_CHILD_INPUT_BYTES - 10,
        "batching": {"source_block_bytes": 120},
    }
    op = StartDistributedMapOperator(
        task_id="start",
        aws_conn_id="xacct_map_pipeline",
        state_machine_arn=pipeline.state_machine_arn,
        manifest=manifest,
        source_region="r" * 200,
    )
    with pytest.raises(AirflowFailException, match=r"more than Step Functions' 262144: rebuild the manifest"):
        op.execute(run_context("manual__toolarge"))


def test_preflight_names_both_regions_for_an_inventory_bucket_elsewhere(local_aws):
    import boto3

    from xacct_map.setup.preflight import FAILED, PreflightConfig, run_preflight

    aws, pipeline = local_aws
    config = PreflightConfig(
        source_bucket=pipeline.source_bucket,
        source_account=pipeline.source_account,
        prefix=pipeline.source_prefix,
        lister_role_arn=pipeline.source_role_arn,
        inventory_bucket=_eu_bucket(aws),
        state_machine_arn=pipeline.state_machine_arn,
        endpoint_url=aws.endpoint_url,
    )
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    report = run_preflight(config, session=session)
    check = next(c for c in report.checks if c.name == "write_inventory")
    assert check.status == FAILED and check.error_code == "WrongBucketLocation"
    assert "eu-west-1" in check.reason and "us-east-1" in check.reason
    assert next(c for c in report.checks if c.name == "state_machine").ok  # its ResultWriter bucket is beside it


def test_preflight_refuses_a_deployed_definition_outside_the_limits(local_aws):
    import boto3

    from xacct_map.setup.preflight import FAILED, PreflightConfig, run_preflight

    aws, pipeline = local_aws
    sfn = aws.client("stepfunctions")
    described = sfn.describe_state_machine(stateMachineArn=pipeline.state_machine_arn)
    definition = json.loads(described["definition"])
    definition["States"]["ProcessManifest"]["MaxConcurrency"] = 20_000
    arn = sfn.create_state_machine(
        name="xacct-map-limits-bad", definition=json.dumps(definition), roleArn=described["roleArn"]
    )["stateMachineArn"]
    config = PreflightConfig(
        source_bucket=pipeline.source_bucket,
        source_account=pipeline.source_account,
        prefix=pipeline.source_prefix,
        lister_role_arn=pipeline.source_role_arn,
        inventory_bucket=pipeline.inventory_bucket,
        state_machine_arn=arn,
        endpoint_url=aws.endpoint_url,
    )
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    check = next(c for c in run_preflight(config, session=session).checks if c.name == "state_machine")
    assert check.status == FAILED and "MaxConcurrency is 20000" in check.reason and "10000" in check.reason


# -- pollers that share the budget (issue 14, item 4) ----------------------------------------------


def _small_execution(aws, pipeline, name: str) -> str:
    keys = [f"data/part-0000/object-{i:07d}.bin" for i in range(12, 16)]
    items = [
        {"bucket": pipeline.source_bucket, "keys": keys[:2], "bytes": 0},
        {"bucket": pipeline.source_bucket, "keys": keys[2:], "bytes": 0},
    ]
    manifest = _put_manifest(aws, pipeline.inventory_bucket, f"limits/{name}.json", items, pipeline.source_bucket)
    body = build_execution_input(manifest, source_account_id=SOURCE_ACCOUNT)
    return aws.client("stepfunctions").start_execution(
        stateMachineArn=pipeline.state_machine_arn, name=name, input=json.dumps(body)
    )["executionArn"]


def _throttle(client, operation: str, times: int) -> list[str]:
    """Make ``operation`` on ``client`` answer ThrottlingException (HTTP 400) its first ``times`` calls."""
    from botocore.awsrequest import AWSResponse

    seen: list[str] = []

    def answer(**kwargs):
        seen.append(operation)
        if len(seen) > times:
            return None
        error = {
            "Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }
        return AWSResponse("https://states", 400, {}, None), error

    client.meta.events.register(f"before-call.sfn.{operation}", answer)
    return seen


def test_sensor_waits_longer_when_throttled_and_never_fails(local_aws, run_context, monkeypatch, capsys):
    """Poke mode against a real local run, DescribeMapRun throttled three times: the sensor logs it,
    waits longer each time (jittered), and still ends with the run's verdict."""
    import airflow.sdk.bases.sensor as base_sensor

    from xacct_map.sensors import DistributedMapSensor

    aws, pipeline = local_aws
    arn = _small_execution(aws, pipeline, "throttled-sensor")
    sensor = DistributedMapSensor(
        task_id="wait", execution_arn=arn, aws_conn_id="xacct_map_pipeline", poke_interval=0.2, timeout=120
    )
    calls = _throttle(sensor.hook.conn, "DescribeMapRun", 3)
    waits: list[float] = []

    class Clock:  # Airflow's poke loop, with its sleeps recorded (and kept short)
        monotonic = staticmethod(time.monotonic)

        @staticmethod
        def sleep(seconds):
            waits.append(seconds)
            time.sleep(0.1)

    monkeypatch.setattr(base_sensor, "time", Clock)
    summary = sensor.execute(run_context("manual__throttled"))
    assert summary["status"] == "SUCCEEDED" and summary["item_counts"]["succeeded"] == 2
    assert len(calls) >= 4  # three throttled, then answered
    assert waits[:3] == sorted(waits[:3]) and all(w > 0.2 for w in waits[:3])  # longer than poke_interval
    warned = [
        line for line in capsys.readouterr().out.splitlines() if "Step Functions throttled" in line
    ]  # Airflow logs to stdout
    assert len(warned) == 3 and "ThrottlingException" in warned[0] and "not failing" in warned[0]


def test_trigger_waits_longer_when_throttled_and_fires_the_verdict(local_aws, monkeypatch):
    """The deferrable path: the trigger's async look throttled twice, then the run's event."""
    import asyncio

    from botocore.exceptions import ClientError

    from xacct_map.hooks import DistributedMapHook
    from xacct_map.triggers import DistributedMapTrigger

    aws, pipeline = local_aws
    arn = _small_execution(aws, pipeline, "throttled-trigger")
    looks: list[int] = []
    real_snapshot = DistributedMapHook.snapshot_async

    async def throttled(self, client, execution_arn):
        looks.append(1)
        if len(looks) <= 2:
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "DescribeMapRun")
        return await real_snapshot(self, client, execution_arn)

    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds):
        slept.append(seconds)
        await real_sleep(0.05)

    monkeypatch.setattr(DistributedMapHook, "snapshot_async", throttled)
    monkeypatch.setattr("xacct_map.triggers.asyncio.sleep", sleep)
    monkeypatch.setattr(DistributedMapTrigger, "no_event_window", 0)
    trigger = DistributedMapTrigger(execution_arn=arn, poll_interval=0.5, aws_conn_id="xacct_map_pipeline")

    async def first_event():
        async for event in trigger.run():
            return event

    event = asyncio.run(asyncio.wait_for(first_event(), timeout=60))
    assert event.payload["status"] == "success" and event.payload["snapshot"]["status"] == "SUCCEEDED"
    counts = event.payload["snapshot"]["item_counts"]
    assert event.payload["progress"][-1][1:] == [counts["succeeded"], 0, 0, 0, counts["total"]]  # the polls' counts
    assert slept[1] >= 1.5 and slept[2] >= 1.5  # the waits after throttling: at least 1 s longer than poll_interval
    assert all(0.5 <= s <= 0.55 for s in slept[3:])  # then the normal interval (a short run: no growth)


# -- manifests in parts (issue 14, item 2) --------------------------------------------------------


def test_a_small_part_size_makes_a_multi_part_run_that_processes_every_key_once(local_aws):
    """--manifest-part-bytes 8192 over 300 keys in batches of 10: several parts, each a manifest of
    its own, every key in exactly one part; one execution runs a Map Run per part to SUCCEEDED and
    the sensor's snapshot sums them."""
    from xacct_map.hooks import DistributedMapHook

    aws, pipeline = local_aws
    keys = [f"parts/{i:04d}-".ljust(100, "p") for i in range(300)]
    _seed(pipeline, keys)
    meta, first = _manifest(
        aws, pipeline, "parts/", "parts", "--max-keys-per-batch", "10", "--manifest-part-bytes", "8192"
    )
    assert meta["part_count"] == len(meta["parts"]) >= 3 and meta["batch_count"] == 30
    s3 = aws.client("s3")
    in_parts = []
    for part in meta["parts"]:
        body = s3.get_object(Bucket=meta["bucket"], Key=part["key"])["Body"].read()
        items = json.loads(body)
        assert len(body) == part["bytes"] and len(items) == part["items"] and part["bytes"] < 8192 + 2000
        in_parts += [k for item in items for k in item["keys"]]
    assert (
        in_parts == keys
        and meta["parts"][0]["key"] == meta["key"]
        and first == json.loads(s3.get_object(Bucket=meta["bucket"], Key=meta["key"])["Body"].read())
    )
    assert meta["parts"][1]["key"] == meta["key"].replace(".json", ".part-00002.json")
    execution = _run(aws, pipeline, meta, "multi-part")
    assert execution["status"] == "SUCCEEDED", execution
    map_runs = aws.client("stepfunctions").list_map_runs(executionArn=execution["executionArn"])["mapRuns"]
    assert len(map_runs) == meta["part_count"]
    snap = DistributedMapHook(aws_conn_id="xacct_map_pipeline").snapshot(execution["executionArn"])
    assert snap.item_counts["succeeded"] == 30 and snap.failed_items == 0
    assert snap.result_writer and snap.result_writer["key"].startswith("xacct-map/results/")
