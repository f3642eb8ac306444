"""Process exactly what was listed: a manifest pinned to the listed ETags, objects overwritten and deleted
after the listing, then the deployed state machine and processor run it in the local mode. Each
``on_changed`` choice reports the changed and gone objects and does what it says."""

from __future__ import annotations

import json
import time

import pytest

from manifest_fixtures import manifest_operator
from xacct_map.core.map_run import snapshot, verdict
from xacct_map.local.emulator import SOURCE_ACCOUNT
from xacct_map.operators import build_execution_input
from xacct_map.sensors import DistributedMapSensor

KEYS = [f"k{i}" for i in range(6)]
OVERWRITTEN, DELETED = ["k1", "k4"], ["k2", "k5"]


def _run(aws, pipeline, run_context, mode: str) -> tuple:
    """Seed, list (pinned), overwrite and delete, run; ``(final snapshot, this run's invocations)``."""
    prefix = f"changed-{mode}/"
    s3 = aws.client("s3", SOURCE_ACCOUNT)
    for key in KEYS:
        s3.put_object(Bucket=pipeline.source_bucket, Key=prefix + key, Body=f"listed {key}".encode())
    summary = manifest_operator(pipeline, source_prefix=prefix, on_changed=mode, max_keys_per_batch=3).execute(
        run_context(f"changed-{mode}")
    )
    assert summary["object_count"] == len(KEYS) and summary["source"]["on_changed"] == mode
    for key in OVERWRITTEN:
        s3.put_object(Bucket=pipeline.source_bucket, Key=prefix + key, Body=b"written after the listing")
    for key in DELETED:
        s3.delete_object(Bucket=pipeline.source_bucket, Key=prefix + key)
    sfn = aws.client("stepfunctions")
    arn = sfn.start_execution(
        stateMachineArn=pipeline.state_machine_arn,
        name=f"changed-{mode}",
        input=json.dumps(build_execution_input(summary)),
    )["executionArn"]
    deadline = time.monotonic() + 300
    while (snap := snapshot(sfn, arn)).status == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.5)
    ours = [i for i in aws.runtime.invocations if i.event["keys"][0][0].startswith(prefix)]
    return snap, ours


def _short(keys) -> list[str]:
    return sorted(k.rpartition("/")[2] for k in keys)


@pytest.mark.parametrize("mode", ["skip", "current", "fail"])
def test_objects_changed_or_deleted_after_listing_are_reported(local_aws, run_context, mode):
    aws, pipeline = local_aws
    snap, invocations = _run(aws, pipeline, run_context, mode)
    assert len(invocations) == 2  # two batches of three pinned keys
    if mode == "fail":
        # Both batches failed (moto ends the execution SUCCEEDED with failed items: the verdict fails it).
        assert snap.failed_items == 2 and verdict(snap) is not None and not any(i.ok for i in invocations)
        messages = " ".join(i.result["errorMessage"] for i in invocations)
        for key in OVERWRITTEN:
            assert f"{key}: ObjectChanged" in messages
        for key in DELETED:
            assert f"{key}: ObjectGone" in messages
        return
    assert snap.status == "SUCCEEDED" and verdict(snap) is None and all(i.ok for i in invocations)
    changed = _short(k for i in invocations for k in i.result["changed"])
    gone = _short(k for i in invocations for k in i.result["gone"])
    entries = [r for i in invocations for r in i.result["results"]]
    processed = {r["key"].rpartition("/")[2]: r["result"] for r in entries if "result" in r}
    statuses = {r["key"].rpartition("/")[2]: r["status"] for r in entries if "status" in r}
    assert statuses == {**dict.fromkeys(OVERWRITTEN, "changed"), **dict.fromkeys(DELETED, "gone")}
    assert (changed, gone) == (OVERWRITTEN, DELETED)
    if mode == "skip":  # only the unchanged objects were processed, at their listed content
        assert sorted(processed) == ["k0", "k3"]
        assert sum(i.result["skipped"] for i in invocations) == 4
    else:  # current: the overwritten objects were processed as they are now
        assert sorted(processed) == ["k0", "k1", "k3", "k4"]
        assert sum(i.result["skipped"] for i in invocations) == 2
        assert processed["k1"]["bytes"] == len(b"written after the listing")
    assert processed["k0"]["bytes"] == len(b"listed k0")
    # The sensor's summary counts them (from the ResultWriter's files), as the Map runs page shows them.
    sensor = DistributedMapSensor(
        task_id="wait", execution_arn=snap.execution_arn, aws_conn_id="xacct_map_pipeline", deferrable=False
    )
    summary = sensor.execute(run_context(f"changed-{mode}"))
    assert (summary["changed"], summary["gone"]) == (len(OVERWRITTEN), len(DELETED))
