"""Run the user's function on every object of a batch: threads, deadline, results, failures."""

from __future__ import annotations

import json
import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from xacct_map.processor._items import parse_event
from xacct_map.processor._objects import ObjectChanged, ObjectGone, S3Object

ProcessFunction = Callable[[S3Object], Any]
# Step Functions' limit on a state's output is 256 KiB; leave room for the envelope.
MAX_OUTPUT_BYTES = 250 * 1024


class BatchFailed(Exception):
    """The batch did not complete: Lambda reports the class name as ``errorType``."""


class ObjectsFailed(BatchFailed):
    """One or more objects' functions raised; the message names them (the first few) and the exceptions."""


class DeadlineReached(BatchFailed):
    """The Lambda deadline came before every object was started; the message names the first ones left."""


class ResultTooLarge(BatchFailed):
    """The batch's results exceed what a Step Functions state may carry: write large results to S3."""


@dataclass
class _Outcome:
    done: list = field(default_factory=list)  # (S3Object, result)
    failed: list = field(default_factory=list)  # (S3Object, exception)
    not_started: list = field(default_factory=list)  # S3Object
    skipped: list = field(default_factory=list)  # S3Object, changed or gone since the listing (not processed)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def _remaining_ms(context) -> float:
    getter = getattr(context, "get_remaining_time_in_millis", None)
    return float(getter()) if getter else float("inf")


def _run(process: ProcessFunction, objects: list[S3Object], context, concurrency: int, margin_ms: int) -> _Outcome:
    """Each thread takes the next object until none is left or the deadline is near."""
    outcome = _Outcome()
    queue = list(reversed(objects))

    def worker() -> None:
        while True:
            with outcome.lock:
                if not queue:
                    return
                if _remaining_ms(context) < margin_ms:
                    outcome.not_started.extend(reversed(queue))
                    queue.clear()
                    return
                obj = queue.pop()
            try:
                result = process(obj)
            except (ObjectChanged, ObjectGone) as err:
                if obj.context.on_changed == "fail":
                    with outcome.lock:
                        outcome.failed.append((obj, err))
                else:  # skip, or current and gone: reported, not a failure
                    obj.status = obj.status or ("gone" if isinstance(err, ObjectGone) else "changed")
                    with outcome.lock:
                        outcome.skipped.append(obj)
                continue
            except Exception as err:  # reported per object; the batch fails after the others finished
                traceback.print_exc()
                with outcome.lock:
                    outcome.failed.append((obj, err))
                continue
            with outcome.lock:
                outcome.done.append((obj, result))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, min(concurrency, len(objects))))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcome


def _summary(outcome: _Outcome) -> dict:
    """What the batch did; ``changed``/``gone`` (pinned items only) name the objects changed or deleted since
    the listing (processed as current, or skipped: ``skipped`` counts those not processed)."""
    done = sorted(outcome.done, key=lambda pair: pair[0].key)
    # A changed or gone object also has a ``results`` entry with its ``status``: the state machine passes
    # ``results`` on to the ResultWriter, where the sensor counts them.
    results = [
        {"key": obj.key, "result": result, **({"status": obj.status} if obj.status else {})}
        for obj, result in done
        if result is not None or obj.status
    ]
    results += [{"key": obj.key, "status": obj.status} for obj in sorted(outcome.skipped, key=lambda o: o.key)]
    summary = {
        "objects": len(done),
        "bytes": sum(obj.size_if_known or 0 for obj, _ in done),
        "bytes_read": sum(obj.bytes_read for obj, _ in done),
        "results": results,
    }
    reported = [obj for obj, _ in done if obj.status] + outcome.skipped
    if reported or any(obj.context.on_changed for obj, _ in done[:1]):
        summary["changed"] = sorted(obj.key for obj in reported if obj.status == "changed")
        summary["gone"] = sorted(obj.key for obj in reported if obj.status == "gone")
        summary["skipped"] = len(outcome.skipped)
    return summary


def _describe(obj: S3Object, err: BaseException | None = None) -> str:
    where = f"s3://{obj.bucket}/{obj.key}"
    return f"{where}: {type(err).__name__}: {err}" if err is not None else where


