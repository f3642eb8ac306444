"""How soon the deferrable sensor notices a finished run, on a virtual clock (no wall-clock timing).

"Notices" means: the look that saw the execution finished (the sensor's own look, or the trigger's
event) minus the execution's stopDate. The bound is ``poke_interval`` + 1 s (the rule gives
``poke_interval`` + :data:`MAX_FLOOR_JITTER`), for runs that end while the sensor still polls in its
process and for long ones the trigger follows with growing intervals; the trigger's event never
fires within its no-event window after the deferral (the Airflow 3.3 race, see triggers.py).

The sensor and the trigger run for real (DistributedMapSensor.execute, TaskDeferred, the trigger
rebuilt from its serialized kwargs, its run() to the event); only their clock, their sleeps and the
Step Functions look are replaced: a simulated Map Run whose rate ramps up over its first tenth (a
run that speeds up, the hard case for an ETA), then stays steady.
"""

from __future__ import annotations

import asyncio
import types
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pytest

from xacct_map.core.map_run import MapRunSnapshot
from xacct_map.core.polling import MAX_FLOOR_JITTER
from xacct_map.sensors import DistributedMapSensor
from xacct_map.triggers import DistributedMapTrigger
from xacct_map.version_compat import TaskDeferred

ARN = "arn:aws:states:us-east-1:123456789012:execution:machine:notice"
T0 = datetime(2026, 12, 5, tzinfo=timezone.utc).timestamp()


class Clock:
    """Virtual seconds since the epoch: the sleeps advance it, nothing waits."""

    def __init__(self, now: float):
        self.now = now

    def time(self) -> float:
        return self.now

    monotonic = time

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat()


@dataclass
class SimulatedRun:
    """A Map Run of ``total`` items from ``start`` to ``stop``; its rate grows linearly over the first
    ``ramp`` of the run (concurrency ramping up), then stays steady."""

    start: float
    stop: float
    total: int = 10_000
    ramp: float = 0.1
    looks: list = field(default_factory=list)

    def fraction_done(self, t: float) -> float:
        x, a = min(1.0, max(0.0, (t - self.start) / (self.stop - self.start))), self.ramp
        return (x * x / (2 * a) if x < a else a / 2 + (x - a)) / (1 - a / 2)

    def snapshot(self, t: float) -> MapRunSnapshot:
        self.looks.append(t)
        finished = t >= self.stop
        done = self.total if finished else int(self.total * self.fraction_done(t))
        counts = {"succeeded": done, "failed": 0, "running": self.total - done, "pending": 0, "total": self.total}
        return MapRunSnapshot(
            ARN,
            "SUCCEEDED" if finished else "RUNNING",
            "arn:aws:states:us-east-1:123456789012:mapRun:machine/Map:1",
            "SUCCEEDED" if finished else "RUNNING",
            counts,
            start_date=_iso(self.start),
            stop_date=_iso(self.stop) if finished else None,
            map_run_start_date=_iso(self.start),
        )


class FakeHook:
    """The sensor's and the trigger's hook, answering every look from the simulated run."""

    conn_region_name, conn_partition = "us-east-1", "aws"

    def __init__(self, run: SimulatedRun, clock: Clock):
        self.run, self.clock = run, clock

    def snapshot(self, execution_arn):
        return self.run.snapshot(self.clock.now)

    async def snapshot_async(self, client, execution_arn):
        return self.run.snapshot(self.clock.now)

    async def get_async_conn(self):
        return self

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        return False

    def reported_changes(self, snap):
        return None


@pytest.fixture
def simulate(monkeypatch, run_context):
    """``simulate(poke_interval, seconds)``: one deferrable sensor waiting for a run of ``seconds``
    that started a second before the sensor; returns what happened, on the virtual clock."""

    def run(poke_interval: float, seconds: float, **sensor_kwargs) -> dict:
        clock = Clock(T0)
        sim = SimulatedRun(start=T0 - 1.0, stop=T0 - 1.0 + seconds)
        hook = FakeHook(sim, clock)
        monkeypatch.setattr("xacct_map.sensors.time", clock)
        monkeypatch.setattr("xacct_map.triggers.time", clock)
        monkeypatch.setattr("xacct_map.triggers.asyncio", types.SimpleNamespace(sleep=clock.async_sleep))
        monkeypatch.setattr(DistributedMapTrigger, "hook", lambda self: hook)
        sensor = DistributedMapSensor(
            task_id="wait", execution_arn=ARN, poke_interval=poke_interval, deferrable=True, **sensor_kwargs
        )
        sensor.__dict__["hook"] = hook  # AwsBaseSensor.hook is a cached_property
        try:
            summary = sensor.execute(run_context())
            return {"summary": summary, "delay": clock.now - sim.stop, "deferred_at": None, "looks": sim.looks}
        except TaskDeferred as deferred:
            deferred_at = clock.now
            path, kwargs = deferred.trigger.serialize()
            trigger = DistributedMapTrigger(**kwargs)  # as the triggerer rebuilds it

        async def first_event():
            async for event in trigger.run():
                return event

        event = asyncio.run(first_event())
        summary = sensor.execute_complete(run_context(), event.payload)
        return {
            "summary": summary,
            "delay": clock.now - sim.stop,
            "deferred_at": deferred_at,
            "not_before": kwargs["not_before"],
            "event_at": clock.now,
            "looks": sim.looks,
        }

    return run


