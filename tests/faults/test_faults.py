"""Nothing lost under faults: every case of :mod:`fault_cases`, through the fault proxy, with its outcome.

The manifest and start tasks run as in a DAG run (the operators, the Airflow connections), with the
connections' endpoint at :class:`fault_proxy.FaultProxy` in front of the local AWS and botocore
set to 3 attempts and short timeouts. Outcome A and B are checked on the emulator itself, past
the proxy: the manifest, its sidecar, the open multipart uploads, the executions.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import multiprocessing
import os
import signal
import time
import warnings

import pytest
import requests
from fault_cases import CASES, README, Case, with_table
from fault_proxy import FaultProxy

from manifest_fixtures import manifest_operator
from xacct_map.core import build as core_build
from xacct_map.core import listing
from xacct_map.core import manifest as core_manifest
from xacct_map.core.manifest import metadata_key
from xacct_map.core.naming import execution_name, manifest_key
from xacct_map.local.emulator import SOURCE_ACCOUNT, LocalAws

OBJECTS = 24  # the awkward keys and a few more; listed 5 keys a page through the proxy
# Short, to keep the stalls short, but not so short that a healthy page misses it on a loaded 2-CPU box
# (CI runs the older targets beside this suite; at 0.5 s a retried page timed out there too).
READ_TIMEOUT = 1.5
CONFIG = {"retries": {"mode": "standard", "max_attempts": 3}, "connect_timeout": 1, "read_timeout": READ_TIMEOUT}
DAG_ID = "test_dag"


@pytest.fixture(scope="module")
def faulty_aws():
    """``(aws, pipeline, proxy)``: the deployed local AWS, reached by the connections through the proxy."""
    saved = dict(os.environ)
    with shared_botocore_models(), LocalAws(lambda_workers=1) as aws:
        # Executions need not run here (the suite is about starting exactly one): they stay RUNNING, and a
        # StartExecution of the same name and input returns the running one, as on AWS.
        requests.post(
            f"{aws.endpoint_url}/moto-api/config", json={"stepfunctions": {"execute_state_machine": False}}, timeout=10
        ).raise_for_status()
        pipeline = aws.deploy(objects=OBJECTS)
        with FaultProxy(aws.endpoint_url, max_keys=5) as proxy:
            os.environ.update(connections(aws, pipeline, proxy))
            try:
                yield aws, pipeline, proxy
            finally:
                os.environ.clear()
                os.environ.update(saved)


@contextlib.contextmanager
def shared_botocore_models():
    """One botocore data loader for every session of this process: each Airflow hook makes new sessions,
    and parsing the service models again for each is most of a case's time (2 s of 3). Same models."""
    import botocore.loaders
    import botocore.session
    from botocore.retries.standard import ExponentialBackoff

    loaders: dict = {}

    def create_loader(search_path_string=None):
        if search_path_string not in loaders:
            loaders[search_path_string] = botocore.loaders.create_loader(search_path_string)
        return loaders[search_path_string]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(botocore.session, "create_loader", create_loader)
        # The parallel engine's tries per page: 3 like botocore's here (10 by default, ~25 s of backoff).
        patch.setattr(core_build, "iter_objects", functools.partial(listing.iter_objects, max_attempts=3))
        # These manifests are a few KB, which one PutObject writes: the multipart upload that a
        # manifest of more than a part uses is what the uploading cases inject faults into.
        patch.setattr(core_manifest, "SMALL_OBJECT_PUT", False)
        # botocore's backoff between tries, a tenth as long (up to 0.1 s, 0.2 s instead of 1 s, 2 s).
        delay = ExponentialBackoff.delay_amount
        patch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: delay(self, context) / 10)
        yield


