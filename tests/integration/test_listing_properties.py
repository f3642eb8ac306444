"""Property-based: whatever the key layout, the parallel engine lists each key exactly once.

Small pages (``page_size`` 2-7) make every example split its key space into many ranges, so
keys land on and around range boundaries: prefixes of one another, neighbours differing in the
last character, characters that need ``EncodingType=url``, unicode beyond the BMP.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3_server import TEST_CREDENTIALS, ListedKeys, SyntheticS3, client_for, throttle_pages
from xacct_map._engine.keyspace import KeySpace
from xacct_map.core.listing import iter_objects

# Characters that stress ordering and encoding: separators, '.', '%', '+', space, controls,
# XML specials, Latin-1, CJK, astral-plane emoji. (No NUL and no surrogates: not valid in S3 keys.)
ALPHABET = st.sampled_from(list("ab/.%+ ~z9\t\x01\x7f<&\"'é日") + ["\U0001f642", "\uffff"])
SEGMENT = st.text(ALPHABET, min_size=0, max_size=6)


@st.composite
def key_layouts(draw) -> list[str]:
    """Clusters of keys under shared stems, plus stems that are themselves keys."""
    stems = draw(st.lists(st.text(ALPHABET, min_size=0, max_size=8), min_size=1, max_size=4))
    keys = set()
    for stem in stems:
        keys.update(stem + tail for tail in draw(st.lists(SEGMENT, min_size=1, max_size=25)))
    keys.update(draw(st.lists(st.text(ALPHABET, min_size=1, max_size=20), max_size=10)))
    keys.discard("")
    return sorted(keys)


_server = SyntheticS3().start()  # one server for all examples: each example gets its own bucket
_counter = iter(range(10**9))

PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


@PROPERTY
@given(
    keys=key_layouts(),
    page_size=st.integers(2, 7),
    parallelism=st.integers(2, 6),
    throttled=st.booleans(),
    prefix_len=st.integers(0, 2),
)
def test_every_key_exactly_once_under_any_layout(keys, page_size, parallelism, throttled, prefix_len):
    bucket = f"prop-{next(_counter)}"
    _server.buckets[bucket] = ListedKeys(keys)
    _server.throttle = throttle_pages(4) if throttled else None
    prefix = keys[0][:prefix_len] if keys else ""
    stats: dict = {}
    listed = [
        o.key
        for o in iter_objects(
            client_for(_server.endpoint_url),
            bucket,
            prefix,
            parallelism=parallelism,
            processes=1,
            page_size=page_size,
            stats=stats,
            credentials=TEST_CREDENTIALS,
        )
    ]
    expected = [k for k in keys if k.startswith(prefix)]
    assert stats["engine"] == "parallel" or not expected
    counts = Counter(listed)
    assert [k for k, n in counts.items() if n > 1] == []
    assert sorted(listed) == expected


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    keys=st.lists(st.text(ALPHABET, min_size=1, max_size=12), min_size=3, max_size=40, unique=True),
    parts=st.integers(2, 40),
    bounded=st.booleans(),
)
def test_cuts_fall_strictly_inside_the_range(keys, parts, bounded):
    """Both ways of cutting (a planned split into parts, and pages ahead of a range's next page) give
    ascending keys strictly inside the range, no more than asked for."""
    keys = sorted(keys)
    space = KeySpace()
    space.learn(keys)
    first, last = keys[0], keys[len(keys) // 2]
    hi = keys[-1] if bounded else None
    planned = space.cuts(first, last, hi, parts, min_pages=0)
    ahead = space.pages_ahead((first, last, len(keys) // 2 + 1), last, hi, parts - 1, page_size=len(keys))
    for cuts in (planned, ahead):
        assert cuts == sorted(set(cuts))
        assert all(last < c and (hi is None or c < hi) for c in cuts)
        assert len(cuts) <= parts - 1


def test_pages_ahead_of_a_counter_layout_hold_a_page_each():
    """Each part of a counter layout holds a page less one key: S3's page of a part then reaches past
    the part's end, and one request lists it."""
    keys = [f"logs/part-{i:08d}.gz" for i in range(10_000)]
    page = keys[:1000]
    space = KeySpace()
    space.learn(page)
    cuts = space.pages_ahead((page[0], page[-1], len(page)), page[-1], None, 5, page_size=1000)
    bounds = [page[-1], *cuts]
    held = [sum(lo < k <= hi for k in keys) for lo, hi in zip(bounds, bounds[1:], strict=False)]
    assert held == [999] * 5


def test_cuts_of_a_counter_layout_spread_evenly():
    keys = [f"logs/part-{i:08d}.gz" for i in range(0, 1000)]
    space = KeySpace()
    space.learn(keys)
    cuts = space.cuts(keys[0], keys[-1], "logs/part-00016000.gz", 4, min_pages=1)
    assert [c[:14] for c in cuts] == ["logs/part-0000", "logs/part-0000", "logs/part-0001"]
    assert len(cuts) == 3 and all(keys[-1] < c < "logs/part-00016000.gz" for c in cuts)


def test_cuts_work_for_very_long_keys():
    # values of 1000-character keys are far beyond a float's range: the arithmetic stays exact
    base = "p/" + "x" * 990
    keys = [f"{base}{i:06d}" for i in range(0, 2000, 2)]
    space = KeySpace()
    space.learn(keys)
    cuts = space.cuts(keys[0], keys[-1], None, 4)
    assert len(cuts) == 3 and all(keys[-1] < c for c in cuts)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(keys=st.lists(st.text(st.sampled_from(list("a=%+ /3D2B5é\n日")), max_size=12), min_size=1, max_size=20))
def test_page_key_decoding_equals_unquote_plus(keys):
    """The page parser's batched decoding of EncodingType=url keys equals botocore's unquote_plus,
    for well-formed escapes (as S3 sends) and for stray '%' alike."""
    from urllib.parse import quote_plus, unquote_plus

    from xacct_map._engine.page import _url_decode

    encoded = [quote_plus(k, safe="/") for k in keys]
    assert _url_decode(list(encoded)) == [unquote_plus(e) for e in encoded] == keys
    assert _url_decode(list(keys)) == [unquote_plus(k) for k in keys]  # raw text with stray '%'
