"""BuildKeyManifestOperator and StartDistributedMapOperator against the embedded two-account AWS."""

from __future__ import annotations

import json

import pytest

from manifest_fixtures import manifest_operator
from xacct_map.core.naming import execution_name, manifest_key
from xacct_map.local.emulator import AWKWARD_KEYS, SOURCE_ACCOUNT
from xacct_map.operators import BuildKeyManifestOperator, PreflightOperator, StartDistributedMapOperator
from xacct_map.version_compat import AirflowException, AirflowFailException, AirflowSkipException


def _source_keys(aws, bucket, prefix=""):
    s3 = aws.client("s3", SOURCE_ACCOUNT)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def _manifest(aws, summary):
    body = aws.client("s3").get_object(Bucket=summary["bucket"], Key=summary["key"])["Body"].read()
    return json.loads(body)


def _build(pipeline, **kwargs):
    return manifest_operator(pipeline, **kwargs)


@pytest.mark.parametrize("via", ["source_aws_conn_id", "source_role_arn"])
def test_manifest_holds_every_key_exactly_once_byte_exact(local_aws, run_context, via):
    aws, pipeline = local_aws
    credentials = (
        {"source_aws_conn_id": "xacct_map_source"}
        if via == "source_aws_conn_id"
        else {"source_aws_conn_id": None, "source_role_arn": pipeline.source_role_arn}
    )
    summary = _build(pipeline, max_keys_per_batch=7, **credentials).execute(run_context(f"run-{via}"))

    batches = _manifest(aws, summary)
    keys = [k for b in batches for k in b["keys"]]
    expected = _source_keys(aws, pipeline.source_bucket, pipeline.source_prefix)
    # Exactly once: the same multiset (the parallel lister interleaves key ranges, so order may differ).
    assert sorted(keys) == sorted(expected) and len(set(keys)) == len(keys) == 40
    # Every awkward key survived unchanged (trailing slash, control character, 900-char name...).
    assert {pipeline.source_prefix + k for k in AWKWARD_KEYS} <= set(keys)
    assert all(b["bucket"] == pipeline.source_bucket and 1 <= len(b["keys"]) <= 7 for b in batches)
    assert summary["object_count"] == 40 and summary["batch_count"] == len(batches) == 6
    assert summary["total_bytes"] == pipeline.bytes == sum(b["bytes"] for b in batches)


def test_batches_close_on_bytes_and_a_big_object_travels_alone(local_aws, run_context):
    aws, pipeline = local_aws
    s3 = aws.client("s3", SOURCE_ACCOUNT)
    for name, size in [("a", 600), ("b", 600), ("big", 5000), ("c", 100)]:
        s3.put_object(Bucket=pipeline.source_bucket, Key=f"sized/{name}", Body=b"x" * size)
    summary = _build(pipeline, source_prefix="sized/", max_bytes_per_batch=1000).execute(run_context("run-bytes"))
    batches = _manifest(aws, summary)
    sizes = {"sized/a": 600, "sized/b": 600, "sized/big": 5000, "sized/c": 100}
    assert sorted(k for b in batches for k in b["keys"]) == sorted(sizes)
    for batch in batches:
        assert batch["bytes"] == sum(sizes[k] for k in batch["keys"])
        assert batch["bytes"] <= 1000 or len(batch["keys"]) == 1  # closed by the byte budget
    assert {"keys": ["sized/big"], "bytes": 5000} in [{"keys": b["keys"], "bytes": b["bytes"]} for b in batches]
    assert not any(set(b["keys"]) >= {"sized/a", "sized/b"} for b in batches)  # 1200 bytes: never together


def _nothing_at(aws, bucket, key):
    s3 = aws.client("s3")
    objects = s3.list_objects_v2(Bucket=bucket, Prefix=key).get("Contents", [])
    uploads = [u for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) if u["Key"] == key]
    return not objects and not uploads


def test_empty_prefix_lists_whole_bucket_and_on_empty_run_gives_an_empty_manifest(local_aws, run_context):
    aws, pipeline = local_aws
    whole = _build(pipeline, source_prefix="").execute(run_context("run-whole"))
    assert whole["object_count"] == len(_source_keys(aws, pipeline.source_bucket)) >= 40

    empty = _build(pipeline, source_prefix="nothing-here/", on_empty="run").execute(run_context("run-empty"))
    assert empty["object_count"] == 0 and _manifest(aws, empty) == []