def connections(aws: LocalAws, pipeline, proxy: FaultProxy) -> dict[str, str]:
    """The local Airflow connections, with every endpoint at the proxy and botocore's retries few and fast."""
    env = aws.airflow_environment(pipeline)
    for name in ("AIRFLOW_CONN_XACCT_MAP_PIPELINE", "AIRFLOW_CONN_XACCT_MAP_SOURCE"):
        conn = json.loads(env[name].replace(aws.endpoint_url, proxy.url))
        conn["extra"]["config_kwargs"] = CONFIG
        env[name] = json.dumps(conn)
    return env


# -- running the tasks -------------------------------------------------------------------------


def build(pipeline, context, engine: str = "auto") -> dict:
    return manifest_operator(pipeline, listing_engine=engine, max_keys_per_batch=5).execute(context)


def start(pipeline, manifest: dict, context) -> str:
    from xacct_map.operators import StartDistributedMapOperator

    return StartDistributedMapOperator(
        task_id="start_map_run",
        aws_conn_id="xacct_map_pipeline",
        state_machine_arn=pipeline.state_machine_arn,
        manifest=manifest,
        source_account_id=SOURCE_ACCOUNT,
    ).execute(context)


# -- the two outcomes --------------------------------------------------------------------------


def source_keys(aws, pipeline) -> list[str]:
    s3 = aws.client("s3", SOURCE_ACCOUNT)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=pipeline.source_bucket, Prefix=pipeline.source_prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def objects_at(aws, pipeline, key: str) -> list[str]:
    listed = aws.client("s3").list_objects_v2(Bucket=pipeline.inventory_bucket, Prefix=key)
    return [o["Key"] for o in listed.get("Contents", [])]


def open_uploads(aws, pipeline, key: str) -> list[str]:
    listed = aws.client("s3").list_multipart_uploads(Bucket=pipeline.inventory_bucket, Prefix=key)
    return [u["UploadId"] for u in listed.get("Uploads", [])]


def executions(aws, pipeline, run_id: str) -> list[dict]:
    name = execution_name(DAG_ID, run_id)
    listed = aws.client("stepfunctions").list_executions(stateMachineArn=pipeline.state_machine_arn)["executions"]
    return [e for e in listed if e["name"] == name]


def assert_outcome_a(aws, pipeline, run_id: str, arn: str | None = None) -> None:
    """Every key exactly once, the sidecar matching the manifest, one execution, nothing open."""
    key = manifest_key(DAG_ID, run_id)
    s3 = aws.client("s3")
    body = s3.get_object(Bucket=pipeline.inventory_bucket, Key=key)["Body"].read()
    keys = [k for batch in json.loads(body) for k in batch["keys"]]
    assert sorted(keys) == source_keys(aws, pipeline), "every key exactly once"
    meta = json.loads(s3.get_object(Bucket=pipeline.inventory_bucket, Key=metadata_key(key))["Body"].read())
    assert meta["sha256"] == hashlib.sha256(body).hexdigest() and meta["object_count"] == OBJECTS
    assert open_uploads(aws, pipeline, key) == [], "no multipart upload left open"
    found = executions(aws, pipeline, run_id)
    assert len(found) == 1, f"exactly one execution, not {found}"
    if arn is not None:
        assert found[0]["executionArn"] == arn
    execution_input = json.loads(aws.client("stepfunctions").describe_execution(executionArn=arn or "")["input"])
    assert execution_input["manifest"] == {"bucket": pipeline.inventory_bucket, "key": key}


def assert_outcome_b(aws, pipeline, run_id: str, case: Case, error: BaseException, *, manifest_built: bool) -> None:
    """The error names the call and what to do; nothing half-done is left."""
    from xacct_map.version_compat import AirflowFailException

    message = str(error)
    assert case.call_name in message, f"the error names {case.call_name}: {message}"
    assert __import__("re").search(case.advice, message), f"the error says what to do ({case.advice}): {message}"
    assert "Traceback" not in message and len(message) < 2000, message
    key = manifest_key(DAG_ID, run_id)
    if not manifest_built:
        assert objects_at(aws, pipeline, key) == [], "no manifest (nor sidecar) at the run's key"
    assert open_uploads(aws, pipeline, key) == [], "no multipart upload left open"
    assert executions(aws, pipeline, run_id) == [], "no execution started"
    retryable = not isinstance(error, AirflowFailException)
    assert retryable or case.call == "AssumeRole", "a transient fault must leave the task retryable"


