"""Argument types of the ``xacct-map`` commands: every value is checked where it enters.

A bad value stops argparse before anything runs, with one line that names the option, the value
and what is allowed (``xacct-map manifest: error: argument --parallelism: 0 is out of range: give
an integer from 1 to 1024``) and exit code 2. Import-light: ``xacct-map --help`` loads this.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from xacct_map.core.arns import ROLE_ARN
from xacct_map.core.filters import STORAGE_CLASSES
from xacct_map.setup import policies

Check = Callable[[str], Any]

_STATE_MACHINE_ARN = re.compile(
    r"^arn:(aws|aws-cn|aws-us-gov):states:[a-z]{2}(-gov)?-[a-z]+-\d{1,2}:\d{12}:stateMachine:[^:\s]{1,80}$"
)
_CRON_FIELD = re.compile(r"^[\w*/,?#-]+$")
_SCHEDULE_PRESETS = (
    "None",
    "@once",
    "@continuous",
    "@hourly",
    "@daily",
    "@weekly",
    "@monthly",
    "@quarterly",
    "@yearly",
)


def _named(name: str, check: Check) -> Check:
    check.__name__ = name  # argparse says "invalid <name> value" if a check raises ValueError itself
    return check


def integer(low: int, high: int | None = None) -> Check:
    """An int from ``low`` to ``high`` (inclusive; no upper bound if None)."""
    allowed = f"an integer from {low:,} to {high:,}" if high is not None else f"an integer of at least {low:,}"

    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer: give {allowed}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is out of range: give {allowed}")
        return value

    return _named("integer", check)


def number(low: float, high: float | None = None, *, low_inclusive: bool = True) -> Check:
    """A float above (or from) ``low``, up to ``high``."""
    above = f"from {low:g}" if low_inclusive else f"above {low:g}"
    allowed = f"a number {above}" + (f" to {high:g}" if high is not None else "")

    def check(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number: give {allowed}") from None
        too_low = value < low if low_inclusive else value <= low
        if too_low or (high is not None and value > high) or value != value:
            raise argparse.ArgumentTypeError(f"{text} is out of range: give {allowed}")
        return value

    return _named("number", check)


def _from_policy_check(name: str, check: Callable[[str, str], None]) -> Check:
    def convert(text: str) -> str:
        try:
            check("", text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err).strip()) from None
        return text

    return _named(name, convert)


account_id = _from_policy_check("account id", policies.check_account)
bucket_name = _from_policy_check("bucket name", policies.check_bucket)
prefix = _from_policy_check("prefix", policies.check_prefix)


def region(text: str) -> str:
    """A Region name (``us-east-1``) of a partition the package supports."""
    try:
        policies.partition_for_region(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def role_arn(text: str) -> str:
    if not ROLE_ARN.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an IAM role ARN: expected arn:aws:iam::<12-digit account id>:role/<role name>"
        )
    return text


def role_name_or_arn(text: str) -> str:
    if not (ROLE_ARN.match(text) or re.fullmatch(r"[\w+=,.@-]{1,64}", text, re.ASCII)):
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a role name (1-64 letters, digits or +=,.@_-) nor a role ARN"
        )
    return text


def state_machine_arn(text: str) -> str:
    if not _STATE_MACHINE_ARN.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a state machine ARN: expected "
            "arn:aws:states:<region>:<12-digit account id>:stateMachine:<name>"
        )
    return text


def kms_key_arn(text: str) -> str:
    if not policies.KMS_KEY_ARN.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a KMS key ARN: expected arn:aws:kms:<region>:<account id>:key/<key id>"
        )
    return text


def endpoint_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"{text!r} is not an endpoint URL: expected http(s)://host[:port]")
    return text


def aware_datetime(text: str) -> str:
    """ISO-8601 with a time zone; returned as given (the filters parse it)."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO-8601 date-time: e.g. 2026-11-26T00:00:00+00:00"
        ) from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone: add an offset such as +00:00 or Z")
    return text


def storage_class(text: str) -> str:
    """A storage class, any case (``standard_ia`` is ``STANDARD_IA``)."""
    if text.upper() not in STORAGE_CLASSES:
        raise argparse.ArgumentTypeError(f"{text!r} is not an S3 storage class: one of {', '.join(STORAGE_CLASSES)}")
    return text.upper()


def non_empty(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("an empty value matches every key: leave the option out instead")
    return text


def schedule(text: str) -> str:
    """An Airflow schedule: a preset (``@daily``, ``None``) or a cron expression of 5 fields."""
    fields = text.split()
    if text in _SCHEDULE_PRESETS or (len(fields) == 5 and all(_CRON_FIELD.match(f) for f in fields)):
        return text
    raise argparse.ArgumentTypeError(
        f"{text!r} is not a schedule: a cron expression of 5 fields ('0 3 * * *') or one of "
        f"{', '.join(_SCHEDULE_PRESETS)}"
    )


port = integer(0, 65535)
positive = integer(1)


_BUCKET_SHAPE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def s3_uri(*, key_required: bool = False) -> Check:
    """``s3://bucket/prefix`` (or ``s3://bucket/key`` with ``key_required``), returned as given."""
    from xacct_map.core.s3uri import access_point, split_s3_uri

    def check(text: str) -> str:
        try:
            bucket, _ = split_s3_uri(text, what="", key_required=key_required)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err).strip()) from None
        if not _BUCKET_SHAPE.match(bucket) and access_point(bucket) is None:
            raise argparse.ArgumentTypeError(
                f"{text!r}: {bucket!r} is not an S3 bucket name (3-63 lowercase letters, digits, dots or hyphens)"
            )
        return text

    return _named("S3 URI", check)


def source_or_file() -> Check:
    """``s3://bucket/prefix`` (as :func:`s3_uri` checks it), or ``file://sources.json`` (read by the command)."""
    uri = s3_uri()

    def check(text: str) -> str:
        if text.startswith("file://"):
            if not Path(text[len("file://") :]).is_file():
                raise argparse.ArgumentTypeError(f"{text!r}: no such file (a JSON list of sources)")
            return text
        return uri(text)

    return _named("source", check)


def key_list_location(text: str) -> str:
    """``s3://bucket/key`` of a key list, or a local file that exists."""
    if text.startswith("s3://"):
        return s3_uri(key_required=True)(text)
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text!r}: no such file (give s3://bucket/key or a local file)")
    return text


# CloudWatch Logs accepts these retention periods only.
LOG_RETENTION_DAYS = frozenset(
    (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)
)


def log_retention_days(text: str) -> int:
    """A CloudWatch Logs retention in days, or 0 (leave the retention as it is)."""
    value = integer(0)(text)
    if value and value not in LOG_RETENTION_DAYS:
        raise argparse.ArgumentTypeError(
            f"{value} is not a CloudWatch Logs retention: 0 (leave it) or one of "
            f"{', '.join(map(str, sorted(LOG_RETENTION_DAYS)))}"
        )
    return value


_FUNCTION_ARN = re.compile(r"^arn:(aws|aws-cn|aws-us-gov):lambda:[a-z0-9-]+:\d{12}:function:[\w-]{1,64}(:[\w$-]+)?$")


def lambda_function_arn(text: str) -> str:
    if not _FUNCTION_ARN.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a Lambda function ARN: expected arn:aws:lambda:<region>:<account id>:function:<name>"
        )
    return text


def existing_folder(text: str) -> Path:
    folder = Path(text).expanduser()
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not a folder")
    return folder