SECONDS = [0.5, 3, 8, 12, 15, 25, 40, 90, 300, 1800, 4 * 3600]


@pytest.mark.parametrize("poke_interval", [1, 5, 30])
@pytest.mark.parametrize("seconds", SECONDS)
def test_the_sensor_notices_a_finished_run_within_one_interval_plus_a_second(simulate, poke_interval, seconds):
    result = simulate(poke_interval, seconds)
    assert result["summary"]["status"] == "SUCCEEDED"
    assert 0 <= result["delay"] <= poke_interval + MAX_FLOOR_JITTER <= poke_interval + 1
    if result["deferred_at"] is not None:
        # Airflow 3.3 safety: the event never resumes the task within the window after the deferral.
        assert (
            result["event_at"] >= result["not_before"] >= result["deferred_at"] + DistributedMapTrigger.no_event_window
        )
        assert result["deferred_at"] - T0 <= 60  # the worker slot is given back within poll_before_defer
    looks = result["looks"]
    assert all(b - a <= 600 * 1.0001 for a, b in zip(looks, looks[1:], strict=False))  # max_poke_interval


def test_short_runs_end_without_a_trigger_and_long_ones_defer_at_once(simulate):
    # A short run is watched in the sensor's own process: no trigger, no race.
    assert simulate(1, 8)["deferred_at"] is None
    assert simulate(30, 25)["deferred_at"] is None
    # A longer run defers once it has run long enough for its ETA to be trusted (1.5 x (10 s + 1 s)),
    # before poll_before_defer (60 s); one without a rate yet (no item done) at poll_before_defer.
    five_minutes = simulate(1, 300)
    assert five_minutes["deferred_at"] is not None and five_minutes["deferred_at"] - T0 <= 20
    long_run = simulate(1, 4 * 3600)
    assert long_run["deferred_at"] is not None and long_run["deferred_at"] - T0 <= 60
    # Few looks for a long run: the interval grows with the remaining and the elapsed time (the budget).
    assert len(long_run["looks"]) < 250


def test_poll_before_defer_zero_defers_after_the_first_look_and_the_event_waits(simulate):
    """The run ends right after the deferral: the trigger sees it at once, its event waits out the
    window (the one case past the bound, only when the sensor is told not to poll first)."""
    result = simulate(1, 3, poll_before_defer=0)
    assert result["deferred_at"] == T0
    assert result["event_at"] == pytest.approx(result["not_before"])
    assert result["delay"] > 1 + MAX_FLOOR_JITTER


def test_a_trigger_without_not_before_waits_the_window_from_its_own_start(monkeypatch):
    """A trigger serialized before ``not_before`` existed (an upgrade while a task is deferred)."""
    clock = Clock(T0)
    sim = SimulatedRun(start=T0 - 60, stop=T0 + 0.5)
    monkeypatch.setattr("xacct_map.triggers.time", clock)
    monkeypatch.setattr("xacct_map.triggers.asyncio", types.SimpleNamespace(sleep=clock.async_sleep))
    monkeypatch.setattr(DistributedMapTrigger, "hook", lambda self: FakeHook(sim, clock))
    kwargs = DistributedMapTrigger(execution_arn=ARN, poll_interval=1).serialize()[1]
    del kwargs["not_before"]

    async def first_event():
        async for event in DistributedMapTrigger(**kwargs).run():
            return event

    event = asyncio.run(first_event())
    assert event.payload["status"] == "success"
    assert sim.looks == [T0 + 1]  # the look does not wait for the window...
    assert clock.now == T0 + DistributedMapTrigger.no_event_window  # ...the event does
