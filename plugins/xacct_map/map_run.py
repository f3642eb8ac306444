"""Read an execution and its Map Run into one plain snapshot: progress lines and the final verdict.

Pure core over a boto3 Step Functions client; the sensor (and, later, the trigger) are shells over it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

TERMINAL_FAILURES = ("FAILED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE")
ITEM_COUNT_FIELDS = ("pending", "running", "succeeded", "failed", "timedOut", "aborted", "total")


def _iso(value) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


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

    @property
    def failed_items(self) -> int:
        """Items that did not succeed and will not: failed, timed out or aborted."""
        return sum(int(self.item_counts.get(k, 0) or 0) for k in ("failed", "timedOut", "aborted"))

    def progress_line(self) -> str:
        c = self.item_counts
        if not c:
            return f"Execution {self.status}; Map Run not started yet."
        total = int(c.get("total", 0) or 0)
        done = int(c.get("succeeded", 0) or 0) + self.failed_items
        pct = f"{100.0 * done / total:.1f}%" if total else "n/a"
        return (
            f"Execution {self.status}, Map Run {self.map_run_status}: {c.get('succeeded', 0)} succeeded, "
            f"{self.failed_items} failed, {c.get('running', 0)} running, {c.get('pending', 0)} pending "
            f"of {total} items ({pct} done)"
        )

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
        }


def snapshot(sfn_client, execution_arn: str) -> MapRunSnapshot:
    """DescribeExecution, then ListMapRuns + DescribeMapRun for the execution's (first) Map Run."""
    execution = sfn_client.describe_execution(executionArn=execution_arn)
    map_runs = sfn_client.list_map_runs(executionArn=execution_arn).get("mapRuns", [])
    map_run = sfn_client.describe_map_run(mapRunArn=map_runs[0]["mapRunArn"]) if map_runs else {}
    counts = map_run.get("itemCounts", {})
    return MapRunSnapshot(
        execution_arn=execution_arn,
        status=execution["status"],
        map_run_arn=map_run.get("mapRunArn"),
        map_run_status=map_run.get("status"),
        item_counts={k: counts.get(k, 0) for k in ITEM_COUNT_FIELDS if k in counts},
        error=execution.get("error"),
        cause=execution.get("cause"),
        start_date=_iso(execution.get("startDate")),
        stop_date=_iso(execution.get("stopDate")),
    )


def verdict(snap: MapRunSnapshot, *, max_failed_items: int = 0) -> str | None:
    """``None`` when the run succeeded within tolerance, else the reason it did not.

    Only call on a terminal snapshot. SUCCEEDED is not enough: an emulator (and a state machine with
    a ToleratedFailure setting) may report SUCCEEDED with failed items, so the Map Run's own counts
    are checked against ``max_failed_items`` too.
    """
    if snap.status == "SUCCEEDED":
        if snap.failed_items > max_failed_items:
            return (
                f"Execution {snap.execution_arn} SUCCEEDED but its Map Run {snap.map_run_arn} has "
                f"{snap.failed_items} failed items (failed/timed out/aborted), more than max_failed_items="
                f"{max_failed_items}. Item counts: {snap.item_counts}."
            )
        return None
    if snap.status in TERMINAL_FAILURES:
        return (
            f"Execution {snap.execution_arn} ended {snap.status}: error={snap.error!r}, cause={snap.cause!r}. "
            f"Map Run {snap.map_run_arn}: {snap.failed_items} failed items; item counts: {snap.item_counts}."
            + " Fix the cause, then RedriveExecution re-processes only the items that did not succeed."
        )
    raise ValueError(f"execution {snap.execution_arn} is not in a terminal status: {snap.status}")
