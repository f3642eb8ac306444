"""Read an execution and its Map Run into one plain snapshot: progress lines and the final verdict.

Pure core over boto3 (sync) or aiobotocore (async) Step Functions clients; the sensor and the
trigger are shells over it. Rates and ETAs come from the Map Run's own start date, so they hold in
reschedule and deferrable modes, which keep no state between looks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone

from xacct_map.core.timestamps import iso_or_none

RUNNING = "RUNNING"
TERMINAL_FAILURES = ("FAILED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE")
REDRIVABLE = ("FAILED", "TIMED_OUT", "ABORTED")
ITEM_COUNT_FIELDS = ("pending", "running", "succeeded", "failed", "timedOut", "aborted", "total")


def _parse(value) -> datetime | None:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class MapRunSnapshot:
    """One look at an execution and (once it exists) its Map Run."""

    execution_arn: str
    status: str
    map_run_arn: str | None = None
    map_run_status: str | None = None
    item_counts: dict = field(default_factory=dict)
    error: str | None = None
    cause: str | None = None
    start_date: str | None = None
    stop_date: str | None = None
    map_run_start_date: str | None = None
    redrive_count: int = 0
    result_writer: dict | None = None

    @property
    def failed_items(self) -> int:
        """Items that did not succeed and will not: failed, timed out or aborted."""
        return sum(int(self.item_counts.get(k, 0) or 0) for k in ("failed", "timedOut", "aborted"))

    @property
    def done_items(self) -> int:
        return int(self.item_counts.get("succeeded", 0) or 0) + self.failed_items

    def elapsed_seconds(self, now: datetime | None = None) -> float | None:
        """Seconds since the Map Run started (to its stop, once stopped); None before it exists."""
        start = _parse(self.map_run_start_date)
        if not start:
            return None
        end = _parse(self.stop_date) or now or datetime.now(timezone.utc)
        return (end - start).total_seconds()

    def rate(self, now: datetime | None = None) -> float | None:
        """Items finished per second since the Map Run started."""
        seconds = self.elapsed_seconds(now)
        if not seconds or seconds <= 0 or not self.done_items:
            return None
        return self.done_items / seconds

    def progress_line(self, now: datetime | None = None) -> str:
        c = self.item_counts
        if not c:
            return f"Execution {self.status}; Map Run not started yet."
        total = int(c.get("total", 0) or 0)
        pct = f"{100.0 * self.done_items / total:.1f}%" if total else "n/a"
        rate = self.rate(now)
        speed = f", {rate:.2f} items/s" if rate else ""
        if rate and self.status == RUNNING and total > self.done_items:
            speed += f", ETA {int((total - self.done_items) / rate)}s"
        return (
            f"Execution {self.status}, Map Run {self.map_run_status}: {c.get('succeeded', 0)} succeeded, "
            f"{self.failed_items} failed, {c.get('running', 0)} running, {c.get('pending', 0)} pending "
            f"of {total} items ({pct} done{speed})"
        )

    def duration_seconds(self) -> float | None:
        start, stop = _parse(self.start_date), _parse(self.stop_date)
        return (stop - start).total_seconds() if start and stop else None

    def as_dict(self) -> dict:
        return {
            "execution_arn": self.execution_arn,
            "status": self.status,
            "map_run_arn": self.map_run_arn,
            "map_run_status": self.map_run_status,
            "item_counts": dict(self.item_counts),
            "failed_items": self.failed_items,
            "error": self.error,
            "cause": self.cause,
            "start_date": self.start_date,
            "stop_date": self.stop_date,
            "map_run_start_date": self.map_run_start_date,
            "duration_seconds": self.duration_seconds(),
            "redrive_count": self.redrive_count,
            "result_writer": self.result_writer,
        }

    @classmethod
    def from_dict(cls, data: dict) -> MapRunSnapshot:
        """The snapshot of :meth:`as_dict` (or of the sensor's summary, whose added keys, such as the
        ``changed``/``gone`` counts, are not the snapshot's and are left out)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _result_writer(execution: dict) -> dict | None:
    """``ResultWriterDetails`` ({Bucket, Key} of the results manifest) from the execution output."""
    try:
        output = json.loads(execution.get("output") or "null")
    except ValueError:
        return None
    details = output.get("ResultWriterDetails") if isinstance(output, dict) else None
    return {"bucket": details.get("Bucket"), "key": details.get("Key")} if details else None


def build_snapshot(execution_arn: str, execution: dict, map_run: dict) -> MapRunSnapshot:
    """A snapshot from DescribeExecution's and DescribeMapRun's responses (``{}`` before the Map Run)."""
    counts = map_run.get("itemCounts", {})
    return MapRunSnapshot(
        execution_arn=execution_arn,
        status=execution["status"],
        map_run_arn=map_run.get("mapRunArn"),
        map_run_status=map_run.get("status"),
        item_counts={k: counts.get(k, 0) for k in ITEM_COUNT_FIELDS if k in counts},
        error=execution.get("error"),
        cause=execution.get("cause"),
        start_date=iso_or_none(execution.get("startDate")),
        stop_date=iso_or_none(execution.get("stopDate")),
        map_run_start_date=iso_or_none(map_run.get("startDate")),
        redrive_count=int(execution.get("redriveCount", 0) or 0),
        result_writer=_result_writer(execution),
    )


def merge_map_runs(map_runs: list[dict]) -> dict:
    """One DescribeMapRun-shaped answer for an execution's Map Runs (one per manifest part): item
    counts summed, the newest run's ARN and status, the first run's start date. ``{}`` for none."""
    if len(map_runs) <= 1:
        return map_runs[0] if map_runs else {}
    ordered = sorted(map_runs, key=lambda run: iso_or_none(run.get("startDate")) or "")
    counts: dict = {}
    for run in ordered:
        for name, value in (run.get("itemCounts") or {}).items():
            counts[name] = counts.get(name, 0) + int(value or 0)
    return {**ordered[-1], "itemCounts": counts, "startDate": ordered[0].get("startDate")}


def snapshot(sfn_client, execution_arn: str) -> MapRunSnapshot:
    """DescribeExecution, then ListMapRuns + DescribeMapRun for each of the execution's Map Runs
    (one per manifest part), merged (:func:`merge_map_runs`)."""
    execution = sfn_client.describe_execution(executionArn=execution_arn)
    map_runs = sfn_client.list_map_runs(executionArn=execution_arn).get("mapRuns", [])
    described = [sfn_client.describe_map_run(mapRunArn=run["mapRunArn"]) for run in map_runs]
    return build_snapshot(execution_arn, execution, merge_map_runs(described))


async def snapshot_async(sfn_client, execution_arn: str) -> MapRunSnapshot:
    """:func:`snapshot` with an aiobotocore client, for the triggerer."""
    execution = await sfn_client.describe_execution(executionArn=execution_arn)
    map_runs = (await sfn_client.list_map_runs(executionArn=execution_arn)).get("mapRuns", [])
    described = [await sfn_client.describe_map_run(mapRunArn=run["mapRunArn"]) for run in map_runs]
    return build_snapshot(execution_arn, execution, merge_map_runs(described))


def verdict(
    snap: MapRunSnapshot, *, max_failed_items: int = 0, max_failed_percentage: float | None = None
) -> str | None:
    """``None`` when the run succeeded within tolerance, else the reason it did not.

    Only call on a terminal snapshot. SUCCEEDED is not enough: an emulator (and a state machine with
    a ToleratedFailure setting) may report SUCCEEDED with failed items, so the Map Run's own counts
    are checked against the tolerance too: at most ``max_failed_items`` failed items and, when
    given, at most ``max_failed_percentage`` percent of all items.
    """
    if snap.status == "SUCCEEDED":
        total = int(snap.item_counts.get("total", 0) or 0)
        over_count = snap.failed_items > max_failed_items
        over_pct = (
            max_failed_percentage is not None and total and 100.0 * snap.failed_items / total > max_failed_percentage
        )
        if over_count or over_pct:
            limit = f"max_failed_items={max_failed_items}" + (
                f", max_failed_percentage={max_failed_percentage}" if max_failed_percentage is not None else ""
            )
            return (
                f"Execution {snap.execution_arn} SUCCEEDED but its Map Run {snap.map_run_arn} has "
                f"{snap.failed_items} failed items (failed/timed out/aborted) of {total}, more than {limit}. "
                f"Item counts: {snap.item_counts}."
            )
        return None
    if snap.status in TERMINAL_FAILURES:
        return (
            f"Execution {snap.execution_arn} ended {snap.status}: error={snap.error!r}, cause={snap.cause!r}. "
            f"Map Run {snap.map_run_arn}: {snap.failed_items} failed items; item counts: {snap.item_counts}."
            " Fix the cause, then clear the run: with on_existing='redrive' the start task redrives the "
            "execution and only the items that did not succeed run again."
        )
    raise ValueError(f"execution {snap.execution_arn} is not in a terminal status: {snap.status}")


def failure_details(sfn_client, snap: MapRunSnapshot, *, s3_client=None, sample: int = 3) -> str:
    """The first failed child executions' errors and, with a ResultWriter, where FAILED results are.

    Best effort: it is called to enrich an error message, so it never raises.
    """
    lines: list[str] = []
    if snap.map_run_arn:
        try:
            for child in failed_children(sfn_client, snap.map_run_arn, sample=sample):
                lines.append(
                    f"  failed child {child['execution_arn']}: error={child['error']!r} cause={child['cause']!r}"
                )
        except Exception as err:  # noqa: BLE001 - enrichment only
            lines.append(f"  (could not list failed child executions: {str(err)[:300]})")
    if snap.result_writer and snap.result_writer.get("bucket"):
        bucket, key = snap.result_writer["bucket"], snap.result_writer["key"]
        lines.append(f"  results manifest: s3://{bucket}/{key}")
        if s3_client is not None:
            # The ResultWriter writes to the state machine's own account: the execution ARN names it.
            owner = snap.execution_arn.split(":")[4] if snap.execution_arn.count(":") >= 5 else None
            lines += _failed_results_sample(s3_client, bucket, key, sample, owner)
    return "\n".join(lines)


def failed_children(sfn_client, map_run_arn: str, *, sample: int = 3, keys: int = 5) -> list[dict]:
    """The Map Run's first ``sample`` FAILED child executions: ARN, error, cause (cut to 500
    characters) and the first ``keys`` object keys of the item each was given (its input)."""
    children = sfn_client.list_executions(mapRunArn=map_run_arn, statusFilter="FAILED", maxResults=sample)
    out = []
    for child in children.get("executions", [])[:sample]:
        detail = sfn_client.describe_execution(executionArn=child["executionArn"])
        out.append(
            {
                "execution_arn": child["executionArn"],
                "error": detail.get("error"),
                "cause": (detail.get("cause") or "")[:500],
                "keys": item_keys(detail.get("input"), keys),
            }
        )
    return out


def item_keys(item_json: str | None, limit: int = 5) -> list[str]:
    """The object keys a Map item names, whatever the layout: a batch's ``keys``, ItemBatcher's
    ``Items``, or one object (``key`` / ``Key``); ``[]`` for anything else."""
    try:
        item = json.loads(item_json or "null")
    except ValueError:
        return []
    if not isinstance(item, dict):
        return []
    found = item.get("keys", item.get("Items"))
    if not isinstance(found, list):
        found = [item]
    names = (i.get("key", i.get("Key")) if isinstance(i, dict) else i for i in found)
    return [k for k in names if isinstance(k, str)][:limit]


def _failed_results_sample(s3_client, bucket: str, key: str, sample: int, owner: str | None) -> list[str]:
    extra = {"ExpectedBucketOwner": owner} if owner else {}
    try:
        manifest = json.loads(s3_client.get_object(Bucket=bucket, Key=key, **extra)["Body"].read())
        files = [f for f in manifest.get("ResultFiles", {}).get("FAILED", [])]
        if not files:
            return []
        first = f"{manifest.get('DestinationBucket', bucket)}/{files[0]['Key']}"
        body = s3_client.get_object(Bucket=manifest.get("DestinationBucket", bucket), Key=files[0]["Key"], **extra)[
            "Body"
        ]
        entries = json.loads(body.read())
        lines = [
            f"  FAILED results: s3://{first} ({sum(int(f.get('Size', 0)) for f in files)} bytes in {len(files)} files)"
        ]
        for entry in entries[:sample]:
            lines.append(
                f"    {entry.get('Error')!r}: {(entry.get('Cause') or '')[:300]!r} "
                f"input={(entry.get('Input') or '')[:200]}"
            )
        return lines
    except Exception as err:  # noqa: BLE001 - enrichment only
        return [f"  (could not read the ResultWriter manifest: {str(err)[:200]})"]


#: The most bytes of ResultWriter files :func:`reported_changes` reads: past it, the counts are not given.
MAX_RESULT_BYTES = 256 * 1024 * 1024


def reported_changes(s3_client, snap: MapRunSnapshot, *, max_bytes: int = MAX_RESULT_BYTES) -> dict | None:
    """``{"changed": n, "gone": n}``: objects the processor found changed or deleted since the listing
    (pinned manifests, ``on_changed``), counted from the ``status`` of the ``results`` entries in the
    ResultWriter's SUCCEEDED files; None without a ResultWriter, or over ``max_bytes`` of results.
    """
    if not snap.result_writer or not snap.result_writer.get("bucket"):
        return None
    owner = snap.execution_arn.split(":")[4] if snap.execution_arn.count(":") >= 5 else None
    extra = {"ExpectedBucketOwner": owner} if owner else {}
    bucket, key = snap.result_writer["bucket"], snap.result_writer["key"]
    manifest = json.loads(s3_client.get_object(Bucket=bucket, Key=key, **extra)["Body"].read())
    files = manifest.get("ResultFiles", {}).get("SUCCEEDED", [])
    if sum(int(f.get("Size", 0)) for f in files) > max_bytes:
        return None
    counts = {"changed": 0, "gone": 0}
    for file in files:
        body = s3_client.get_object(Bucket=manifest.get("DestinationBucket", bucket), Key=file["Key"], **extra)
        for entry in json.loads(body["Body"].read()):
            output = json.loads(entry.get("Output") or "null")
            for result in (output or {}).get("results") or () if isinstance(output, dict) else ():
                status = result.get("status") if isinstance(result, dict) else None
                if status in counts:
                    counts[status] += 1
    return counts
