"""How often the pollers look (no sockets): the interval grows with the expected remaining time,
stays between poke_interval and the ceiling, and throttling waits grow and are jittered. The UI page
never calls Step Functions."""

from __future__ import annotations

import ast
import datetime
from pathlib import Path

from xacct_map.core.map_run import MapRunSnapshot
from xacct_map.core.polling import (
    DEFAULT_MAX_INTERVAL,
    MAX_FLOOR_JITTER,
    defer_now,
    is_throttling,
    next_interval,
    recent_rate,
    remaining_seconds,
    throttle_delay,
    trusted_remaining,
)

NOW = datetime.datetime(2026, 12, 4, 12, 0, tzinfo=datetime.timezone.utc)


def _snap(
    done: int, total: int, seconds: float, status: str = "RUNNING", now: datetime.datetime = NOW
) -> MapRunSnapshot:
    start = (now - datetime.timedelta(seconds=seconds)).isoformat()
    counts = {"succeeded": done, "failed": 0, "running": 1, "pending": total - done, "total": total}
    return MapRunSnapshot("arn:x", status, "arn:m", "RUNNING", counts, map_run_start_date=start)


def test_the_interval_grows_with_the_remaining_time_within_its_bounds():
    no_jitter = lambda: 0.0  # noqa: E731
    # 100 of 1,000 items in 3,000 s: 27,000 s left, but trusted only as far as the 3,000 s seen: 300 s.
    assert remaining_seconds(_snap(100, 1000, 3000), NOW) == 27000
    assert trusted_remaining(_snap(100, 1000, 3000), NOW) == 3000
    assert next_interval(_snap(100, 1000, 3000), 30, now=NOW, rng=no_jitter) == 300
    # A tenth above the ceiling: the ceiling (600 s by default, or max_interval).
    assert next_interval(_snap(10, 1000, 20000), 30, now=NOW, rng=no_jitter) == DEFAULT_MAX_INTERVAL
    assert next_interval(_snap(100, 1000, 3000), 30, 120, now=NOW, rng=no_jitter) == 120
    # 500 of 1,000 in 100 s: 100 s left: 10 s, below poke_interval 30: 30.
    assert next_interval(_snap(500, 1000, 100), 30, now=NOW, rng=no_jitter) == 30
    # 10 of 1,000 in 100 s: 9,900 s left at that rate, but a rate seen for 100 s: 10 s, so 30.
    assert next_interval(_snap(10, 1000, 100), 30, now=NOW, rng=no_jitter) == 30
    # Nothing done yet (no rate), or no Map Run: poke_interval.
    assert next_interval(_snap(0, 1000, 100), 30, now=NOW, rng=no_jitter) == 30
    assert next_interval(None, 30, rng=no_jitter) == 30
    # A ceiling below poke_interval is raised to it.
    assert next_interval(_snap(100, 1000, 3000), 30, 10, now=NOW, rng=no_jitter) == 30


def test_jitter_keeps_a_grown_look_before_the_predicted_end_and_the_floor_within_half_a_second():
    most = lambda: 0.999  # noqa: E731
    assert 300 < next_interval(_snap(100, 1000, 3000), 30, now=NOW, rng=most) <= 330  # a tenth of 3,000 s, +10 %
    assert next_interval(_snap(10, 1000, 20000), 30, now=NOW, rng=most) == DEFAULT_MAX_INTERVAL  # never past it
    assert 30 < next_interval(None, 30, rng=most) <= 30 + MAX_FLOOR_JITTER
    assert 1 < next_interval(None, 1, rng=most) <= 1.1
    assert len({next_interval(None, 30) for _ in range(20)}) > 1


def test_the_recent_rate_catches_a_run_that_speeds_up():
    # 1,000 items in 100 s on average, but 100 items/s over the last 10 s: 90 s left, not 900.
    series = [[NOW.timestamp() - 10, 0, 0, 0, 0, 10000], [NOW.timestamp(), 1000, 0, 0, 0, 10000]]
    assert recent_rate(series) == 100
    assert remaining_seconds(_snap(1000, 10000, 100), NOW, series) == 90
    assert remaining_seconds(_snap(1000, 10000, 100), NOW) == 900
    # A run slowing down keeps its average rate; no progress between the looks: no recent rate.
    assert recent_rate([[0, 5, 0, 0, 0, 9], [10, 5, 0, 0, 0, 9]]) is None
    assert recent_rate(series[:1]) is None and recent_rate(None) is None