# -- the cases ---------------------------------------------------------------------------------


def _params():
    for case in CASES:
        for engine in case.engines:
            yield pytest.param(case, engine, id=case.id if engine == "auto" else f"{case.id}[{engine}]")


@pytest.mark.parametrize("case, engine", list(_params()))
def test_fault(case: Case, engine: str, faulty_aws, run_context, monkeypatch):
    aws, pipeline, proxy = faulty_aws
    proxy.reset()
    run_id = f"fault__{case.id}-{engine}"
    context = run_context(run_id, DAG_ID)
    if case.signal:
        return run_kill_case(case, aws, pipeline, proxy, run_id)
    signed_with = expire_credentials_quickly(proxy, monkeypatch) if case.special == "expiry" else set()
    manifest = None
    if case.phase == "starting":
        manifest = build(pipeline, context, engine)
    for fault in case.faults:
        proxy.add(fault.operation, fault.action, delay=READ_TIMEOUT + 1.5, **fault.kwargs())
    if case.outcome == "A":
        arn = None
        for _attempt in range(2):  # the task's own retry (Airflow's retries=1) where the case says so
            try:
                manifest = manifest or build(pipeline, context, engine)
                arn = start(pipeline, manifest, context)
                break
            except Exception as err:
                if not case.after_retry:
                    raise
                assert "StartExecution" in str(err), err
                proxy.reset()
        assert_outcome_a(aws, pipeline, run_id, arn)
        assert all(rule.fired for rule in proxy.rules) or case.special, "the fault was injected"
        if case.special == "expiry":
            assert len(signed_with) >= 2, f"the listing went on with refreshed credentials: {signed_with}"
        return
    with pytest.raises(Exception) as raised:
        if manifest is None:
            manifest = build(pipeline, context, engine)
        start(pipeline, manifest, context)
    assert all(rule.fired for rule in proxy.rules), "the fault was injected"
    assert_outcome_b(aws, pipeline, run_id, case, raised.value, manifest_built=case.phase == "starting")
    # Without the fault, a retry of the same run reaches A.
    proxy.reset()
    manifest = manifest if case.phase == "starting" else build(pipeline, context, engine)
    assert_outcome_a(aws, pipeline, run_id, start(pipeline, manifest, context))


def expire_credentials_quickly(proxy: FaultProxy, monkeypatch) -> set[str]:
    """Time compressed: the role's credentials enter botocore's refresh window 1 s after AssumeRole and
    S3 rejects them (400 ExpiredToken) 2.5 s after it; list pages take 0.4 s, so the listing outlives them.
    Returns the access keys the listing's requests are signed with (filled as they come)."""
    import re
    from datetime import datetime, timedelta, timezone

    from xacct_map._engine import coordinator

    monkeypatch.setattr(coordinator, "CREDENTIAL_CHECK_SECONDS", 0.2)  # 10 s against a 15-minute window
    deadlines: dict[str, float] = {}

    def short_lived(body: bytes, _proxy, _request) -> bytes:
        expiry = datetime.now(timezone.utc) + timedelta(minutes=15, seconds=1)
        key = re.search(rb"<AccessKeyId>([^<]+)</AccessKeyId>", body)
        if key:
            deadlines[key.group(1).decode()] = time.time() + 2.5
        return re.sub(
            rb"<Expiration>[^<]+</Expiration>", f"<Expiration>{expiry:%Y-%m-%dT%H:%M:%SZ}</Expiration>".encode(), body
        )

    used: set[str] = set()

    def expired(request) -> bool:
        used.add(request.access_key)
        deadline = deadlines.get(request.access_key)
        return deadline is not None and time.time() > deadline

    proxy.add("sts:AssumeRole", "body", rewrite=short_lived, times=1000)
    proxy.add("s3:ListObjectsV2", "status", status=400, code="ExpiredToken", times=1000, when=expired)
    proxy.latency["s3:ListObjectsV2"] = 0.4
    return used


