"""Wait for a Distributed Map execution, logging Map Run progress, failing loudly and usefully."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.links.step_function import StateMachineExecutionsDetailsLink
from airflow.providers.amazon.aws.sensors.base_aws import AwsBaseSensor
from airflow.providers.amazon.aws.utils import validate_execute_complete_event
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.sdk import PokeReturnValue
from botocore.exceptions import ClientError

from xacct_map.assets import processed_extra, set_outlet_extra
from xacct_map.core.map_run import RUNNING, MapRunSnapshot, verdict
from xacct_map.core.polling import defer_now, is_throttling, next_interval, throttle_delay, throttling_code
from xacct_map.core.progress import add_point, point
from xacct_map.hooks import DistributedMapHook
from xacct_map.links import MapRunLink
from xacct_map.metrics import emit_map_run_metrics
from xacct_map.operators import require_native
from xacct_map.triggers import DistributedMapTrigger
from xacct_map.version_compat import AirflowException, AirflowFailException, conf

#: XCom key of the execution's final snapshot (status, item counts, Map Run), pushed on success and failure.
SUMMARY_XCOM_KEY = "map_run_summary"
#: XCom key of the looks' item counts over time (:func:`xacct_map.core.progress.point`), for the Map runs page.
PROGRESS_XCOM_KEY = "map_run_progress"

if TYPE_CHECKING:
    from airflow.sdk import Context


class DistributedMapSensor(AwsBaseSensor[DistributedMapHook]):
    """
    Wait for a Distributed Map execution to finish, logging its Map Run's progress on every look.

    Succeeds only when the execution SUCCEEDED **and** its Map Run reports no more failed (or timed
    out, or aborted) items than ``max_failed_items`` / ``max_failed_percentage``; DescribeMapRun is
    checked because an execution may report SUCCEEDED with failed items. FAILED, TIMED_OUT, ABORTED
    and PENDING_REDRIVE fail the task at once, without retries (waiting again cannot change a
    finished execution), with the execution's error and cause, the first failed child executions'
    errors and, with a ResultWriter, where the FAILED results are.

    Works in ``poke`` and ``reschedule`` modes and, with ``deferrable=True``, in the triggerer
    (no worker slot held while the Map Run works). A deferrable sensor first looks every
    ``poke_interval`` in its own process, at most ``poll_before_defer`` seconds, while the run may
    end soon (:func:`xacct_map.core.polling.defer_now`): a short run ends there, without a trigger,
    and a long one is handed over early enough that the trigger's event never has to wait for the
    deferring process to exit (:class:`~xacct_map.triggers.DistributedMapTrigger`). When the task
    is killed, marked failed or cleared while the execution runs, the execution is stopped
    (``stop_on_kill``).

    Pollers share the account's Step Functions budget (DescribeMapRun refills at 1 request per
    second per account and Region): the interval between looks grows with the run's expected
    remaining time (:mod:`xacct_map.core.polling`), from ``poke_interval`` up to
    ``max_poke_interval``, and a ``ThrottlingException`` only makes the sensor wait longer
    (jittered backoff, a warning in the log), never fails the task.

    :param execution_arn: ARN of the execution (the XCom of :class:`StartDistributedMapOperator`).
    :param max_failed_items: failed items tolerated before the task fails (default 0).
    :param max_failed_percentage: failed items tolerated, in percent of all items (default: not checked).
    :param stop_on_kill: stop the execution when the task is killed (default True).
    :param max_poke_interval: the longest wait between two looks, in seconds (default 600, never
        below ``poke_interval``); the wait grows towards it while much of the run remains.
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``).
    :param poll_before_defer: deferrable only: the longest time, in seconds, the sensor looks in its
        own process before it defers (default 60; 0 defers after the first look). It defers earlier
        as soon as the run is expected to last well beyond the trigger's no-event window.
    :param manifest: the manifest summary pushed by :class:`~xacct_map.operators.BuildKeyManifestOperator`
        (optional): on success, the events of the sensor's Asset outlets carry its source bucket and
        prefix with the run's counts (:func:`xacct_map.assets.processed_extra`).
    :param aws_conn_id: AWS connection of the pipeline account.
    :param region_name: AWS region_name. If not specified then the default boto3 behaviour is used.
    :param verify: Whether or not to verify SSL certificates.
    :param botocore_config: Configuration dictionary (key-values) for botocore client.
    :return: a summary: status, Map Run ARN, item counts, failed items, dates, duration, results location.
    """

    aws_hook_class = DistributedMapHook
    template_fields: Sequence[str] = aws_template_fields(
        "execution_arn",
        "max_failed_items",
        "max_failed_percentage",
        "stop_on_kill",
        "manifest",
        "max_poke_interval",
    )
    ui_color = "#f9c915"
    operator_extra_links = (StateMachineExecutionsDetailsLink(), MapRunLink())

    def __init__(
        self,
        *,
        execution_arn: str,
        max_failed_items: int = 0,
        max_failed_percentage: float | None = None,
        stop_on_kill: bool = True,
        max_poke_interval: float | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_before_defer: float = 60.0,
        manifest: dict | Any = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.max_poke_interval = max_poke_interval
        self._next_interval: float | None = None
        self._throttled = 0
        self.execution_arn = execution_arn
        self.max_failed_items = max_failed_items
        self.max_failed_percentage = max_failed_percentage
        self.stop_on_kill = stop_on_kill
        self.deferrable = deferrable
        self.poll_before_defer = poll_before_defer
        self.manifest = manifest
        self._stop_cause = ""
        self._progress: list = []  # this process's looks; the trigger's come with its event

    # --- the three waiting modes share one look and one verdict ---------------------------------

    def execute(self, context: Context) -> Any:
        self._stop_cause = f"Airflow task {context['dag'].dag_id}.{self.task_id} of run {context['run_id']} was killed"
        StateMachineExecutionsDetailsLink.persist(
            context=context,
            operator=self,
            region_name=self.hook.conn_region_name,
            aws_partition=self.hook.conn_partition,
            execution_arn=self.execution_arn,
        )
        if not self.deferrable:
            return super().execute(context)
        snap, polled_for = self._poll_before_defer(context)
        if snap is not None and snap.status != RUNNING:
            return self._finish(context, snap)
        self.defer(
            trigger=DistributedMapTrigger(
                execution_arn=self.execution_arn,
                poll_interval=self.poke_interval,
                max_poll_interval=self.max_poke_interval,
                not_before=time.time() + DistributedMapTrigger.no_event_window,
                stop_on_kill=bool(self.stop_on_kill),
                stop_cause=self._stop_cause,
                aws_conn_id=self.aws_conn_id,
                region_name=self.region_name,
                verify=self.verify,
                botocore_config=self.botocore_config,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=max(0.0, self.timeout - polled_for)),
        )

    def _poll_before_defer(self, context: Context) -> tuple[MapRunSnapshot | None, float]:
        """Look every interval in this process while the run may end soon (:func:`defer_now`); the
        last snapshot and the seconds spent. A run that ends here needs no trigger at all."""
        started = time.monotonic()
        limit = min(float(self.poll_before_defer), float(self.timeout))
        while True:
            snap = self._look(context)
            polled_for = time.monotonic() - started
            interval = self._next_interval or float(self.poke_interval)
            if snap is not None and snap.status != RUNNING:
                return snap, polled_for
            now = datetime.fromtimestamp(time.time(), timezone.utc)
            window = DistributedMapTrigger.no_event_window
            if defer_now(
                snap, interval, window, polled_for=polled_for, poll_limit=limit, now=now, series=self._progress
            ):
                return snap, polled_for
            time.sleep(interval)

    def poke(self, context: Context) -> PokeReturnValue | bool:
        snap = self._look(context)
        if snap is None or snap.status == RUNNING:
            return False
        return PokeReturnValue(is_done=True, xcom_value=self._finish(context, snap))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict:
        """Resume after :class:`~xacct_map.triggers.DistributedMapTrigger` fired: judge the final snapshot."""
        validated = validate_execute_complete_event(event)
        if validated.get("status") != "success":
            raise AirflowException(
                f"Waiting for {self.execution_arn} ended without a result: {validated.get('message', validated)}"
            )
        snap = MapRunSnapshot.from_dict(validated["snapshot"])
        self._progress = validated.get("progress") or self._progress
        self._persist_map_run_link(context, snap)
        return self._finish(context, snap)

    def _look(self, context: Context) -> MapRunSnapshot | None:
        """One look (DescribeExecution, ListMapRuns, DescribeMapRun); None when Step Functions
        throttled it. Sets the wait before the next look either way."""
        try:
            snap = self.hook.snapshot(self.execution_arn)
        except ClientError as err:
            if not is_throttling(err):
                raise
            self._throttled += 1
            self._next_interval = throttle_delay(self._throttled, self.poke_interval, self.max_poke_interval)
            self.log.warning(
                "Step Functions throttled the look at %s (%s, %d in a row): waiting %.1fs longer, not failing. "
                "DescribeMapRun's budget (1 request/s per account and Region) is shared by every poller; "
                "raise poke_interval if this repeats.",
                self.execution_arn,
                throttling_code(err),
                self._throttled,
                self._next_interval,
            )
            return None
        self._throttled = 0
        now = datetime.fromtimestamp(time.time(), timezone.utc)
        self.log.info("%s", snap.progress_line(now))
        self._progress = add_point(self._progress, point(snap, now))
        self._next_interval = next_interval(
            snap, self.poke_interval, self.max_poke_interval, now=now, series=self._progress
        )
        self._persist_map_run_link(context, snap)
        return snap

    def _get_next_poke_interval(self, started_at, run_duration, poke_count) -> float:
        """The wait :meth:`_look` chose (growing with the remaining time, longer after throttling);
        Airflow's own ``exponential_backoff`` when that is switched on."""
        if self._next_interval is not None and not self.exponential_backoff:
            return self._next_interval
        return super()._get_next_poke_interval(started_at, run_duration, poke_count)

    def _persist_map_run_link(self, context: Context, snap: MapRunSnapshot) -> None:
        if snap.map_run_arn:
            MapRunLink.persist(
                context=context,
                operator=self,
                region_name=self.hook.conn_region_name,
                aws_partition=self.hook.conn_partition,
                map_run_arn=snap.map_run_arn,
            )

    def _finish(self, context: Context, snap: MapRunSnapshot) -> dict:
        summary = snap.as_dict()
        if (changes := self.hook.reported_changes(snap)) is not None:  # pinned items: changed/gone since listing
            summary.update(changes)
            self.log.info("Objects changed since the listing: %(changed)d; gone: %(gone)d", changes)
        # Pushed whatever the verdict, so failed runs keep their counts too (the map runs view reads it).
        if (ti := context.get("ti")) is not None:
            ti.xcom_push(key=SUMMARY_XCOM_KEY, value=summary)
            ti.xcom_push(key=PROGRESS_XCOM_KEY, value=self._progress)
        emit_map_run_metrics(snap.as_dict(), dag_id=getattr(context.get("dag"), "dag_id", ""))
        failure = verdict(
            snap,
            max_failed_items=require_native(self.max_failed_items, int, "max_failed_items"),
            max_failed_percentage=require_native(
                self.max_failed_percentage, (int, float), "max_failed_percentage", optional=True
            ),
        )
        if failure:
            details = self.hook.failure_details(snap)
            raise AirflowFailException(failure + ("\n" + details if details else ""))
        self.log.info("Execution %s succeeded: %s", self.execution_arn, snap.item_counts)
        manifest = self.manifest if isinstance(self.manifest, dict) else None
        set_outlet_extra(self, context, processed_extra(snap.as_dict(), manifest))
        return summary

    # --- stop on kill ------------------------------------------------------------------------------

    def on_kill(self) -> None:
        """Stop the execution when the waiting task is killed (poke/reschedule modes)."""
        if not self.stop_on_kill:
            return
        if self.hook.stop_if_running(self.execution_arn, self._stop_cause or f"Airflow task {self.task_id} was killed"):
            self.log.warning("Stopped execution %s because the task was killed.", self.execution_arn)