def _steady_schedule(poke_interval: float, seconds: float, max_interval: float | None = None) -> tuple[float, int]:
    """Looks at a run going at one rate from 0 to ``seconds``: how late the first look after its end
    comes, and how many looks it took (the sleeps next_interval computes, the worst jitter)."""
    total, t, looks = 100_000, 1.0, 0
    while True:
        looks += 1
        if t >= seconds:
            return t - seconds, looks
        done = int(total * t / seconds)
        now = datetime.datetime.fromtimestamp(NOW.timestamp() + t, datetime.timezone.utc)
        snap = _snap(done, total, t, now=now)
        t += next_interval(snap, poke_interval, max_interval, now=now, rng=lambda: 0.999)


def test_the_look_after_a_steady_runs_end_comes_within_one_interval_and_half_a_second():
    for poke_interval in (1, 5, 30):
        for seconds in (2, 15, 90, 600, 3600, 6 * 3600, 48 * 3600):
            late, looks = _steady_schedule(poke_interval, seconds)
            assert late <= poke_interval + MAX_FLOOR_JITTER, (poke_interval, seconds, late)
    # The budget: a 48-hour run at 30 s is looked at a few hundred times, not 5,760.
    assert _steady_schedule(30, 48 * 3600)[1] < 800


def test_a_deferrable_sensor_defers_once_the_run_surely_outlasts_the_no_event_window():
    window = 10.0
    # Nothing known yet (no rate, throttled): keep polling, until one more interval would pass the limit.
    assert not defer_now(None, 1, window, polled_for=0, poll_limit=60)
    assert not defer_now(_snap(0, 1000, 30), 1, window, polled_for=58.5, poll_limit=60, now=NOW)
    assert defer_now(_snap(0, 1000, 30), 1, window, polled_for=59.5, poll_limit=60, now=NOW)
    assert defer_now(None, 1, window, polled_for=0, poll_limit=0)  # poll_before_defer=0
    # A run that may end within the window plus an interval (by 1.5x): keep polling.
    assert not defer_now(_snap(500, 1000, 10), 1, window, polled_for=9, poll_limit=60, now=NOW)
    # One that has run 20 s and has 180 s left: 20 > 1.5 x (10 + 1): defer.
    assert defer_now(_snap(100, 1000, 20), 1, window, polled_for=19, poll_limit=60, now=NOW)
    # A long ETA seen for 5 s only is not trusted yet.
    assert not defer_now(_snap(10, 1000, 5), 1, window, polled_for=4, poll_limit=60, now=NOW)


def test_throttled_waits_grow_are_jittered_and_always_longer_than_a_normal_one():
    waits = [throttle_delay(n, 30, rng=lambda: 1.0) for n in range(1, 8)]
    assert waits == sorted(waits) and waits[0] == 60 and waits[-1] == 2 * DEFAULT_MAX_INTERVAL
    assert throttle_delay(1, 30, rng=lambda: 0.0) == 31.0  # half of 60 is 30: one more second than poke_interval
    assert throttle_delay(3, 0.1, rng=lambda: 0.0) == 4.0  # tiny poke intervals still back off in seconds
    assert len({throttle_delay(2, 30) for _ in range(20)}) > 1


def test_throttling_codes():
    from botocore.exceptions import ClientError

    def error(code):
        return ClientError({"Error": {"Code": code, "Message": "Rate exceeded"}}, "DescribeMapRun")

    assert is_throttling(error("ThrottlingException")) and is_throttling(error("TooManyRequestsException"))
    assert not is_throttling(error("ExecutionDoesNotExist")) and not is_throttling(ValueError("x"))


def test_the_ui_page_calls_step_functions_only_through_its_cache():
    """The Map runs page looks at AWS (through the sensor's own hook) only inside ``cache.get``'s look,
    so each run costs at most one look per refresh interval however many browsers poll it
    (the behaviour: tests/unit/test_ui.py::test_the_page_makes_one_aws_look_per_run_per_interval...)."""
    source = (Path(__file__).resolve().parents[2] / "plugins/xacct_map/ui.py").read_text()
    tree = ast.parse(source)
    imported = {a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {"boto3", "botocore", "aiobotocore"} & {m.split(".")[0] for m in modules | imported if m}
    called = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert not {"describe_map_run", "list_map_runs", "describe_execution", "client"} & called
    in_cache_looks = {
        id(inner)
        for call in ast.walk(tree)
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "get"
        for arg in call.args
        if isinstance(arg, ast.Lambda)
        for inner in ast.walk(arg)
    }
    hook_calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "_hook"]
    assert hook_calls and all(id(n) in in_cache_looks for n in hook_calls)