# -- killed tasks --------------------------------------------------------------------------------


def run_kill_case(case: Case, aws, pipeline, proxy: FaultProxy, run_id: str) -> None:
    """Run the task in a process of its own, kill it in the middle of ``case.hold``, then retry it here."""
    manifest = build(pipeline, _context(run_id)) if case.phase == "starting" else None
    rule = proxy.add(case.hold, "hold", before=case.phase != "starting")
    # A fork of this process: Airflow and botocore's models are loaded already (a new interpreter takes seconds).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads: the child only runs the task
        child = multiprocessing.get_context("fork").Process(
            target=run_task, args=(case.phase, pipeline, run_id, manifest), daemon=True
        )
        child.start()
    try:
        assert rule.entered.wait(30), "the task reached the call"
        os.kill(child.pid or 0, getattr(signal, case.signal))
        child.join(3)  # Airflow's supervisor escalates to SIGKILL after a grace period
        if child.exitcode is None:
            child.kill()
            child.join(5)
    finally:
        rule.release.set()
        if child.exitcode is None:
            child.kill()
            child.join(5)
    key = manifest_key(DAG_ID, run_id)
    if case.phase != "starting":
        if case.signal == "SIGTERM":  # on_kill aborted the upload: the killed try leaves nothing behind
            assert child.exitcode != 0 and open_uploads(aws, pipeline, key) == [], (
                f"SIGTERM aborts the upload {child.exitcode} {proxy.seen}"
            )
        else:  # SIGKILL: nothing can run; its open upload is for the retry to abort
            assert child.exitcode == -signal.SIGKILL and len(open_uploads(aws, pipeline, key)) == 1
        assert objects_at(aws, pipeline, key) == [], "no manifest"
    # The retry, in this process, without faults.
    proxy.reset()
    context = _context(run_id)
    manifest = manifest or build(pipeline, context)
    assert_outcome_a(aws, pipeline, run_id, start(pipeline, manifest, context))


def run_task(phase: str, pipeline, run_id: str, manifest: dict | None) -> None:
    """The task in the forked process; SIGTERM handled as Airflow 3's task runner does (``on_kill()``)."""
    from xacct_map.operators import BuildKeyManifestOperator, StartDistributedMapOperator

    operator: BuildKeyManifestOperator | StartDistributedMapOperator
    if phase == "starting":
        operator = StartDistributedMapOperator(
            task_id="start_map_run",
            aws_conn_id="xacct_map_pipeline",
            state_machine_arn=pipeline.state_machine_arn,
            manifest=manifest,
            source_account_id=SOURCE_ACCOUNT,
        )
    else:
        operator = manifest_operator(pipeline, max_keys_per_batch=5)
    signal.signal(signal.SIGTERM, lambda signum, frame: operator.on_kill())
    try:
        operator.execute(_context(run_id))
    except BaseException:
        os._exit(1)
    os._exit(0)


def _context(run_id: str) -> dict:
    import datetime

    from airflow.sdk import DAG

    from task_fixtures import FakeTaskInstance

    dag = DAG(DAG_ID, schedule=None, start_date=datetime.datetime(2026, 1, 1))
    return {"dag": dag, "run_id": run_id, "ti": FakeTaskInstance(), "task_instance": FakeTaskInstance()}


# -- the README --------------------------------------------------------------------------------


def test_readme_failure_guarantees_table_is_generated_from_the_cases():
    readme = README.read_text()
    assert readme == with_table(readme), (
        "README's Failure guarantees table is stale: python scripts/failure_table.py --write"
    )
