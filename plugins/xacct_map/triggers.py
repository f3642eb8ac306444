"""Deferrable waiting: the triggerer polls the execution and its Map Run, no worker slot held.

The trigger fires one event, in the amazon provider's shape: ``{"status": "success", "snapshot": ...,
"progress": ...}`` (``progress``: the item counts of every poll, for the Map runs page's chart)
once the execution left RUNNING (whatever its verdict: :class:`~xacct_map.sensors.DistributedMapSensor`
judges the snapshot), or ``{"status": "error", "message": ...}`` when it could not be watched.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent
from botocore.exceptions import BotoCoreError, ClientError

from xacct_map.core.map_run import RUNNING
from xacct_map.core.polling import is_throttling, next_interval, throttle_delay, throttling_code
from xacct_map.core.progress import add_point, point
from xacct_map.hooks import DistributedMapHook


class DistributedMapTrigger(BaseTrigger):
    """
    Poll a Distributed Map execution until it leaves RUNNING; fire one event with its snapshot.

    Events: ``{"status": "success", "snapshot": <MapRunSnapshot.as_dict()>}`` when the execution
    ended (the sensor decides whether that is a success of the task), ``{"status": "error",
    "message": ...}`` when AWS refused to describe it (e.g. the execution does not exist or access
    was denied).

    Logs the Map Run's progress on every poll (visible in the task log). When a user marks the task
    failed or clears it while it waits, :meth:`on_kill` stops the execution (``stop_on_kill``);
    triggerer restarts and redistribution do not.

    :param execution_arn: the execution to wait for.
    :param poll_interval: the shortest wait between polls, in seconds; the wait grows with the run's
        expected remaining time up to ``max_poll_interval`` (:mod:`xacct_map.core.polling`), and a
        ``ThrottlingException`` makes it wait longer (jittered backoff, a log line), never fail.
    :param max_poll_interval: the longest wait between polls (default 600 s).
    :param not_before: the earliest time (seconds since the epoch) the event may fire: the deferral
        plus :attr:`no_event_window` (see :meth:`run`); default: the trigger's start plus that window.
    :param stop_on_kill: stop the execution when the deferred task is killed by a user.
    :param stop_cause: the cause recorded on StopExecution (names the DAG run).
    :param aws_conn_id: AWS connection of the pipeline account.
    :param region_name: AWS region_name.
    :param verify: Whether or not to verify SSL certificates.
    :param botocore_config: Configuration dictionary (key-values) for botocore client.
    """

    #: Seconds after the deferral during which no event fires (see :meth:`run`); the looks do not wait.
    no_event_window: float = 10.0

    def __init__(
        self,
        *,
        execution_arn: str,
        poll_interval: float = 30,
        max_poll_interval: float | None = None,
        not_before: float | None = None,
        stop_on_kill: bool = True,
        stop_cause: str = "",
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict | None = None,
    ):
        super().__init__()
        self.execution_arn = execution_arn
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.not_before = not_before
        self.stop_on_kill = stop_on_kill
        self.stop_cause = stop_cause
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.verify = verify
        self.botocore_config = botocore_config

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{self.__class__.__module__}.{self.__class__.__qualname__}",
            {
                "execution_arn": self.execution_arn,
                "poll_interval": self.poll_interval,
                "max_poll_interval": self.max_poll_interval,
                "not_before": self.not_before,
                "stop_on_kill": self.stop_on_kill,
                "stop_cause": self.stop_cause,
                "aws_conn_id": self.aws_conn_id,
                "region_name": self.region_name,
                "verify": self.verify,
                "botocore_config": self.botocore_config,
            },
        )

    def hook(self) -> DistributedMapHook:
        return DistributedMapHook(
            aws_conn_id=self.aws_conn_id, region_name=self.region_name, verify=self.verify, config=self.botocore_config
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # An event that resumes the task before the deferring task's process has exited (seen taking
        # 5 s on a loaded box) gets it retried: LocalExecutor's late report of that exit removes the
        # resumed try (same key) from its running set, and the scheduler's process_executor_events
        # takes a RUNNING task its executor no longer has for one killed externally (Airflow 3.3.2).
        # So the event, never the looks, waits until ``not_before``.
        not_before = self.not_before if self.not_before is not None else time.time() + self.no_event_window
        event = await self._watch()
        if (wait := not_before - time.time()) > 0:
            self.log.info("The run ended before the deferring task's process surely exited: firing in %.1fs.", wait)
            await asyncio.sleep(wait)
        yield event

    async def _watch(self) -> TriggerEvent:
        """Look every interval (the first after ``poll_interval``: the sensor has just looked) until
        the execution left RUNNING or could not be described."""
        await asyncio.sleep(self.poll_interval)
        hook = self.hook()
        throttled = 0
        progress: list = []
        async with await hook.get_async_conn() as client:
            while True:
                try:
                    snap = await hook.snapshot_async(client, self.execution_arn)
                except (ClientError, BotoCoreError) as err:
                    if not is_throttling(err):
                        return TriggerEvent(
                            {"status": "error", "message": f"Describing {self.execution_arn} failed: {err}"}
                        )
                    throttled += 1
                    delay = throttle_delay(throttled, self.poll_interval, self.max_poll_interval)
                    self.log.warning(
                        "Step Functions throttled the look at %s (%s, %d in a row): waiting %.1fs longer.",
                        self.execution_arn,
                        throttling_code(err),
                        throttled,
                        delay,
                    )
                    await asyncio.sleep(delay)
                    continue
                throttled = 0
                now = datetime.fromtimestamp(time.time(), timezone.utc)
                self.log.info("%s", snap.progress_line(now))
                progress = add_point(progress, point(snap, now))
                if snap.status != RUNNING:
                    return TriggerEvent({"status": "success", "snapshot": snap.as_dict(), "progress": progress})
                wait = next_interval(snap, self.poll_interval, self.max_poll_interval, now=now, series=progress)
                await asyncio.sleep(wait)

    async def on_kill(self) -> None:
        if not self.stop_on_kill:
            return
        hook = self.hook()
        async with await hook.get_async_conn() as client:
            if await hook.stop_if_running_async(client, self.execution_arn, self.stop_cause):
                self.log.warning("Stopped execution %s: %s", self.execution_arn, self.stop_cause)
