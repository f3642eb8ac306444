"""The estimate where users see it: ``xacct-map manifest --estimate`` and the start operator's dry run."""

from __future__ import annotations

import json

import pytest

from manifest_fixtures import light_aws
from xacct_map.cli import main


@pytest.fixture(scope="module")
def local_aws():
    with light_aws("estimate") as env:
        yield env


def _manifest(aws, pipeline, *extra):
    dest = f"s3://{pipeline.inventory_bucket}/xacct-map/manifests/estimate/manifest.json"
    return main(
        [
            "manifest",
            "--endpoint-url",
            aws.endpoint_url,
            "--region",
            "us-east-1",
            "--source",
            f"s3://{pipeline.source_bucket}/data/",
            "--dest",
            dest,
            "--role-arn",
            pipeline.source_role_arn,
            "--max-keys-per-batch",
            "7",
            "--no-progress",
            "--estimate",
            *extra,
        ]
    )


def test_manifest_estimate_prints_counts_and_costs(local_aws, capsys):
    aws, pipeline = local_aws
    assert _manifest(aws, pipeline) == 0
    out = capsys.readouterr().out
    objects = pipeline.objects
    assert f"estimate: {objects:,} objects, {pipeline.bytes:,} bytes, {-(-objects // 7)} batches" in out
    assert f"{objects + 1} S3 GETs" in out and "price table as of" in out and "EXPRESS children $" in out


def test_with_json_stdout_stays_one_json_object(local_aws, capsys):
    aws, pipeline = local_aws
    assert _manifest(aws, pipeline, "--json") == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["object_count"] == pipeline.objects
    assert "estimate:" in captured.err


def test_dry_run_logs_the_estimate(local_aws, run_context, capsys):
    from xacct_map.operators import StartDistributedMapOperator
    from xacct_map.version_compat import AirflowSkipException

    _, pipeline = local_aws
    manifest = {"bucket": pipeline.inventory_bucket, "key": "m.json", "object_count": 1_000_000, "batch_count": 10_000}
    manifest |= {"total_bytes": 10**12, "layout": "batched", "source_bucket": pipeline.source_bucket}
    start = StartDistributedMapOperator(
        task_id="start",
        aws_conn_id="xacct_map_pipeline",
        state_machine_arn="arn:aws:states:us-east-1:123456789012:stateMachine:xacct-map-estimate",
        manifest=manifest,
        dry_run=True,
    )
    with pytest.raises(AirflowSkipException):
        start.execute(run_context("run-estimate"))
    logged = capsys.readouterr().out  # the task log (structlog writes to stdout in tests)
    assert "estimate: 1,000,000 objects" in logged and "10,000 batches" in logged
