"""The child-input budget's arithmetic (no sockets): the size :class:`BatchSizer` predicts is the size
of the JSON Step Functions builds, for every kind of key, and batches close on it."""

from __future__ import annotations

import json
import random

import pytest

from xacct_map.core.layouts import (
    DEFAULT_MAX_BATCH_BYTES,
    MAX_CHILD_INPUT_BYTES,
    BatchSizer,
    check_batch_budget,
    source_block,
    source_block_bytes,
)
from xacct_map.core.listing import S3Object
from xacct_map.core.manifest import iter_sized_batches

AWKWARD = [
    "plain/key.txt",
    'quote"d',
    "back\\slash",
    "tab\tnew\nline",
    "del\x7f",
    "nul\x00",
    "emoji/🚀",
    "日本語",
    "\u2028",
]


def _child_input(bucket: str, keys: list[str], size: int, source: dict) -> int:
    item = {"bucket": bucket, "keys": keys, "bytes": size, "source": source}
    return len(json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode())


def test_predicted_sizes_equal_the_json_step_functions_sees():
    rng = random.Random(14)
    alphabet = "".join(AWKWARD)
    source = source_block("bucket-ü", "pre/", "111111111111", "eu-west-1")
    extra = source_block_bytes(source)
    sizer = BatchSizer("bucket-ü", extra)
    for _ in range(200):
        keys = AWKWARD + ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 60))) for _ in range(20)]
        rng.shuffle(keys)
        size = rng.randint(0, 10**12)
        predicted = sizer.size(len(keys), sum(map(sizer.key_bytes, keys)), size)
        assert predicted == _child_input("bucket-ü", keys, size, source)


@pytest.mark.parametrize("budget", [4096 + 200, 8192, DEFAULT_MAX_BATCH_BYTES, MAX_CHILD_INPUT_BYTES])
def test_batches_close_before_the_budget(budget):
    objects = [S3Object(f"k/{i:05d}" + "🚀" * (i % 250), i, "e", "2026-01-01T00:00:00Z") for i in range(3000)]
    extra = source_block_bytes(source_block("b", "k/"))
    batches = list(
        iter_sized_batches(
            objects, max_keys=1000, max_bytes=10**15, max_input_bytes=budget, sizer=BatchSizer("b", extra)
        )
    )
    source = source_block("b", "k/", "0" * 12, "x" * 32)  # the reserve for an account and Region given later
    for keys, size, predicted in batches:
        assert predicted == _child_input("b", keys, size, source) <= budget
    assert [k for keys, _, _ in batches for k in keys] == [o.key for o in objects]


def test_budget_limits_are_explained():
    assert check_batch_budget(DEFAULT_MAX_BATCH_BYTES) == 245760
    for bad in (4095, MAX_CHILD_INPUT_BYTES + 1):
        with pytest.raises(ValueError, match="262144"):
            check_batch_budget(bad)
    with pytest.raises(ValueError, match="source block"):
        check_batch_budget(4096, 100)


def test_pinned_entries_are_sized_exactly_and_batches_close_on_them():
    """Keys pinned to their ETags (``[key, etag]``): each child input, with a several-sources block and
    ``on_changed``, is the size predicted and within the budget."""
    from xacct_map.core.manifest import pinned_entry

    rng = random.Random(7)
    table = [
        {"bucket": "src", "account_id": None, "region": None},
        {"bucket": "other", "account_id": "1", "region": "r"},
    ]
    source = source_block("src", "p/", None, None, sources=table, on_changed="skip")
    source_bytes = source_block_bytes(source)
    objects = [
        S3Object(
            rng.choice(AWKWARD) + "/" + "k" * rng.randint(1, 300),
            10,
            f'"{rng.getrandbits(128):032x}-{rng.randint(1, 9999)}"',
        )
        for _ in range(3000)
    ]
    budget = 16 * 1024
    batches = list(
        iter_sized_batches(
            objects,
            max_keys=1000,
            max_bytes=10**12,
            max_input_bytes=budget,
            sizer=BatchSizer("src", source_bytes),
            entry=pinned_entry,
        )
    )
    filled = source_block(
        "src",
        "p/",
        "0" * 12,
        "x" * 32,
        sources=[{**e, "account_id": e["account_id"] or "0" * 12, "region": e["region"] or "x" * 32} for e in table],
        on_changed="skip",
    )
    for entries, size, predicted in batches:
        assert predicted == _child_input("src", entries, size, filled) <= budget
        assert _child_input("src", entries, size, source) <= predicted
    assert [e[0] for entries, _, _ in batches for e in entries] == [o.key for o in objects]
    assert len(batches) > 1
