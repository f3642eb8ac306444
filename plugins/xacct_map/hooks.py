"""The source account's S3 client, built from Airflow connections (the Airflow side of
:mod:`xacct_map.core.cross_account`).

Two ways in, both standard:

* an Airflow AWS connection whose ``role_arn`` extra assumes into the source account (the amazon
  provider's own mechanism, see :class:`~airflow.providers.amazon.aws.hooks.base_aws.AwsBaseHook`);
* an explicit role ARN assumed with the pipeline connection's credentials.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import boto3
from airflow.providers.amazon.aws.hooks.s3 import S3Hook

from xacct_map.core.cross_account import assumed_role_session, bucket_region

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook


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
