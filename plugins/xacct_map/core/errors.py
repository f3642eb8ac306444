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


def requester_pays_hint(request_payer: str | None, option: str = "request_payer='requester'") -> str:
    """What a 403 on a source may also mean: a Requester Pays bucket read without saying who pays."""
    if request_payer:
        return ""
    return (
        " If the bucket is Requester Pays (shared and partner data sets often are), every request must say "
        f"the reader pays: set {option} (CLI: --request-payer requester)."
    )


def explain_source_error(
    err: ClientError, *, bucket: str, prefix: str, identity: str, owner: str | None, request_payer: str | None = None
) -> str:
    """Explain a failed ListObjectsV2 on the source bucket (a bucket, an access point ARN or alias)."""
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
        resource = bucket if bucket.startswith("arn:") else f"arn:aws:s3:::{bucket}"
        via = (
            " (an access point: its policy, and the bucket's policy delegating to access points)"
            if bucket.startswith("arn:") or bucket.endswith("-s3alias")
            else ""
        )
        return (
            f"Access denied listing {where} as {identity} ({code}). The source account's bucket policy{via} "
            f"(or the assumed role's policy) must allow s3:ListBucket on {resource}"
            f"{' with an s3:prefix condition matching ' + repr(prefix) if prefix else ''}; "
            f"`xacct-map policy` prints the exact statements.{hint}{requester_pays_hint(request_payer)}"
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