@pytest.mark.parametrize(
    "on_empty, raised, why",
    [
        (None, AirflowSkipException, "empty prefix"),
        (None, AirflowSkipException, "filtered out"),
        ("fail", AirflowFailException, "filtered out"),
    ],
)
def test_an_empty_source_skips_by_default_or_fails_and_writes_nothing(local_aws, run_context, on_empty, raised, why):
    aws, pipeline = local_aws
    arguments = {"on_empty": on_empty} if on_empty else {}
    if why == "empty prefix":
        arguments["source_prefix"] = "nothing-here/"
    else:
        arguments["object_filter"] = {"suffixes": [".no-such-suffix"]}
    run_id = f"run-empty-{on_empty}-{why.replace(' ', '-')}"
    with pytest.raises(raised) as caught:
        _build(pipeline, **arguments).execute(run_context(run_id))
    message = str(caught.value)
    assert f"s3://{pipeline.source_bucket}/" in message and "nothing to process" in message
    if why == "filtered out":
        assert "the filters removed all" in message and "'suffix'" in message and ".no-such-suffix" in message
    else:
        assert "holds no objects" in message
    assert _nothing_at(aws, pipeline.inventory_bucket, manifest_key("test_dag", run_id))


def test_manifest_key_is_stable_per_run_and_distinct_across_runs(local_aws, run_context):
    _, pipeline = local_aws
    first = _build(pipeline).execute(run_context("run-a"))
    retry = _build(pipeline).execute(run_context("run-a"))
    other = _build(pipeline).execute(run_context("run-b"))
    assert first["key"] == retry["key"] != other["key"]
    assert first["object_count"] == retry["object_count"] == other["object_count"]


def test_missing_source_bucket_fails_naming_it(local_aws, run_context):
    _, pipeline = local_aws
    with pytest.raises(AirflowException, match=r"Source bucket 'no-such-source-bucket' does not exist"):
        _build(pipeline, source_bucket="no-such-source-bucket").execute(run_context("run-missing"))


def test_failed_listing_leaves_no_manifest_and_no_open_upload(local_aws, run_context):
    aws, pipeline = local_aws
    run = "run-fails"
    with pytest.raises(AirflowException):
        _build(pipeline, source_bucket="no-such-source-bucket").execute(run_context(run))
    s3 = aws.client("s3")
    assert "Contents" not in s3.list_objects_v2(
        Bucket=pipeline.inventory_bucket, Prefix="xacct-map/manifests/test_dag/run-fails"
    )
    assert not s3.list_multipart_uploads(Bucket=pipeline.inventory_bucket).get("Uploads")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"source_aws_conn_id": None, "source_role_arn": "not-an-arn"},
            r"source_role_arn 'not-an-arn' is not an IAM role ARN",
        ),
        ({"source_role_arn": "arn:aws:iam::111111111111:role/x"}, r"either source_aws_conn_id .* or source_role_arn"),
        ({"manifest_bucket": ""}, r"manifest_bucket is empty"),
        ({"max_keys_per_batch": 0}, r"at least 1"),
        ({"listing_parallelism": 0}, r"listing_parallelism must be at least 1 \(requests in flight\), not 0"),
        # Text is what a template renders without render_template_as_native_obj: refused, not guessed at.
        (
            {"listing_parallelism": "5"},
            r"listing_parallelism must be int, not str '5': .*render_template_as_native_obj",
        ),
        ({"max_keys_per_batch": True}, r"max_keys_per_batch must be int, not bool"),
        ({"listing_engine": "fast"}, r"listing_engine must be one of auto, parallel, paginator, not 'fast'"),
    ],
)
def test_bad_configuration_fails_with_a_clear_message(local_aws, run_context, kwargs, message):
    _, pipeline = local_aws
    with pytest.raises(AirflowFailException, match=message):
        _build(pipeline, **kwargs).execute(run_context("run-bad"))


def _start(pipeline, manifest, **kwargs):
    return StartDistributedMapOperator(
        task_id="start_map_run",
        aws_conn_id="xacct_map_pipeline",
        state_machine_arn=pipeline.state_machine_arn,
        manifest=manifest,
        source_account_id=SOURCE_ACCOUNT,
        **kwargs,
    )


def _executions(aws, pipeline, name):
    sfn = aws.client("stepfunctions")
    return [
        e for e in sfn.list_executions(stateMachineArn=pipeline.state_machine_arn)["executions"] if e["name"] == name
    ]


def test_retried_start_attaches_to_the_same_execution(local_aws, run_context):
    aws, pipeline = local_aws
    run_id = "scheduled__2026-11-26T00:00:00+00:00"
    manifest = _build(pipeline).execute(run_context(run_id))
    first = _start(pipeline, manifest).execute(run_context(run_id))
    retry = _start(pipeline, manifest).execute(run_context(run_id))
    assert first == retry
    assert first.endswith(":" + execution_name("test_dag", run_id))
    assert len(_executions(aws, pipeline, execution_name("test_dag", run_id))) == 1

    execution_input = json.loads(aws.client("stepfunctions").describe_execution(executionArn=first)["input"])
    assert execution_input["manifest"] == {"bucket": manifest["bucket"], "key": manifest["key"]}
    assert execution_input["source"]["bucket"] == pipeline.source_bucket
    assert execution_input["source"]["account_id"] == SOURCE_ACCOUNT


