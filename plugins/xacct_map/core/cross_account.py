"""Credentials for the source account: an assumed role, refreshed before it expires, and the
source bucket's Region.

Airflow-free: these take boto3 clients and plain values. :mod:`xacct_map.hooks` builds the source
account's S3 client from Airflow connections with them.
"""

from __future__ import annotations

import re

import boto3
from botocore.credentials import DeferredRefreshableCredentials
from botocore.session import get_session

from xacct_map.core.arns import ROLE_ARN
from xacct_map.core.s3uri import access_point

_SESSION_NAME_UNSAFE = re.compile(r"[^\w+=,.@-]")


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
    return match["account"]


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
    botocore_session._credentials = DeferredRefreshableCredentials(refresh_using=refresh, method="sts-assume-role")
    return boto3.session.Session(botocore_session=botocore_session, region_name=region_name)


def bucket_region(s3_client, bucket: str, *, expected_bucket_owner: str | None = None) -> str | None:
    """The Region ``bucket`` lives in, from HeadBucket's ``x-amz-bucket-region`` header; None if unknown.

    S3 puts that header on HeadBucket's answer whether or not the caller may access the bucket
    (200, 301 from another Region's endpoint, 400 for a request signed for the wrong Region, 403),
    so a lister whose role only has ``s3:ListBucket`` under a prefix still learns the Region. A 404
    (no such bucket) has no header: then None, and the listing itself reports the missing bucket.

    An access point ARN's Region is the ARN's (no request); an alias is asked like a bucket.

    :param s3_client: any S3 client that can reach the bucket's partition.
    :param expected_bucket_owner: sent as ``ExpectedBucketOwner``: the bucket of another account
        than the expected one answers 403 (still with its Region), never a 200.
    """
    from botocore.exceptions import ClientError

    point = access_point(bucket)
    if point is not None:  # an access point ARN names its Region
        return point.region
    owner = {"ExpectedBucketOwner": expected_bucket_owner} if expected_bucket_owner else {}
    try:
        response = s3_client.head_bucket(Bucket=bucket, **owner)
    except ClientError as err:
        response = err.response
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}) or {}
    region = headers.get("x-amz-bucket-region") or response.get("BucketRegion")
    return region or None
