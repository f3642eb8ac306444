"""Turn AWS errors into messages that name the resource and say what to do."""

from __future__ import annotations

from botocore.exceptions import ClientError

_ACCESS_DENIED = {"AccessDenied", "AccessDeniedException", "AllAccessDisabled", "InvalidAccessKeyId"}
#: Answers that another try may not get: throttling and the service's own failures, after botocore's retries.
TRANSIENT = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "InternalError",
    "ServiceUnavailable",
    "RequestTimeout",
    "500",
    "502",
    "503",
    "504",
}
_EXPIRED = {"ExpiredToken", "ExpiredTokenException", "TokenRefreshRequired", "RequestExpired"}


def error_code(err: ClientError) -> str:
    return err.response.get("Error", {}).get("Code", "") or str(
        err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
    )


def explain_source_error(err: ClientError, *, bucket: str, prefix: str, identity: str, owner: str | None) -> str:
    """Explain a failed ListObjectsV2 on the source bucket."""
    code = error_code(err)
    where = f"s3://{bucket}/{prefix}"
    if code in ("NoSuchBucket", "404"):
        return (
            f"Source bucket {bucket!r} does not exist (or is not visible to {identity}). "
            "Check source_bucket (and source_region for a bucket in another Region)."
        )
    if code in _ACCESS_DENIED or code == "403":
        hint = (
            f" ExpectedBucketOwner={owner} was sent: a 403 also means the bucket belongs to another "
            "account than source_account_id."
            if owner
            else ""
        )
        return (
            f"Access denied listing {where} as {identity} ({code}). The source account's bucket policy "
            f"(or the assumed role's policy) must allow s3:ListBucket on arn:aws:s3:::{bucket}"
            f"{' with an s3:prefix condition matching ' + repr(prefix) if prefix else ''}; "
            f"`xacct-map policy` prints the exact statements.{hint}"
        )
    if code == "PermanentRedirect" or code == "AuthorizationHeaderMalformed":
        return (
            f"Source bucket {bucket!r} is in another Region than the client used ({code}); "
            "set source_region to the bucket's Region."
        )
    call = err.operation_name or "ListObjectsV2"
    message = err.response.get("Error", {}).get("Message", err)
    if code in TRANSIENT:
        return (
            f"Listing {where} as {identity} failed: {call} answered {code} ({message}) on every retry. S3 is "
            "throttling or failing; nothing was written (the manifest upload was aborted): the task can be "
            "retried (Airflow's retries do it); if it keeps happening, lower listing_parallelism."
        )
    if code in _EXPIRED:
        return (
            f"Listing {where} as {identity} failed: {call} was refused with {code} ({message}): the credentials "
            "expired during the listing. Nothing was written (the manifest upload was aborted): retry the task, "
            "it gets fresh credentials. If it repeats, check this machine's clock and the role's maximum "
            "session duration."
        )
    return f"Listing {where} as {identity} failed: {call}: {code}: {message}"


def explain_assume_role_error(err: ClientError, *, role_arn: str) -> str:
    code = error_code(err)
    return (
        f"Could not assume source role {role_arn} ({code}). The role's trust policy must allow "
        "sts:AssumeRole for the pipeline identity (aws_conn_id), with the same ExternalId if one is "
        "configured; `xacct-map policy` prints it."
    )
