"""benchmarks/listing.py end to end in its --quick mode, so the benchmark cannot rot (no timing asserted)."""

from __future__ import annotations

import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def benchmark_listing(monkeypatch):
    monkeypatch.syspath_prepend(ROOT)
    from benchmarks import listing

    return listing


def test_quick_run_measures_every_part_and_checks_the_manifests(benchmark_listing, capsys, tmp_path):
    rows = benchmark_listing.main(["--quick", "--markdown", "--json", str(tmp_path / "rows.json")])
    out = capsys.readouterr().out
    assert [r["keys"] for r in rows] == [0, 1000, 2500]
    for row in rows:
        assert row["paginator"]["exact"] and row["xacct"]["exact"], row
        assert row["paginator"]["requests"] >= 2 and row["xacct"]["requests"] >= 3
        assert row["xacct"]["rss_kib"] > 0 and row["xacct"]["cpu_s"] > 0
    # the command's --json output reached the report: the engine and its requests
    listing = rows[-1]["xacct"]["listing"]
    assert listing["engine"] == "parallel" and listing["workers"] >= 1 and listing["keys"] == 2500
    assert rows[1]["xacct"]["listing"]["workers"] == 0  # one page: no worker process
    assert "| 2,500 | 0 ms | on-request |" in out and "Fixed cost" in out and "**" in out
    assert (tmp_path / "rows.json").exists()
