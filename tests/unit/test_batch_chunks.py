"""iter_sized_batches takes keys a chunk at a time in C calls: the batches must be exactly the
greedy key-by-key ones, for plain and awkward keys, at every limit."""

from __future__ import annotations

import random
import sys

import pytest

from xacct_map.core.layouts import BatchSizer
from xacct_map.core.listing import S3Object
from xacct_map.core.manifest import iter_sized_batches


def _greedy(objects, max_keys: int, max_bytes: int, budget: int, sizer: BatchSizer) -> list:
    """The definition: add keys one by one, close a batch before a key would break a limit."""
    batches, keys, size, key_bytes = [], [], 0, 0
    for obj in objects:
        one = sizer.key_bytes(obj.key)
        if keys and (
            len(keys) >= max_keys
            or size + obj.size > max_bytes
            or sizer.size(len(keys) + 1, key_bytes + one, size + obj.size) > budget
        ):
            batches.append((keys, size, sizer.size(len(keys), key_bytes, size)))
            keys, size, key_bytes = [], 0, 0
        keys.append(obj.key)
        size += obj.size
        key_bytes += one
    if keys:
        batches.append((keys, size, sizer.size(len(keys), key_bytes, size)))
    return batches


@pytest.mark.parametrize("seed", range(6))
def test_chunked_batches_are_the_greedy_ones(seed):
    rnd = random.Random(seed)
    pieces = ["a", "b/", "date=1", "é", '"', "\\", "\t", "\x7f", "~", "x" * 40]
    for _ in range(150):
        objects = [
            S3Object("".join(rnd.choice(pieces) for _ in range(rnd.randint(1, 6))), rnd.choice([0, 1, 900, 10**6]))
            for _ in range(rnd.randint(0, 350))
        ]
        max_keys = rnd.choice([1, 2, 7, 100])
        max_bytes = rnd.choice([1, 1000, 10**9])
        budget = rnd.choice([None, 400, 2000, 245_760])
        sizer = BatchSizer(rnd.choice(["", "src"]))
        got = list(
            iter_sized_batches(
                iter(objects), max_keys=max_keys, max_bytes=max_bytes, max_input_bytes=budget, sizer=sizer
            )
        )
        assert got == _greedy(objects, max_keys, max_bytes, budget or sys.maxsize, sizer)
