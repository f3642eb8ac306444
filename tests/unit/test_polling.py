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
    is_throttling,
    next_interval,
    remaining_seconds,
    throttle_delay,
)

NOW = datetime.datetime(2026, 12, 4, 12, 0, tzinfo=datetime.timezone.utc)


def _snap(done: int, total: int, seconds: float, status: str = "RUNNING") -> MapRunSnapshot:
    start = (NOW - datetime.timedelta(seconds=seconds)).isoformat()
    counts = {"succeeded": done, "failed": 0, "running": 1, "pending": total - done, "total": total}
    return MapRunSnapshot("arn:x", status, "arn:m", "RUNNING", counts, map_run_start_date=start)


def test_the_interval_grows_with_the_remaining_time_within_its_bounds():
    no_jitter = lambda: 0.0  # noqa: E731
    # 10 of 1,000 items in 100 s: 0.1 items/s, 9,900 s left: a tenth is 990 s, capped at 600.
    assert remaining_seconds(_snap(10, 1000, 100), NOW) == 9900
    assert next_interval(_snap(10, 1000, 100), 30, now=NOW, rng=no_jitter) == DEFAULT_MAX_INTERVAL
    # 500 of 1,000 in 100 s: 100 s left: 10 s, below poke_interval 30: 30.
    assert next_interval(_snap(500, 1000, 100), 30, now=NOW, rng=no_jitter) == 30
    # 100 of 1,000 in 100 s: 900 s left: 90 s.
    assert next_interval(_snap(100, 1000, 100), 30, now=NOW, rng=no_jitter) == 90
    # Nothing done yet (no rate), or no Map Run: poke_interval.
    assert next_interval(_snap(0, 1000, 100), 30, now=NOW, rng=no_jitter) == 30
    assert next_interval(None, 30, rng=no_jitter) == 30
    # A ceiling below poke_interval is raised to it; jitter adds at most 10 %, never past the ceiling.
    assert next_interval(_snap(10, 1000, 100), 30, 10, now=NOW, rng=no_jitter) == 30
    assert next_interval(_snap(100, 1000, 100), 30, now=NOW, rng=lambda: 0.999) <= 99.0
    assert next_interval(_snap(10, 1000, 100), 30, now=NOW, rng=lambda: 0.999) == DEFAULT_MAX_INTERVAL


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
