"""Credentials for the source account: an assumed role, refreshed before it expires.

Two ways in, both standard:

* an Airflow AWS connection whose ``role_arn`` extra assumes into the source account (the amazon
  provider's own mechanism, see :class:`~airflow.providers.amazon.aws.hooks.base_aws.AwsBaseHook`);
* an explicit role ARN assumed with the pipeline connection's credentials.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import boto3
from botocore.credentials import DeferredRefreshableCredentials
from botocore.session import get_session

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

_SESSION_NAME_UNSAFE = re.compile(r"[^\w+=,.@-]")
ROLE_ARN = re.compile(r"^arn:aws[\w-]*:iam::(\d{12}):role/[\w+=,.@/-]{1,512}$")


def role_session_name(*parts: str) -> str:
    """A RoleSessionName (2-64 chars of ``[\\w+=,.@-]``) that shows up in the source account's CloudTrail."""
    name = _SESSION_NAME_UNSAFE.sub("-", "-".join(p for p in parts if p))[:64]
    return name if len(name) >= 2 else "xacct-map"


def account_of_role(role_arn: str) -> str:
    """The 12-digit account id in ``role_arn``; raises ``ValueError`` naming the ARN when it is not one."""
    match = ROLE_ARN.match(role_arn or "")
    if not match:
        raise ValueError(
            f"source_role_arn {role_arn!r} is not an IAM role ARN; expected "
            "arn:aws:iam::<12-digit source account id>:role/<role name>"
        )
    return match.group(1)


def assumed_role_session(
    sts_client,
    role_arn: str,
    *,
    session_name: str,
    external_id: str | None = None,
    region_name: str | None = None,
    duration_seconds: int = 3600,
) -> boto3.session.Session:
    """A boto3 session for ``role_arn`` whose credentials renew themselves before they expire.

    Listing tens of millions of keys can outlast one set of role credentials; botocore refreshes
    :class:`RefreshableCredentials` shortly before their expiry by calling ``refresh`` again.
    """
    account_of_role(role_arn)

    def refresh() -> dict:
        kwargs = {"RoleArn": role_arn, "RoleSessionName": session_name, "DurationSeconds": duration_seconds}
        if external_id:
            kwargs["ExternalId"] = external_id
        creds = sts_client.assume_role(**kwargs)["Credentials"]
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": creds["Expiration"].isoformat(),
        }

    botocore_session = get_session()
    botocore_session._credentials = DeferredRefreshableCredentials(
        refresh_using=refresh, method="sts-assume-role"
    )
    return boto3.session.Session(botocore_session=botocore_session, region_name=region_name)


def bucket_region(s3_client, bucket: str, *, expected_bucket_owner: str | None = None) -> str | None:
    """The Region ``bucket`` lives in, from HeadBucket's ``x-amz-bucket-region`` header; None if unknown.

    S3 puts that header on HeadBucket's answer whether or not the caller may access the bucket
    (200, 301 from another Region's endpoint, 400 for a request signed for the wrong Region, 403),
    so a lister whose role only has ``s3:ListBucket`` under a prefix still learns the Region. A 404
    (no such bucket) has no header: then None, and the listing itself reports the missing bucket.

    :param s3_client: any S3 client that can reach the bucket's partition.
    :param expected_bucket_owner: sent as ``ExpectedBucketOwner``: the bucket of another account
        than the expected one answers 403 (still with its Region), never a 200.
    """
    from botocore.exceptions import ClientError

    owner = {"ExpectedBucketOwner": expected_bucket_owner} if expected_bucket_owner else {}
    try:
        response = s3_client.head_bucket(Bucket=bucket, **owner)
    except ClientError as err:
        response = err.response
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}) or {}
    region = headers.get("x-amz-bucket-region") or response.get("BucketRegion")
    return region or None


def source_s3_client(
    pipeline_hook: AwsBaseHook,
    *,
    source_aws_conn_id: str | None,
    source_role_arn: str | None,
    source_external_id: str | None,
    source_region: str | None,
    session_name: str,
    source_bucket: str | None = None,
    expected_bucket_owner: str | None = None,
):
    """An S3 client acting as the source account, in the source bucket's Region.

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
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

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

    def build(region: str | None):
        if source_aws_conn_id:
            return S3Hook(aws_conn_id=source_aws_conn_id, region_name=region).get_conn()
        if role_session is not None:
            return _client(pipeline_hook, role_session, "s3", region_name=region)
        # Same account as the pipeline (or a bucket policy that trusts the pipeline role directly).
        return _client(pipeline_hook, pipeline_hook.get_session(region_name=region), "s3")

    client = build(source_region)
    if source_region or not source_bucket:
        return client
    discovered = bucket_region(client, source_bucket, expected_bucket_owner=expected_bucket_owner)
    if discovered and discovered != client.meta.region_name:
        # A client for the bucket's Region, with the same credentials (an assumed role is not assumed again).
        client = build(discovered)
    return client


def _client(hook: AwsBaseHook, session: boto3.session.Session, service: str, region_name: str | None = None):
    """A client of ``session`` with the connection's endpoint, botocore config and TLS settings."""
    return session.client(
        service,
        region_name=region_name,
        endpoint_url=hook.conn_config.get_service_endpoint_url(service),
        config=hook.config,
        verify=hook.verify,
    )