def test_retry_after_the_execution_ended_still_attaches(local_aws, run_context):
    aws, pipeline = local_aws
    run_id = "run-ended"
    manifest = _build(pipeline).execute(run_context(run_id))
    arn = _start(pipeline, manifest).execute(run_context(run_id))
    sfn = aws.client("stepfunctions")
    sfn.stop_execution(executionArn=arn, cause="test")  # now it exists and is not RUNNING
    assert _start(pipeline, manifest).execute(run_context(run_id)) == arn
    assert len(_executions(aws, pipeline, execution_name("test_dag", run_id))) == 1


def test_same_name_with_a_different_manifest_fails_clearly(local_aws, run_context):
    _, pipeline = local_aws
    run_id = "run-conflict"
    manifest = _build(pipeline).execute(run_context(run_id))
    _start(pipeline, manifest).execute(run_context(run_id))
    moved = dict(manifest, key="somewhere/else.json")
    with pytest.raises(AirflowFailException, match=r"already exists with a different input"):
        _start(pipeline, moved).execute(run_context(run_id))


def test_missing_state_machine_fails_naming_it(local_aws, run_context):
    _, pipeline = local_aws
    manifest = _build(pipeline).execute(run_context("run-nosm"))
    arn = pipeline.state_machine_arn.replace("xacct-map-distributed-map", "does-not-exist")
    op = StartDistributedMapOperator(
        task_id="s", aws_conn_id="xacct_map_pipeline", state_machine_arn=arn, manifest=manifest
    )
    with pytest.raises(AirflowFailException, match=r"State machine .*does-not-exist does not exist"):
        op.execute(run_context("run-nosm"))


def test_start_without_a_manifest_xcom_explains_what_to_pass(local_aws, run_context):
    _, pipeline = local_aws
    with pytest.raises(AirflowFailException, match=r"manifest is missing .*build_manifest.output"):
        _start(pipeline, {}).execute(run_context("run-nomanifest"))


def test_dry_run_builds_the_manifest_and_starts_nothing(local_aws, run_context):
    aws, pipeline = local_aws
    run_id = "run-dry"
    manifest = _build(pipeline).execute(run_context(run_id))
    with pytest.raises(AirflowSkipException, match=r"dry run: manifest s3://.*manifest.json built"):
        _start(pipeline, manifest, dry_run=True).execute(run_context(run_id))  # as the DAG's template renders it
    assert _executions(aws, pipeline, execution_name("test_dag", run_id)) == []
    assert aws.client("s3").head_object(Bucket=manifest["bucket"], Key=manifest["key"])["ContentLength"] > 0
    # False from the form starts it; text is refused, not guessed.
    assert (
        _start(pipeline, manifest, dry_run=False)
        .execute(run_context(run_id))
        .endswith(execution_name("test_dag", run_id))
    )
    with pytest.raises(AirflowFailException, match=r"dry_run must be bool, not str 'False'"):
        _start(pipeline, manifest, dry_run="False").execute(run_context(run_id))


def test_listing_parallelism_reaches_the_listing(local_aws, run_context, monkeypatch):
    from xacct_map.core import build

    aws, pipeline = local_aws
    asked = []
    listing = build.iter_objects
    monkeypatch.setattr(build, "iter_objects", lambda *a, **kw: asked.append(kw["parallelism"]) or listing(*a, **kw))
    summary = _build(pipeline, listing_parallelism=5).execute(run_context("run-parallelism"))
    assert asked == [5]
    keys = [k for b in _manifest(aws, summary) for k in b["keys"]]
    assert sorted(keys) == sorted(_source_keys(aws, pipeline.source_bucket, pipeline.source_prefix))


@pytest.mark.parametrize("engine, expected", [("auto", "parallel"), ("paginator", "plain"), ("parallel", "parallel")])
def test_listing_engine_reaches_the_listing_with_the_sources_credentials(
    local_aws, run_context, monkeypatch, engine, expected
):
    """The source connection's credentials and TLS setting reach the listing: "auto" lists the
    emulator (real HTTP) with the parallel engine; "paginator" never starts it."""
    from xacct_map.core import build

    aws, pipeline = local_aws
    used = []
    listing = build.iter_objects

    def recording(*a, **kw):
        stats: dict = {}
        yield from listing(*a, **kw, stats=stats)
        used.append((kw["listing_engine"], stats["engine"], kw["credentials"] is not None))

    monkeypatch.setattr(build, "iter_objects", recording)
    summary = _build(pipeline, listing_engine=engine).execute(run_context(f"run-engine-{engine}"))
    assert used == [(engine, expected, True)]
    keys = [k for b in _manifest(aws, summary) for k in b["keys"]]
    assert sorted(keys) == sorted(_source_keys(aws, pipeline.source_bucket, pipeline.source_prefix))
    assert "listing_engine" in BuildKeyManifestOperator.template_fields


