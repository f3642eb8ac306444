"""A Map Run's progress as the Map runs page shows it: the bar's parts, items/s, ETA, and its history.

Airflow-free: the sensor and the trigger record :func:`point` on every look (:func:`add_point` keeps the
series short), the page turns a snapshot into :func:`progress` and a series into :func:`chart_svg`.
"""

from __future__ import annotations

import html
from datetime import datetime, timezone

from xacct_map.core.map_run import RUNNING, MapRunSnapshot

#: A recorded point: ``[epoch seconds, succeeded, failed, running, pending, total]`` (compact in XCom).
POINT_FIELDS = ("t", "succeeded", "failed", "running", "pending", "total")
#: The most points a series keeps (an XCom of a few KiB); older points are thinned first.
MAX_POINTS = 240


def counts(snap: MapRunSnapshot, expected_total: int | None = None) -> dict:
    """The bar's four parts, which add up to ``total``: pending is what the other three leave.

    :param expected_total: the manifest's item count, when known: the total while the Map Runs have
        not counted every item yet (a manifest in parts starts one Map Run per part, one after another).
    """
    c = snap.item_counts
    total = max(int(c.get("total", 0) or 0), expected_total or 0)
    succeeded = int(c.get("succeeded", 0) or 0)
    failed = snap.failed_items
    running = min(int(c.get("running", 0) or 0), max(0, total - succeeded - failed))
    return {
        "succeeded": succeeded,
        "failed": failed,
        "running": running,
        "pending": max(0, total - succeeded - failed - running),
        "total": total,
    }


def point(snap: MapRunSnapshot, at: datetime | None = None) -> list:
    """One recorded look: when, and the bar's parts."""
    c = counts(snap)
    when = (at or datetime.now(timezone.utc)).timestamp()
    return [round(when, 1), c["succeeded"], c["failed"], c["running"], c["pending"], c["total"]]


def add_point(series: list | None, new: list, limit: int = MAX_POINTS) -> list:
    """``series`` with ``new`` appended (a point with the same counts as the last two replaces the
    middle one: a long flat stretch keeps its two ends); beyond ``limit``, every other old point goes."""
    out = [list(p) for p in series or []]
    if len(out) >= 2 and out[-1][1:] == new[1:] == out[-2][1:]:
        out[-1] = list(new)
    else:
        out.append(list(new))
    if len(out) > limit:
        half = len(out) // 2
        out = out[:half:2] + out[half:]
    return out


def progress(snap: MapRunSnapshot, now: datetime | None = None, expected_total: int | None = None) -> dict:
    """What the bar shows: its parts, percent done, items/s, ETA (while running) and duration
    (``expected_total``: see :func:`counts`)."""
    now = now or datetime.now(timezone.utc)
    c = counts(snap, expected_total)
    done = c["succeeded"] + c["failed"]
    rate = snap.rate(now)
    eta = None
    if rate and snap.status == RUNNING and c["total"] > done:
        eta = round((c["total"] - done) / rate, 1)
    start = datetime.fromisoformat(snap.start_date) if snap.start_date else None
    duration = snap.duration_seconds()
    if duration is None and start is not None:
        duration = max(0.0, (now - start).total_seconds())  # still running: so far
    return {
        **c,
        "done": done,
        "percent": round(100.0 * done / c["total"], 1) if c["total"] else None,
        "items_per_second": round(rate, 3) if rate else None,
        "eta_seconds": eta,
        "duration_seconds": None if duration is None else round(duration, 1),
    }


def chart_svg(series: list, *, start: str | None = None, width: int = 560, height: int = 200) -> str:
    """Items done (succeeded + failed) and failed over time, as inline SVG; a note when there is no series.

    :param start: when the Map Run started (ISO 8601): the chart starts there, at zero items done.
    """
    if series and start and (t0 := datetime.fromisoformat(start).timestamp()) < series[0][0]:
        series = [[t0, 0, 0, 0, series[0][5], series[0][5]], *series]
    if len(series) < 2:
        return (
            f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">'
            f'<text x="10" y="{height // 2}">Not enough snapshots recorded yet.</text></svg>'
        )
    left, bottom, top, right = 48, 24, 10, 10
    t0, t1 = series[0][0], series[-1][0]
    span = max(t1 - t0, 1e-9)
    total = max(max(p[5] for p in series), 1)

    def xy(t: float, value: int) -> str:
        x = left + (t - t0) / span * (width - left - right)
        y = height - bottom - value / total * (height - top - bottom)
        return f"{x:.1f},{y:.1f}"

    done = " ".join(xy(p[0], p[1] + p[2]) for p in series)
    failed = " ".join(xy(p[0], p[2]) for p in series)
    e = html.escape
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="items done over time">'
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#a0aec0"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#a0aec0"/>'
        f'<text x="{left - 6}" y="{top + 10}" text-anchor="end">{total}</text>'
        f'<text x="{left - 6}" y="{height - bottom}" text-anchor="end">0</text>'
        f'<text x="{width - right}" y="{height - 6}" text-anchor="end">{e(f"{span:.0f} s")}</text>'
        f'<polyline class="done" fill="none" stroke="#38a169" stroke-width="2" points="{done}"/>'
        f'<polyline class="failed" fill="none" stroke="#e53e3e" stroke-width="2" points="{failed}"/>'
        "</svg>"
    )
