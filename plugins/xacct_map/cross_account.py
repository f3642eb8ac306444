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


def source_s3_client(
    pipeline_hook: AwsBaseHook,
    *,
    source_aws_conn_id: str | None,
    source_role_arn: str | None,
    source_external_id: str | None,
    source_region: str | None,
    session_name: str,
):
    """An S3 client acting as the source account.

    With ``source_aws_conn_id`` the connection does the work (its ``role_arn`` extra assumes the
    role); with ``source_role_arn`` the pipeline connection's credentials assume it. The client keeps
    the connection's endpoint settings, so the same code reaches AWS and the local emulator.
    """
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    if source_aws_conn_id and source_role_arn:
        raise ValueError(
            "Give either source_aws_conn_id (a connection whose role_arn extra assumes into the source "
            "account) or source_role_arn (assumed with aws_conn_id's credentials), not both."
        )
    if source_aws_conn_id:
        return S3Hook(aws_conn_id=source_aws_conn_id, region_name=source_region).get_conn()
    if not source_role_arn:
        # Same account as the pipeline (or a bucket policy that trusts the pipeline role directly).
        return _client(pipeline_hook, pipeline_hook.get_session(region_name=source_region), "s3")
    session = assumed_role_session(
        _client(pipeline_hook, pipeline_hook.get_session(), "sts"),
        source_role_arn,
        session_name=session_name,
        external_id=source_external_id,
        region_name=source_region or pipeline_hook.conn_region_name,
    )
    return _client(pipeline_hook, session, "s3")


def _client(hook: AwsBaseHook, session: boto3.session.Session, service: str):
    """A client of ``session`` with the connection's endpoint, botocore config and TLS settings."""
    return session.client(
        service,
        endpoint_url=hook.conn_config.get_service_endpoint_url(service),
        config=hook.config,
        verify=hook.verify,
    )