def test_a_parallel_engine_that_cannot_run_fails_the_task_for_good(local_aws, run_context, monkeypatch):
    from xacct_map.core import build
    from xacct_map.core.listing import ListingEngineError

    _, pipeline = local_aws

    def refused(client, bucket, prefix, **_):
        raise ListingEngineError(f"listing_engine='parallel' cannot list s3://{bucket}/{prefix}: a proxy")
        yield  # a generator, as iter_objects' result is lazy

    monkeypatch.setattr(build, "iter_objects", refused)
    with pytest.raises(AirflowFailException, match=r"cannot list s3://.*: a proxy"):
        _build(pipeline, listing_engine="parallel").execute(run_context("run-refused"))


def test_unreachable_source_fails_retryably_and_leaves_no_manifest(local_aws, run_context, monkeypatch):
    from xacct_map.core import build
    from xacct_map.core.listing import ListingUnavailableError

    aws, pipeline = local_aws

    def unreachable(client, bucket, prefix, **_):
        yield from ()
        raise ListingUnavailableError(f"listing s3://{bucket}/{prefix} failed: could not get a page (timeout)")

    monkeypatch.setattr(build, "iter_objects", unreachable)
    with pytest.raises(AirflowException) as raised:
        _build(pipeline).execute(run_context("run-unreachable"))
    assert not isinstance(raised.value, AirflowFailException)  # a network problem: Airflow retries it
    assert f"s3://{pipeline.source_bucket}/{pipeline.source_prefix}" in str(raised.value)
    assert "can be retried" in str(raised.value)
    s3 = aws.client("s3")
    assert "Contents" not in s3.list_objects_v2(
        Bucket=pipeline.inventory_bucket, Prefix="xacct-map/manifests/test_dag/run-unreachable"
    )
    assert not s3.list_multipart_uploads(Bucket=pipeline.inventory_bucket).get("Uploads")


def _preflight(pipeline, **kwargs):
    args = dict(
        task_id="preflight",
        aws_conn_id="xacct_map_pipeline",
        source_aws_conn_id="xacct_map_source",
        source_bucket=pipeline.source_bucket,
        source_prefix=pipeline.source_prefix,
        source_account_id=SOURCE_ACCOUNT,
        manifest_bucket=pipeline.inventory_bucket,
        state_machine_arn=pipeline.state_machine_arn,
    )
    return PreflightOperator(**{**args, **kwargs})


def test_preflight_task_checks_manual_runs_with_the_source_connections_role(local_aws, run_context):
    _, pipeline = local_aws
    report = _preflight(pipeline).execute(run_context("manual__2026-11-27T00:00:00+00:00"))
    checks = {c["name"]: c for c in report["checks"]}
    assert report["ok"] and set(checks) == {
        "assume_lister_role",
        "list_source",
        "read_source_object",
        "write_inventory",
        "state_machine",
    }
    # The lister role came from the xacct_map_source connection's role_arn extra.
    assert pipeline.source_role_arn in checks["assume_lister_role"]["summary"]
    assert checks["list_source"]["status"] == "ok"


def test_preflight_task_skips_scheduled_runs_unless_always(local_aws, run_context):
    _, pipeline = local_aws
    scheduled = run_context("scheduled__2026-11-27T00:00:00+00:00")
    assert _preflight(pipeline).execute(scheduled) is None
    assert _preflight(pipeline, run_when="always").execute(scheduled)["ok"] is True
    assert _preflight(pipeline, run_when="never").execute(run_context("manual__x")) is None
    with pytest.raises(AirflowFailException, match=r"run_when='sometimes': choose one of"):
        _preflight(pipeline, run_when="sometimes").execute(scheduled)


def test_preflight_task_fails_with_the_report_and_the_fix(local_aws, run_context):
    _, pipeline = local_aws
    missing = pipeline.state_machine_arn.replace("xacct-map-distributed-map", "not-deployed")
    with pytest.raises(AirflowFailException) as raised:
        _preflight(pipeline, state_machine_arn=missing).execute(run_context("manual__missing"))
    message = str(raised.value)
    assert "xacct-map preflight: FAILED" in message and "[FAILED ] state_machine" in message
    assert "StateMachineDoesNotExist" in message and missing in message
    with pytest.raises(AirflowFailException, match=r"Preflight needs \['source_bucket'\]"):
        _preflight(pipeline, source_bucket="").execute(run_context("manual__empty"))
