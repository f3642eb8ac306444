"""The hooks of the Airflow shells.

* :class:`DistributedMapHook`: the pipeline account's Step Functions calls the operators, the sensor
  and the trigger make (start once per run, describe, Map Run snapshot, redrive, stop), as methods
  of the amazon provider's :class:`~airflow.providers.amazon.aws.hooks.step_function.StepFunctionHook`.
* :func:`source_s3_client`: the source account's S3 client, built from Airflow connections (the
  Airflow side of :mod:`xacct_map.core.cross_account`).

Two ways into the source account, both standard:

* an Airflow AWS connection whose ``role_arn`` extra assumes into the source account (the amazon
  provider's own mechanism, see :class:`~airflow.providers.amazon.aws.hooks.base_aws.AwsBaseHook`);
* an explicit role ARN assumed with the pipeline connection's credentials.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, NamedTuple

import boto3
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.amazon.aws.hooks.step_function import StepFunctionHook

from xacct_map.core import redact
from xacct_map.core.cross_account import assumed_role_session, bucket_region
from xacct_map.core.limits import bucket_location_problem, child_input_problem
from xacct_map.core.map_run import (
    RUNNING,
    MapRunSnapshot,
    build_snapshot,
    failure_details,
    merge_map_runs,
    reported_changes,
    snapshot_async,
)
from xacct_map.core.naming import execution_arn as derive_execution_arn

# Every task that uses these hooks logs through botocore: keep role credentials out, even at DEBUG.
redact.install()

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook


#: The ``error`` StopExecution records when a waiting task is killed.
STOP_ERROR = "xacct-map.TaskKilled"


class DistributedMapHook(StepFunctionHook):
    """
    Interact with the Distributed Map state machine and its executions (Step Functions).

    The amazon provider's :class:`~airflow.providers.amazon.aws.hooks.step_function.StepFunctionHook`
    (``describe_execution``, ``start_execution``, ``conn``) plus the calls xacct-map makes: a start
    that is idempotent per execution name, the Map Run of an execution, redrive and stop.

    Additional arguments (such as ``aws_conn_id``) may be specified and are passed down to the
    underlying :class:`~airflow.providers.amazon.aws.hooks.base_aws.AwsBaseHook`.
    """

    def start_named_execution(self, state_machine_arn: str, name: str, execution_input: str) -> tuple[str, bool]:
        """
        Start an execution named ``name``, or find the one that exists under that name.

        Step Functions returns the running execution for the same name and the same input; any other
        execution of that name (ended, or with another input) raises ``ExecutionAlreadyExists``, and
        its ARN (derived from the state machine ARN and the name) is returned instead.

        .. seealso::
            - :external+boto3:py:meth:`SFN.Client.start_execution`

        :param state_machine_arn: ARN of the state machine.
        :param name: the execution name (deterministic per DAG run).
        :param execution_input: the input, as JSON text (canonical, so a retry sends the same bytes).
        :return: ``(execution ARN, started)``; ``started`` is False when an execution of that name
            already existed and StartExecution refused to start another.
        """
        client = self.conn
        try:
            response = client.start_execution(stateMachineArn=state_machine_arn, name=name, input=execution_input)
        except client.exceptions.ExecutionAlreadyExists:
            return derive_execution_arn(state_machine_arn, name), False
        return response["executionArn"], True

    def list_map_runs(self, execution_arn: str) -> list[dict[str, Any]]:
        """
        The Map Runs of an execution (empty until its Map state started).

        .. seealso::
            - :external+boto3:py:meth:`SFN.Client.list_map_runs`

        :param execution_arn: ARN of the execution.
        """
        return self.conn.list_map_runs(executionArn=execution_arn).get("mapRuns", [])

    def describe_map_run(self, map_run_arn: str) -> dict[str, Any]:
        """
        Describe a Map Run: its status and item counts.

        .. seealso::
            - :external+boto3:py:meth:`SFN.Client.describe_map_run`

        :param map_run_arn: ARN of the Map Run.
        """
        return self.conn.describe_map_run(mapRunArn=map_run_arn)

    def snapshot(self, execution_arn: str) -> MapRunSnapshot:
        """
        The execution's status and its Map Runs' item counts (one Map Run per manifest part, summed), as one snapshot.

        :param execution_arn: ARN of the execution.
        """
        execution = self.describe_execution(execution_arn)
        described = [self.describe_map_run(run["mapRunArn"]) for run in self.list_map_runs(execution_arn)]
        return build_snapshot(execution_arn, execution, merge_map_runs(described))

    async def snapshot_async(self, client: Any, execution_arn: str) -> MapRunSnapshot:
        """
        :meth:`snapshot` with the hook's async client (``await hook.get_async_conn()``), for the triggerer.

        :param client: an open client of :meth:`get_async_conn`.
        :param execution_arn: ARN of the execution.
        """
        return await snapshot_async(client, execution_arn)

    def failure_details(self, snap: MapRunSnapshot) -> str:
        """
        The first failed child executions' errors and, with a ResultWriter, a sample of the FAILED results.

        Best effort (:func:`xacct_map.core.map_run.failure_details`): never raises.

        :param snap: the execution's final snapshot.
        """
        return failure_details(self.conn, snap, s3_client=self.pipeline_s3())

    def reported_changes(self, snap: MapRunSnapshot) -> dict | None:
        """Objects changed or gone since the listing, when the execution's items were pinned (its input's
        ``source.on_changed``): :func:`xacct_map.core.map_run.reported_changes`. Best effort: None on any error."""
        try:
            execution = self.conn.describe_execution(executionArn=snap.execution_arn)
            pinned = (json.loads(execution.get("input") or "{}").get("source") or {}).get("on_changed")
            return reported_changes(self.pipeline_s3(), snap) if pinned else None
        except Exception as err:  # noqa: BLE001 - a count for the summary, never a reason to fail
            self.log.warning("Could not count the objects changed since the listing: %s", err)
            return None

    def pipeline_s3(self):
        """An S3 client of the same connection (pipeline account)."""
        return self.get_session().client(
            "s3", endpoint_url=self.conn_config.get_service_endpoint_url("s3"), config=self.config, verify=self.verify
        )

    def start_problem(self, state_machine_arn: str, manifest: dict, execution_input: dict) -> str | None:
        """Why an execution of ``state_machine_arn`` on ``manifest`` would fail part-way, or None.

        Checked before StartExecution (:mod:`xacct_map.core.limits`): the manifest's largest child
        input still fits 256 KiB with this input's ``source`` block, and the manifest bucket is in the
        state machine's account and Region (one HeadBucket).

        :param state_machine_arn: ARN of the state machine.
        :param manifest: the manifest summary (:class:`~xacct_map.operators.BuildKeyManifestOperator`'s XCom).
        :param execution_input: the execution input about to be sent.
        """
        problem = child_input_problem(manifest, execution_input.get("source") or {})
        if problem:
            return problem
        bucket = (execution_input.get("manifest") or {}).get("bucket")
        return bucket_location_problem(self.pipeline_s3(), bucket, state_machine_arn) if bucket else None

    def redrive_execution(self, execution_arn: str) -> None:
        """
        Redrive an execution that ended FAILED, TIMED_OUT or ABORTED: only its unsuccessful items run again.

        .. seealso::
            - :external+boto3:py:meth:`SFN.Client.redrive_execution`

        :param execution_arn: ARN of the execution.
        """
        self.conn.redrive_execution(executionArn=execution_arn)

    def stop_if_running(self, execution_arn: str, cause: str) -> bool:
        """
        StopExecution when the execution still runs.

        .. seealso::
            - :external+boto3:py:meth:`SFN.Client.stop_execution`

        :param execution_arn: ARN of the execution.
        :param cause: the cause recorded on the execution (names the DAG run).
        :return: True if it was stopped.
        """
        if self.describe_execution(execution_arn)["status"] != RUNNING:
            return False
        self.conn.stop_execution(executionArn=execution_arn, error=STOP_ERROR, cause=cause[:32768])
        return True

    async def stop_if_running_async(self, client: Any, execution_arn: str, cause: str) -> bool:
        """
        :meth:`stop_if_running` with the hook's async client, for the triggerer.

        :param client: an open client of :meth:`get_async_conn`.
        :param execution_arn: ARN of the execution.
        :param cause: the cause recorded on the execution.
        :return: True if it was stopped.
        """
        if (await client.describe_execution(executionArn=execution_arn))["status"] != RUNNING:
            return False
        await client.stop_execution(executionArn=execution_arn, error=STOP_ERROR, cause=cause[:32768])
        return True


class SourceS3(NamedTuple):
    """The source account's S3 client, with what the parallel listing needs besides it."""

    client: Any  # a boto3 S3 client
    credentials: Any  # botocore credentials of the client's identity (refreshable for a role)
    verify: bool | str | None  # the client's TLS verification, as the connection configures it


def source_s3_client(pipeline_hook: AwsBaseHook, **kwargs):
    """:func:`source_s3`'s client alone (same arguments)."""
    return source_s3(pipeline_hook, **kwargs).client


def source_s3(
    pipeline_hook: AwsBaseHook,
    *,
    source_aws_conn_id: str | None,
    source_role_arn: str | None,
    source_external_id: str | None,
    source_region: str | None,
    session_name: str,
    source_bucket: str | None = None,
    expected_bucket_owner: str | None = None,
) -> SourceS3:
    """An S3 client acting as the source account, in the source bucket's Region, with its
    credentials and TLS setting (for :func:`xacct_map.core.listing.iter_objects`).

    With ``source_aws_conn_id`` the connection does the work (its ``role_arn`` extra assumes the
    role); with ``source_role_arn`` the pipeline connection's credentials assume it. The client keeps
    the connection's endpoint settings, so the same code reaches AWS and the local emulator.

    Region: ``source_region`` when given. Otherwise, when ``source_bucket`` is given, the bucket's
    Region is discovered with one HeadBucket (:func:`bucket_region`) and the client is built for it,
    so every request goes straight to the bucket's Region (no redirect per request, a SigV4 scope
    that matches, and ``client.meta.region_name`` names the Region for the execution input). The
    manifest and the state machine stay in the pipeline connection's Region.

    :param source_bucket: the bucket to be listed; enables Region discovery.
    :param expected_bucket_owner: the source account id, sent with the discovery HeadBucket.
    """
    if source_aws_conn_id and source_role_arn:
        raise ValueError(
            "Give either source_aws_conn_id (a connection whose role_arn extra assumes into the source "
            "account) or source_role_arn (assumed with aws_conn_id's credentials), not both."
        )

    role_session = None
    if source_role_arn and not source_aws_conn_id:
        # One session (one set of refreshable role credentials) for every client built below.
        role_session = assumed_role_session(
            _client(pipeline_hook, pipeline_hook.get_session(), "sts"),
            source_role_arn,
            session_name=session_name,
            external_id=source_external_id,
            region_name=source_region or pipeline_hook.conn_region_name,
        )

    def build(region: str | None) -> SourceS3:
        if source_aws_conn_id:
            hook = S3Hook(aws_conn_id=source_aws_conn_id, region_name=region)
            # The connection's identity (a role_arn extra is assumed again, lazily, for these).
            credentials = hook.get_session(region_name=hook.region_name).get_credentials()
            return SourceS3(hook.get_conn(), credentials, hook.verify)
        if role_session is not None:
            client = _client(pipeline_hook, role_session, "s3", region_name=region)
            return SourceS3(client, role_session.get_credentials(), pipeline_hook.verify)
        # Same account as the pipeline (or a bucket policy that trusts the pipeline role directly).
        session = pipeline_hook.get_session(region_name=region)
        return SourceS3(_client(pipeline_hook, session, "s3"), session.get_credentials(), pipeline_hook.verify)

    source = build(source_region)
    if source_region or not source_bucket:
        return source
    discovered = bucket_region(source.client, source_bucket, expected_bucket_owner=expected_bucket_owner)
    if discovered and discovered != source.client.meta.region_name:
        # A client for the bucket's Region, with the same credentials (an assumed role is not assumed again).
        source = build(discovered)
    return source


def _client(hook: AwsBaseHook, session: boto3.session.Session, service: str, region_name: str | None = None):
    """A client of ``session`` with the connection's endpoint, botocore config and TLS settings."""
    return session.client(
        service,
        region_name=region_name,
        endpoint_url=hook.conn_config.get_service_endpoint_url(service),
        config=hook.config,
        verify=hook.verify,
    )
