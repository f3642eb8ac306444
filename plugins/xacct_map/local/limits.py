"""Step Functions' limits that moto's interpreter does not enforce, enforced in local mode.

A Distributed Map that breaches one of these fails on AWS part-way (after money was spent); moto
5.2.5 runs it to SUCCEEDED. :func:`install` makes the local run fail where AWS would, so a breach
shows in ``make demo`` and the tests instead of in production:

* a child execution's input (the ``ItemSelector`` output) over 256 KiB of UTF-8 JSON fails the Map
  Run, and so the execution, with ``States.DataLimitExceeded``;
* an ItemReader object larger than :func:`item_reader_max_bytes` (10 GB, the limit of one JSON,
  JSONL or CSV file; ``XACCT_MAP_LOCAL_ITEM_READER_MAX_BYTES`` overrides it, for tests) fails with
  ``States.ItemReaderFailed``;
* an ItemReader bucket in another Region than the state machine's fails with
  ``States.ItemReaderFailed``.

The error names are AWS's; the causes are this module's own words (AWS's texts are not
reproduced), naming the bucket, key, Region and sizes. Only local mode installs this: the product
code never depends on it.
"""

from __future__ import annotations

import json
import os
from typing import Any, cast

MAX_CHILD_INPUT_BYTES = 256 * 1024
ITEM_READER_MAX_BYTES = 10 * 1000**3  # 10 GB (decimal: the stricter reading of AWS's "10 GB")
ITEM_READER_LIMIT_ENV = "XACCT_MAP_LOCAL_ITEM_READER_MAX_BYTES"


def item_reader_max_bytes() -> int:
    """The largest object the local ItemReader reads: 10 GB, or ``$XACCT_MAP_LOCAL_ITEM_READER_MAX_BYTES``."""
    return int(os.environ.get(ITEM_READER_LIMIT_ENV) or ITEM_READER_MAX_BYTES)


def _failure(env, error: str, cause: str):
    """A FailureEventException carrying ``error``/``cause`` the way moto reports a failed state."""
    from moto.stepfunctions.parser.api import ExecutionFailedEventDetails, HistoryEventType
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    return FailureEventException(
        failure_event=FailureEvent(
            env=env,
            error_name=StatesErrorName(typ=StatesErrorNameType.from_name(error)),
            event_type=HistoryEventType.TaskFailed,
            # one kind of details, as moto's own failures carry (EventDetails is a total TypedDict)
            event_details=cast(
                EventDetails, {"executionFailedEventDetails": ExecutionFailedEventDetails(error=error, cause=cause)}
            ),
        )
    )


def child_input_bytes(value: Any) -> int:
    """UTF-8 bytes of ``value`` as compact JSON, as Step Functions counts a state's input."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return len(text.encode("utf-8"))


def _check_item_reader_object(env, s3_client, parameters: dict, region: str) -> None:
    """Refuse an ItemReader object in another Region or larger than the ItemReader reads."""
    bucket, key = parameters.get("Bucket"), parameters.get("Key")
    location = s3_client.get_bucket_location(Bucket=bucket).get("LocationConstraint") or "us-east-1"
    if location != region:
        raise _failure(
            env,
            "States.ItemReaderFailed",
            f"ItemReader cannot read s3://{bucket}/{key}: the bucket is in Region {location}, the state "
            f"machine in {region}. ItemReader reads buckets in the state machine's account and Region only: "
            f"write the manifest to a bucket in {region}.",
        )
    size = s3_client.head_object(Bucket=bucket, Key=key)["ContentLength"]
    limit = item_reader_max_bytes()
    if size > limit:
        raise _failure(
            env,
            "States.ItemReaderFailed",
            f"ItemReader cannot read s3://{bucket}/{key}: {size} bytes, more than the {limit} bytes one "
            "JSON, JSONL or CSV file may have. Split the manifest into parts.",
        )


def _install_item_reader_checks() -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.eval.resource_eval_s3 import (
        ResourceEvalS3,
    )

    original = ResourceEvalS3._handle_get_object
    if getattr(original, "_xacct_map_checked", False):
        return

    def handle_get_object(env, resource_runtime_part, state_credentials) -> None:
        client = ResourceEvalS3._get_s3_client(
            resource_runtime_part=resource_runtime_part, state_credentials=state_credentials
        )
        _check_item_reader_object(env, client, env.stack[-1], resource_runtime_part.region)
        original(env, resource_runtime_part, state_credentials)

    handle_get_object._xacct_map_checked = True  # type: ignore[attr-defined]
    ResourceEvalS3._handle_get_object = staticmethod(handle_get_object)  # type: ignore[method-assign,assignment]


def _install_child_input_check() -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor.distributed_item_processor_worker import (  # noqa: E501
        DistributedItemProcessorWorker as Worker,
    )

    if getattr(Worker, "_xacct_map_checked", False):
        return
    eval_input, eval_job = Worker._eval_input, Worker._eval_job

    def checked_eval_input(self, env_frame) -> None:
        eval_input(self, env_frame)
        value = env_frame.states.get_input()
        size = child_input_bytes(value)
        if size > MAX_CHILD_INPUT_BYTES:
            index = env_frame.states.context_object.context_object_data["Map"]["Item"]["Index"]
            self._xacct_map_limit_error = _failure(
                env_frame,
                "States.DataLimitExceeded",
                f"The input of the child execution for item {index} is {size} bytes, more than the "
                f"{MAX_CHILD_INPUT_BYTES} bytes (256 KiB) a state's input may have. Make the manifest's "
                "items smaller (xacct-map: max_batch_bytes).",
            )
            raise self._xacct_map_limit_error

    def checked_eval_job(self, env, job) -> None:
        self._xacct_map_limit_error = None
        eval_job(self, env, job)
        if self._xacct_map_limit_error is not None:
            job.job_output = self._xacct_map_limit_error  # fails the Map Run, as on AWS

    Worker._eval_input = checked_eval_input  # type: ignore[method-assign]
    Worker._eval_job = checked_eval_job  # type: ignore[method-assign]
    Worker._xacct_map_checked = True  # type: ignore[attr-defined]


def install() -> None:
    """Make moto's Step Functions interpreter (in this process) enforce the limits above. Idempotent."""
    _install_item_reader_checks()
    _install_child_input_check()
