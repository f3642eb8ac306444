"""The dry-run estimate (:mod:`xacct_map.core.estimate`): counts and list-price costs from one price file."""

from __future__ import annotations

import json

import pytest

from xacct_map.core.estimate import PRICES_FILE, estimate, estimate_manifest, format_estimate, load_prices


def test_the_price_table_is_one_dated_file_in_the_package():
    prices = load_prices()
    assert PRICES_FILE.parts[-3:] == ("core", "data", "prices.json")
    assert prices["as_of"] and "us-east-1" in prices["regions"]
    assert prices["regions"]["us-east-1"]["sfn_standard_per_transition"] == pytest.approx(0.025 / 1000)


def test_one_million_objects_in_batches_of_100():
    e = estimate(objects=1_000_000, total_bytes=10**12, batches=10_000, region="us-east-1", seconds_per_batch=20)
    assert (e.batches, e.lambda_invocations) == (10_000, 10_000)
    assert (e.s3_get_requests, e.s3_list_requests) == (1_000_001, 1_000)
    # 3 parent transitions + per child: 1 started in the parent + 2 in the child
    assert e.state_transitions_standard == 30_003
    assert e.cost_standard == pytest.approx(30_003 * 0.000025)
    # EXPRESS: parent transitions (3 + 10,000), 10,000 requests, 10,000 x 20 s x 64 MB
    assert e.cost_express == pytest.approx(10_003 * 0.000025 + 10_000 * 1e-6 + 12_500 * 0.00001667)
    assert e.cost_lambda_requests == pytest.approx(0.002)
    assert e.cost_lambda_duration == pytest.approx(200_000 * 0.0000166667)
    assert e.cost_s3_requests == pytest.approx(1_000_001 * 0.0000004 + 1_000 * 0.000005)
    text = format_estimate(e, 20)
    assert "10,000 batches" in text and "price table as of 2025" in text and "$0.75" in text.replace("$0.7501", "$0.75")


def test_flat_manifests_are_batched_by_item_count_and_unknown_regions_say_whose_prices():
    e = estimate_manifest(
        {"object_count": 250, "total_bytes": 9, "batch_count": 0, "layout": "flat"},
        region="ap-southeast-7",
        max_items_per_batch=100,
    )
    assert e.batches == 3 and e.cost_lambda_duration is None
    assert "ap-southeast-7 (no prices in the table: us-east-1's)" in format_estimate(e)


def test_prices_come_from_the_table_given(tmp_path):
    prices = load_prices()
    prices["regions"]["us-east-1"]["s3_get_per_request"] = 1.0
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(prices))
    assert estimate(objects=4, batches=1, prices=load_prices(path)).cost_s3_requests == pytest.approx(5 + 0.000005)
