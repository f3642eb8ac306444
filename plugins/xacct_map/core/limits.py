"""Step Functions' limits, checked before an execution starts (no Airflow; boto3 clients and values).

* :func:`map_state_problems`: what in a state machine definition AWS would refuse or that cannot
  run: ``MaxConcurrency`` 0-10,000, ``ToleratedFailurePercentage`` 0-100, ``ToleratedFailureCount``
  at least 0, ``MaxItemsPerBatch`` at least 1, ``MaxInputBytesPerBatch`` 1-262,144, ``MaxItems``
  1-100,000,000, for every Map state (nested ones too).
* :func:`bucket_location_problem`: the ItemReader's and ResultWriter's bucket must be in the state
  machine's account and Region.
* :func:`child_input_problem`: the manifest's largest child input, with the source block the
  execution will really carry, still fits 256 KiB.

Each returns a sentence that names the value, the limit and what to do, or None / ``[]``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from xacct_map.core.layouts import MAX_CHILD_INPUT_BYTES

MAX_CONCURRENCY = 10_000
MAX_ITEMS = 100_000_000
_STATE_MACHINE_ARN = re.compile(
    r"^arn:(?P<partition>aws[\w-]*):states:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):stateMachine:(?P<name>[^:]+)$"
)


def state_machine_location(state_machine_arn: str) -> tuple[str, str]:
    """``(account, region)`` of a state machine ARN.

    :raises ValueError: not a state machine ARN.
    """
    match = _STATE_MACHINE_ARN.match(state_machine_arn or "")
    if not match:
        raise ValueError(
            f"{state_machine_arn!r} is not a state machine ARN (arn:aws:states:<region>:<account>:stateMachine:<name>)"
        )
    return match["account"], match["region"]


def map_states(states: dict, path: str = "") -> Iterator[tuple[str, dict]]:
    """``(path, state)`` of every Map state in ``states``, nested ones (ItemProcessor, Parallel) too."""
    for name, state in (states or {}).items():
        if not isinstance(state, dict):
            continue
        where = f"{path}{name}"
        if state.get("Type") == "Map":
            yield where, state
        processor = state.get("ItemProcessor") or state.get("Iterator") or {}
        yield from map_states(processor.get("States") or {}, where + "/")
        for branch in state.get("Branches") or []:
            yield from map_states(branch.get("States") or {}, where + "/")


def _out_of_range(where: str, field: str, value, low: float, high: float | None) -> str | None:
    if value is None or isinstance(value, str):  # absent, or a placeholder/path filled later
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{where}: {field} is {value!r}, not a number"
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        return f"{where}: {field} is {value}; Step Functions requires {bound}"
    return None


def map_state_problems(definition: dict | str) -> list[str]:
    """Every Map setting of ``definition`` outside Step Functions' limits (``[]``: none)."""
    doc = json.loads(definition) if isinstance(definition, str) else definition
    problems = []
    for where, state in map_states(doc.get("States") or {}):
        batcher = state.get("ItemBatcher") or {}
        reader = (state.get("ItemReader") or {}).get("ReaderConfig") or {}
        checks = (
            ("MaxConcurrency", state.get("MaxConcurrency"), 0, MAX_CONCURRENCY),
            ("ToleratedFailurePercentage", state.get("ToleratedFailurePercentage"), 0, 100),
            ("ToleratedFailureCount", state.get("ToleratedFailureCount"), 0, None),
            ("ItemBatcher.MaxItemsPerBatch", batcher.get("MaxItemsPerBatch"), 1, None),
            ("ItemBatcher.MaxInputBytesPerBatch", batcher.get("MaxInputBytesPerBatch"), 1, MAX_CHILD_INPUT_BYTES),
            (
                "ItemReader.ReaderConfig.MaxItems",
                reader.get("MaxItems") if isinstance(reader, dict) else None,
                1,
                MAX_ITEMS,
            ),
        )
        problems += [p for field, value, low, high in checks if (p := _out_of_range(where, field, value, low, high))]
    return problems


def _head_bucket(s3_client, bucket: str, **owner) -> tuple[int, str | None]:
    """``(HTTP status, x-amz-bucket-region)`` of HeadBucket; S3 sends the Region on 403 too."""
    from botocore.exceptions import ClientError

    try:
        response = s3_client.head_bucket(Bucket=bucket, **owner)
    except ClientError as err:
        response = err.response
    meta = response.get("ResponseMetadata", {})
    headers = meta.get("HTTPHeaders", {}) or {}
    return int(meta.get("HTTPStatusCode") or 0), headers.get("x-amz-bucket-region") or response.get("BucketRegion")


def bucket_location_problem(s3_client, bucket: str, state_machine_arn: str, *, what: str = "manifest") -> str | None:
    """Why ``bucket`` cannot serve the state machine's ItemReader/ResultWriter, or None.

    One HeadBucket with ``ExpectedBucketOwner`` = the state machine's account; its
    ``x-amz-bucket-region`` header (sent on 200 and 403 alike) gives the Region. On a 403 a second
    HeadBucket without the owner tells "another account" (200) from "may not HeadBucket it" (403:
    the account is then not checked, None). A missing bucket (404) is reported.
    """
    account, region = state_machine_location(state_machine_arn)
    status, bucket_region = _head_bucket(s3_client, bucket, ExpectedBucketOwner=account)
    if status == 404:
        return f"The {what} bucket {bucket!r} does not exist: create it in account {account}, Region {region}."
    if bucket_region and bucket_region != region:
        return (
            f"The {what} bucket {bucket!r} is in Region {bucket_region}, the state machine {state_machine_arn} in "
            f"{region}: a Distributed Map's ItemReader and ResultWriter use buckets of the state machine's own "
            f"account and Region only. Use a bucket in {region} (or deploy the state machine in {bucket_region})."
        )
    if status == 403 and _head_bucket(s3_client, bucket)[0] == 200:
        return (
            f"The {what} bucket {bucket!r} is not owned by account {account}, the state machine's "
            f"({state_machine_arn}): ItemReader and ResultWriter use buckets of the state machine's own account. "
            f"Use a bucket of account {account} in {region}."
        )
    return None


def child_input_problem(manifest: dict, source: dict) -> str | None:
    """Whether the manifest's largest child input still fits 256 KiB with the ``source`` block the
    execution carries (the manifest reserved room for the block it knew; an explicit account or
    Region given at start may be longer). None when it fits or the manifest recorded no sizes."""
    largest = manifest.get("largest_item_bytes")
    reserved = (manifest.get("batching") or {}).get("source_block_bytes")
    if largest is None or reserved is None:
        return None
    actual = len(b',"source":') + len(json.dumps(source, ensure_ascii=False, separators=(",", ":")).encode())
    size = largest - reserved + actual
    if size <= MAX_CHILD_INPUT_BYTES:
        return None
    return (
        f"The largest batch of manifest s3://{manifest.get('bucket')}/{manifest.get('key')} makes a child input of "
        f"{size} bytes with this execution's source block ({actual} bytes), more than Step Functions' "
        f"{MAX_CHILD_INPUT_BYTES}: rebuild the manifest with a smaller max_batch_bytes."
    )
