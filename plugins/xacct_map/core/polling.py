"""How often the sensor and the trigger look at a Map Run, so that many of them share an account's
Step Functions budget (no Airflow).

Step Functions refills DescribeMapRun at 1 request per second per account and Region (a bucket of
200), ListMapRuns at 1 per second (100), DescribeExecution at 15 (300). Every look costs one of
each, so 100 sensors polling every 30 s already ask for 3.3 DescribeMapRun per second. The rules:

* :func:`next_interval`: the interval grows with the run's expected remaining time (a tenth of the
  ETA), never below the user's ``poke_interval`` and never above ``max_interval``; a little jitter
  keeps many sensors from polling in step.
* :func:`throttle_delay`: a ``ThrottlingException`` (or another throttling code) means "wait longer",
  never a failure: an exponentially growing, jittered delay.

The notice bound: a look comes at most ``poke_interval`` + :data:`MAX_FLOOR_JITTER` after the run's
*predicted* end. A grown interval is a tenth of the remaining time, so it always ends before the
predicted end (even with its 10 % jitter); once a tenth is below ``poke_interval`` the looks come
every ``poke_interval`` (plus at most :data:`MAX_FLOOR_JITTER`). The prediction is guarded against
a run that speeds up (concurrency ramping up): the ETA is the faster of the Map Run's average rate
and its rate between the last two looks, and never more than the time the run has already run
(:func:`trusted_remaining`).

:func:`defer_now` tells a deferrable sensor when to hand over to the triggerer: only once the run is
expected to outlast the window in which a trigger's event must not fire (see
:mod:`xacct_map.triggers`), so a short run ends while the sensor still polls in its own process.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime

from xacct_map.core.map_run import RUNNING, MapRunSnapshot

#: Error codes AWS uses for "slow down" on the calls a poller makes.
THROTTLING_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
    }
)
#: The default ceiling of the interval: a long run is still looked at every 10 minutes.
DEFAULT_MAX_INTERVAL = 600.0
#: The interval is this fraction of the expected remaining time.
ETA_FRACTION = 0.1
#: Jitter of a grown interval: up to this fraction longer (still before the predicted end).
JITTER_FRACTION = 0.1
#: Jitter at the floor (``poke_interval``): up to 10 % of it, never more than this many seconds.
MAX_FLOOR_JITTER = 0.5
#: A deferrable sensor defers when the run is expected to last this many times longer than the window
#: in which the trigger may not fire plus one interval.
DEFER_MARGIN = 1.5


def is_throttling(err: BaseException) -> bool:
    """True for a botocore ``ClientError`` whose code says "slow down"."""
    response = getattr(err, "response", None)
    code = (response or {}).get("Error", {}).get("Code") if isinstance(response, dict) else None
    return code in THROTTLING_CODES


def throttling_code(err: BaseException) -> str:
    """The error code of a throttling error (for the log line)."""
    return str(getattr(err, "response", {}).get("Error", {}).get("Code") or type(err).__name__)


def max_interval_for(poke_interval: float, max_interval: float | None) -> float:
    """The ceiling of the interval: ``max_interval`` or :data:`DEFAULT_MAX_INTERVAL`, never below ``poke_interval``."""
    return max(float(poke_interval), float(max_interval if max_interval is not None else DEFAULT_MAX_INTERVAL))


def recent_rate(series: list | None) -> float | None:
    """Items finished per second between the last two recorded looks (:func:`xacct_map.core.progress.point`)."""
    if not series or len(series) < 2:
        return None
    (t0, ok0, failed0, *_), (t1, ok1, failed1, *_) = series[-2], series[-1]
    done = (ok1 + failed1) - (ok0 + failed0)
    return done / (t1 - t0) if t1 > t0 and done > 0 else None


def remaining_seconds(
    snap: MapRunSnapshot | None, now: datetime | None = None, series: list | None = None
) -> float | None:
    """The Map Run's expected remaining time, or None while it cannot be told: at the faster of its
    average rate and its rate between the last two looks of ``series`` (a run speeding up)."""
    if snap is None or snap.status != RUNNING:
        return None
    total = int((snap.item_counts or {}).get("total", 0) or 0)
    rates = [r for r in (snap.rate(now), recent_rate(series)) if r]
    if not rates or total <= snap.done_items:
        return None
    return (total - snap.done_items) / max(rates)


def trusted_remaining(
    snap: MapRunSnapshot | None, now: datetime | None = None, series: list | None = None
) -> float | None:
    """The remaining time an interval may rely on: the ETA (:func:`remaining_seconds`), never more
    than the time the Map Run has already run. A rate seen for 10 s says little about the next
    hour (concurrency still ramping up): the intervals grow with what was observed, too."""
    remaining = remaining_seconds(snap, now, series)
    elapsed = snap.elapsed_seconds(now) if snap is not None else None
    if remaining is None or elapsed is None:
        return None
    return min(remaining, max(0.0, elapsed))


def next_interval(
    snap: MapRunSnapshot | None,
    poke_interval: float,
    max_interval: float | None = None,
    *,
    now: datetime | None = None,
    series: list | None = None,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds until the next look: a tenth of the expected remaining time (:func:`trusted_remaining`),
    between ``poke_interval`` and ``max_interval`` (:func:`max_interval_for`). Jitter: a grown
    interval up to 10 % longer (a look still before the predicted end); at ``poke_interval``, up to
    10 % of it but at most :data:`MAX_FLOOR_JITTER` s, so the look after the end comes within
    ``poke_interval`` plus half a second."""
    low, high = float(poke_interval), max_interval_for(poke_interval, max_interval)
    horizon = trusted_remaining(snap, now, series)
    base = low if horizon is None else min(high, max(low, horizon * ETA_FRACTION))
    jitter = base * JITTER_FRACTION if base > low else min(low * JITTER_FRACTION, MAX_FLOOR_JITTER)
    return min(high, base + jitter * rng())


def defer_now(
    snap: MapRunSnapshot | None,
    interval: float,
    no_event_window: float,
    *,
    polled_for: float,
    poll_limit: float,
    now: datetime | None = None,
    series: list | None = None,
) -> bool:
    """Whether a deferrable sensor that has polled in its own process for ``polled_for`` seconds
    should defer now: when the run is expected (:func:`trusted_remaining`) to outlast the trigger's
    ``no_event_window`` plus one ``interval`` by :data:`DEFER_MARGIN` (so the trigger's event does
    not have to wait), or when one more ``interval`` would pass ``poll_limit`` (the worker slot is
    not held longer). An unknown ETA (no Map Run or no item done yet, throttled) keeps polling up
    to the limit."""
    if polled_for + interval > poll_limit:
        return True
    remaining = trusted_remaining(snap, now, series)
    return remaining is not None and remaining > DEFER_MARGIN * (no_event_window + interval)


def throttle_delay(
    attempt: int,
    poke_interval: float,
    max_interval: float | None = None,
    *,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after the ``attempt``-th throttled look in a row (1, 2, ...): between half and
    all of ``max(poke_interval, 1) * 2 ** attempt``, capped at twice the ceiling, at least 1 s more
    than ``poke_interval`` (the wait is always longer than a normal one)."""
    ceiling = 2 * max_interval_for(poke_interval, max_interval)
    full = min(ceiling, max(float(poke_interval), 1.0) * 2 ** max(1, attempt))
    return max(float(poke_interval) + 1.0, full * (0.5 + 0.5 * rng()))
