"""How often the sensor and the trigger look at a Map Run, so that many of them share an account's
Step Functions budget (no Airflow).

Step Functions refills DescribeMapRun at 1 request per second per account and Region (a bucket of
200), ListMapRuns at 1 per second (100), DescribeExecution at 15 (300). Every look costs one of
each, so 100 sensors polling every 30 s already ask for 3.3 DescribeMapRun per second. Two rules:

* :func:`next_interval`: the interval grows with the run's expected remaining time (a tenth of the
  ETA from the Map Run's own rate), never below the user's ``poke_interval`` and never above
  ``max_interval``; a little jitter (up to 10 % longer) keeps many sensors from polling in step.
* :func:`throttle_delay`: a ``ThrottlingException`` (or another throttling code) means "wait longer",
  never a failure: an exponentially growing, jittered delay.
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


def remaining_seconds(snap: MapRunSnapshot | None, now: datetime | None = None) -> float | None:
    """The Map Run's expected remaining time from its own rate, or None while it cannot be told."""
    if snap is None or snap.status != RUNNING:
        return None
    total = int((snap.item_counts or {}).get("total", 0) or 0)
    rate = snap.rate(now)
    if not rate or total <= snap.done_items:
        return None
    return (total - snap.done_items) / rate


def next_interval(
    snap: MapRunSnapshot | None,
    poke_interval: float,
    max_interval: float | None = None,
    *,
    now: datetime | None = None,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds until the next look: a tenth of the expected remaining time, between ``poke_interval``
    and ``max_interval`` (:func:`max_interval_for`), up to 10 % longer (jitter)."""
    low, high = float(poke_interval), max_interval_for(poke_interval, max_interval)
    remaining = remaining_seconds(snap, now)
    base = low if remaining is None else min(high, max(low, remaining * ETA_FRACTION))
    return min(high, base * (1.0 + 0.1 * rng()))


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