def _raise_for(outcome: _Outcome, summary: dict, total: int, shown: int) -> None:
    """Fail the batch naming the failed (or unstarted) keys, the first ``shown`` of them."""
    done = f"{summary['objects']} of {total} processed ({summary['bytes']} bytes)"
    if outcome.failed:
        failed = sorted(outcome.failed, key=lambda pair: pair[0].key)
        names = "; ".join(_describe(obj, err) for obj, err in failed[:shown])
        more = f"; and {len(failed) - shown} more" if len(failed) > shown else ""
        left = f"; {len(outcome.not_started)} not started before the deadline" if outcome.not_started else ""
        raise ObjectsFailed(f"{len(failed)} of {total} objects failed: {names}{more}{left}; {done}")
    if outcome.not_started:
        names = "; ".join(_describe(obj) for obj in outcome.not_started[:shown])
        if len(outcome.not_started) > shown:
            names += f"; and {len(outcome.not_started) - shown} more"
        raise DeadlineReached(
            f"{len(outcome.not_started)} of {total} objects not started before the Lambda deadline "
            f"(raise --timeout or lower the batch size): {names}; {done}"
        )


def process_batch(
    process: ProcessFunction,
    event: Any,
    context: Any = None,
    *,
    concurrency: int | None = None,
    deadline_margin_ms: int | None = None,
    errors_shown: int = 5,
    client: Any = None,
) -> dict:
    """Run ``process`` on every object of ``event``; return ``{"objects", "bytes", "bytes_read", "results"}``.

    :param concurrency: threads per batch (default ``XACCT_MAP_CONCURRENCY`` or 8): for I/O-bound work.
    :param deadline_margin_ms: no object is started once less than this is left before the Lambda
        deadline (default ``XACCT_MAP_DEADLINE_MARGIN_MS`` or 30,000), and at most a quarter of the
        time the invocation had when it started (a 20 s timeout stops taking objects at 5 s left).
    :param errors_shown: how many failed keys the error message names.
    :param client: an S3 client to read with (default: one per source Region, :func:`s3_client`).
    :raises ObjectsFailed: an object's function raised (the other objects are still processed and counted).
    :raises DeadlineReached: objects were left unstarted at the deadline.
    :raises ResultTooLarge: the results would exceed a Step Functions state's 256 KiB.
    """
    run, refs = parse_event(event)
    objects = [S3Object(ref, run, client) for ref in refs]
    started = time.monotonic()
    margin = _env_int("XACCT_MAP_DEADLINE_MARGIN_MS", 30_000) if deadline_margin_ms is None else deadline_margin_ms
    # A short timeout still leaves three quarters of it for work.
    margin = min(margin, int(_remaining_ms(context) / 4)) if _remaining_ms(context) != float("inf") else margin
    outcome = _run(process, objects, context, concurrency or _env_int("XACCT_MAP_CONCURRENCY", 8), margin)
    summary = _summary(outcome)
    print(
        json.dumps(
            {
                "xacct_map": "batch",
                **{k: summary[k] for k in ("objects", "bytes", "bytes_read")},
                "failed": sorted(obj.key for obj, _ in outcome.failed),  # threads finish in any order
                **{k: summary[k] for k in ("changed", "gone", "skipped") if k in summary},
                "not_started": len(outcome.not_started),
                "seconds": round(time.monotonic() - started, 3),
            }
        )
    )
    _raise_for(outcome, summary, len(objects), errors_shown)
    size = len(json.dumps(summary, default=str).encode())
    if size > MAX_OUTPUT_BYTES:
        raise ResultTooLarge(
            f"the batch's results are {size} bytes, over the {MAX_OUTPUT_BYTES} a Step Functions state may carry: "
            "return small values and write large results to S3 from your function"
        )
    return json.loads(json.dumps(summary, default=str))


def lambda_handler(process: ProcessFunction, **options: Any) -> Callable[[Any, Any], dict]:
    """A Lambda handler ``handler(event, context)`` running ``process`` on each object of the event.

    ``options`` go to :func:`process_batch` (``concurrency``, ``deadline_margin_ms``, ``errors_shown``).
    """

    def handler(event: Any, context: Any = None) -> dict:
        return process_batch(process, event, context, **options)

    handler.__name__ = getattr(process, "__name__", "handler")
    handler.__doc__ = getattr(process, "__doc__", None)
    return handler
