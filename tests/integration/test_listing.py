"""xacct_map.core.listing: both engines list every key exactly once, byte-exact, and fail loudly."""

from __future__ import annotations

import gc
import os
import time
from collections import Counter

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from s3_server import (
    DEFAULT_OWNER,
    TEST_CREDENTIALS,
    GeneratedKeys,
    ListedKeys,
    SyntheticS3,
    client_for,
    moto_server,  # noqa: F401 - fixture
    synthetic_s3,  # noqa: F401 - fixture
    throttle_pages,
    tls_certificate,  # noqa: F401 - fixture
)
from xacct_map._engine.page import _parse_with_etree, parse_list_page
from xacct_map.core.listing import ListingEngineError, ListingError, ListingOrderError, S3Object, iter_objects

AWKWARD_KEYS = [
    "data/trailing/",
    "data//double//slash",
    "data/./x",
    "data/../x",
    "data/tab\there",
    "data/ctl\x01\x1f\x7f",
    "data/new\nline",
    "data/space in name",
    "data/plus+sign",
    "data/percent%2Fslash",
    "data/percent%",
    "data/quote\"'<&>",
    "data/~$#!*()",
    "data/unicodé/日本語/🙂",
    "data/" + "x" * 900,
    "/leading-slash",
    "data",
    "data/",
]


# moto's HTTP server (werkzeug) answers 404 to a PUT whose path holds a raw newline
MOTO_AWKWARD_KEYS = [k for k in AWKWARD_KEYS if "\n" not in k]


def _keys(objects) -> list[str]:
    return [o.key for o in objects]


def _assert_exactly_once(listed: list[str], expected) -> None:
    counts = Counter(listed)
    repeated = [k for k, n in counts.items() if n > 1]
    assert not repeated, f"listed more than once: {repeated[:5]}"
    assert set(listed) == set(expected)


# -- the synthetic server itself (other tests and the benchmark rely on it) ----------------------
def test_synthetic_server_answers_list_objects_v2(synthetic_s3):
    keys = ["a", "a/", "a/b", "a/c/d", "a/c/e", "b b", "b+", "c\x01", "é"]
    synthetic_s3.buckets["src"] = ListedKeys(keys)
    s3 = client_for(synthetic_s3.endpoint_url)

    listed = [
        o["Key"]
        for p in s3.get_paginator("list_objects_v2").paginate(Bucket="src", PaginationConfig={"PageSize": 2})
        for o in p.get("Contents", [])
    ]
    assert listed == sorted(keys)

    page = s3.list_objects_v2(Bucket="src", Prefix="a/", Delimiter="/")
    assert [o["Key"] for o in page["Contents"]] == ["a/", "a/b"]
    assert [p["Prefix"] for p in page["CommonPrefixes"]] == ["a/c/"]

    page = s3.list_objects_v2(Bucket="src", StartAfter="a/c/d", MaxKeys=2)
    assert [o["Key"] for o in page["Contents"]] == ["a/c/e", "b b"] and page["IsTruncated"]
    page = s3.list_objects_v2(
        Bucket="src", StartAfter="a/c/d", MaxKeys=2, ContinuationToken=page["NextContinuationToken"]
    )
    assert [o["Key"] for o in page["Contents"]] == ["b+", "c\x01"]

    with pytest.raises(ClientError) as err:
        s3.list_objects_v2(Bucket="missing")
    assert err.value.response["Error"]["Code"] == "NoSuchBucket"


def test_generated_keys_are_sorted_and_unique():
    keys = GeneratedKeys(50_000, per_day=7_000)
    sample = [keys.key(i) for i in range(0, 50_000, 13)]
    assert sample == sorted(set(sample))
    assert keys.upper_bound(keys.key(123)) == 124 and keys.lower_bound(keys.key(123)) == 123


@pytest.mark.parametrize("flat", [False, True])
def test_prerendered_keys_serve_the_same_pages(flat):
    """The benchmark server's pre-rendered pages are byte-identical to the ones it computes."""
    import random

    from benchmarks.synthetic_s3 import list_objects_v2

    computed = GeneratedKeys(30_011, per_day=7_000, flat=flat)
    rendered = GeneratedKeys(30_011, per_day=7_000, flat=flat).prerender()
    pick = random.Random(7)
    for _ in range(200):
        i = pick.randrange(len(computed))
        query = {
            "list-type": "2",
            "prefix": pick.choice(["", "warehouse/", "warehouse/events/date=2020-01-0", "zzz"]),
            "start-after": computed.key(i) if pick.random() < 0.9 else "",
            "max-keys": str(pick.choice([1, 999, 1000, 5000])),
            "encoding-type": pick.choice(["url", ""]),
        }
        assert list_objects_v2(rendered, "b", query) == list_objects_v2(computed, "b", query), query


# -- the parallel engine against the synthetic server --------------------------------------------
def test_parallel_listing_of_many_keys_is_exact_and_sharded(synthetic_s3):
    source = GeneratedKeys(40_000, per_day=3_000)
    synthetic_s3.buckets["src"] = source
    stats: dict = {}
    objects = list(
        iter_objects(
            client_for(synthetic_s3.endpoint_url),
            "src",
            parallelism=8,
            processes=2,
            page_size=500,
            stats=stats,
            credentials=TEST_CREDENTIALS,
        )
    )
    assert stats["engine"] == "parallel"
    assert stats["chains"] > 1 and synthetic_s3.stats.max_concurrent > 1  # really listed side by side
    _assert_exactly_once(_keys(objects), source.keys())
    first = next(o for o in objects if o.key == source.key(0))
    assert first == S3Object(
        source.key(0), source.size(0), '"' + "0" * 32 + '"', "2026-01-01T00:00:00.000Z", "STANDARD"
    )


def test_parallel_listing_honours_prefix(synthetic_s3):
    source = GeneratedKeys(20_000, per_day=4_000)
    synthetic_s3.buckets["src"] = source
    prefix = "warehouse/events/date=2020-01-02/"
    listed = _keys(
        iter_objects(
            client_for(synthetic_s3.endpoint_url),
            "src",
            prefix,
            parallelism=4,
            processes=1,
            page_size=100,
            credentials=TEST_CREDENTIALS,
        )
    )
    _assert_exactly_once(listed, [k for k in source.keys() if k.startswith(prefix)])
    assert len(listed) == 4_000


def test_parallel_listing_reads_chunked_answers_over_https(tls_certificate):
    """What S3 sends (chunked bodies) through TLS verified against the client's CA bundle: the
    workers take endpoint and timeouts from the boto3 client, the bundle from ``verify``."""
    source = GeneratedKeys(12_000, per_day=2_500)
    with SyntheticS3({"src": source}, chunked=True, tls=tls_certificate) as server:
        assert server.endpoint_url.startswith("https://")
        stats: dict = {}
        listed = _keys(
            iter_objects(
                client_for(server.endpoint_url, verify=tls_certificate[0]),
                "src",
                parallelism=6,
                processes=2,
                page_size=300,
                stats=stats,
                credentials=TEST_CREDENTIALS,
                verify=tls_certificate[0],
            )
        )
        assert stats["engine"] == "parallel" and stats["requests"] > 40
        _assert_exactly_once(listed, source.keys())

        # without the bundle, the system's CAs do not know the certificate: botocore's probe fails
        with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED|SSL"):
            list(
                iter_objects(
                    client_for(server.endpoint_url), "src", parallelism=6, processes=2, credentials=TEST_CREDENTIALS
                )
            )


def test_awkward_keys_come_back_byte_exact(synthetic_s3):
    synthetic_s3.buckets["src"] = ListedKeys(AWKWARD_KEYS)
    stats: dict = {}
    listed = _keys(
        iter_objects(
            client_for(synthetic_s3.endpoint_url),
            "src",
            parallelism=4,
            processes=1,
            page_size=2,
            stats=stats,
            credentials=TEST_CREDENTIALS,
        )
    )
    assert stats["engine"] == "parallel"
    _assert_exactly_once(listed, AWKWARD_KEYS)


def test_throttled_pages_are_retried_not_skipped(synthetic_s3):
    source = GeneratedKeys(6_000, per_day=1_000)
    synthetic_s3.buckets["src"] = source
    throttle = throttle_pages(3, attempts=2)
    # only the engine's own pages (the delimiter probe goes through botocore and its retries)
    synthetic_s3.throttle = lambda params, n: "delimiter" not in params and throttle(params, n)
    stats: dict = {}
    listed = _keys(
        iter_objects(
            client_for(synthetic_s3.endpoint_url),
            "src",
            parallelism=6,
            processes=2,
            page_size=200,
            stats=stats,
            credentials=TEST_CREDENTIALS,
        )
    )
    _assert_exactly_once(listed, source.keys())
    assert synthetic_s3.stats.throttled >= 5
    assert stats["retries"] == synthetic_s3.stats.throttled


@pytest.mark.parametrize("engine", ["parallel", "paginator"])
def test_stats_count_every_request_and_retry_of_either_engine(synthetic_s3, engine):
    """The totals the manifest's metadata records: requests and retries (botocore's own retries of
    the first page and the paginator's pages too), keys, seconds and keys per second."""
    source = GeneratedKeys(3_000, per_day=1_000)
    synthetic_s3.buckets["src"] = source
    throttle = throttle_pages(2)  # every other distinct page answers 503 SlowDown once
    # not the folder probe: it runs in the background and may still be retrying when the listing ends
    synthetic_s3.throttle = lambda params, n: "delimiter" not in params and throttle(params, n)
    stats: dict = {}
    listed = _keys(
        iter_objects(
            client_for(synthetic_s3.endpoint_url),
            "src",
            listing_engine=engine,
            parallelism=4,
            processes=1,
            page_size=500 if engine == "parallel" else 1000,
            stats=stats,
            credentials=TEST_CREDENTIALS,
        )
    )
    _assert_exactly_once(listed, source.keys())
    assert synthetic_s3.stats.throttled >= 1 and stats["retries"] == synthetic_s3.stats.throttled
    # the folder probe (counted too) runs in the background: it may not have been sent when the listing ended
    probes = 1 if engine == "parallel" else 0
    assert synthetic_s3.stats.list_requests - probes <= stats["requests"] <= synthetic_s3.stats.list_requests
    assert stats["engine"] == engine.replace("paginator", "plain") and stats["keys"] == 3_000
    assert stats["listing_seconds"] > 0 and stats["keys_per_second"] > 0 and stats["started_at"].endswith("Z")
    if engine == "parallel":
        assert stats["workers"] == 1 and stats["worker_cpu_seconds"] > 0


def test_throttling_that_never_ends_fails_naming_the_bucket(synthetic_s3):
    synthetic_s3.buckets["src"] = GeneratedKeys(3_000)
    s3 = client_for(synthetic_s3.endpoint_url)
    # the first page and the folder probe (botocore) get through, every engine page is throttled for good
    synthetic_s3.throttle = lambda params, n: "start-after" in params
    with pytest.raises(ListingError) as err:
        list(iter_objects(s3, "src", parallelism=2, processes=1, max_attempts=3, credentials=TEST_CREDENTIALS))
    assert err.value.response["Error"]["Code"] == "SlowDown"
    assert err.value.operation_name == "ListObjectsV2"
    assert "src" in str(err.value)
    # max_attempts tries of the page that failed; the other range's page (cut from the first page
    # at once) was on its way too, never tried more often
    assert 3 <= synthetic_s3.stats.throttled <= 6


def test_access_denied_mid_listing_is_a_client_error(synthetic_s3):
    synthetic_s3.buckets["src"] = GeneratedKeys(5_000)
    pages = iter(range(10**6))
    synthetic_s3.fault = lambda params, n: (
        (403, "AccessDenied") if "delimiter" not in params and next(pages) == 3 else None
    )
    with pytest.raises(ClientError) as err:
        list(
            iter_objects(
                client_for(synthetic_s3.endpoint_url),
                "src",
                parallelism=4,
                processes=1,
                page_size=500,
                credentials=TEST_CREDENTIALS,
            )
        )
    assert isinstance(err.value, ListingError)
    assert err.value.response["Error"]["Code"] == "AccessDenied"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_expected_bucket_owner_is_sent_on_every_request(synthetic_s3):
    synthetic_s3.buckets["src"] = GeneratedKeys(3_000)
    listed = list(
        iter_objects(
            client_for(synthetic_s3.endpoint_url),
            "src",
            expected_bucket_owner=DEFAULT_OWNER,
            parallelism=4,
            processes=1,
            page_size=250,
            credentials=TEST_CREDENTIALS,
        )
    )
    assert len(listed) == 3_000
    assert synthetic_s3.stats.with_owner_header == synthetic_s3.stats.list_requests > 1


def test_expected_bucket_owner_mismatch_is_access_denied(synthetic_s3):
    synthetic_s3.buckets["src"] = GeneratedKeys(10)
    with pytest.raises(ListingError) as err:
        list(
            iter_objects(
                client_for(synthetic_s3.endpoint_url),
                "src",
                expected_bucket_owner="999999999999",
                credentials=TEST_CREDENTIALS,
            )
        )
    assert err.value.response["Error"]["Code"] == "AccessDenied"
    assert "src" in str(err.value)
    assert synthetic_s3.stats.owner_mismatches >= 1


def test_missing_bucket_raises_the_modelled_client_error(synthetic_s3):
    s3 = client_for(synthetic_s3.endpoint_url)
    with pytest.raises(s3.exceptions.NoSuchBucket) as err:
        list(iter_objects(s3, "no-such-bucket", credentials=TEST_CREDENTIALS))
    assert isinstance(err.value, ListingError) and isinstance(err.value, ClientError)
    assert err.value.response["Error"]["Code"] == "NoSuchBucket"
    assert "no-such-bucket" in str(err.value)


def test_empty_prefix_yields_nothing_and_starts_no_workers(synthetic_s3):
    synthetic_s3.buckets["src"] = ListedKeys(["a", "b"])
    stats: dict = {}
    assert (
        list(
            iter_objects(
                client_for(synthetic_s3.endpoint_url), "src", "zzz/", stats=stats, credentials=TEST_CREDENTIALS
            )
        )
        == []
    )
    assert synthetic_s3.stats.list_requests == 1  # the probe said it all


def _worker_pids() -> set[int]:
    pids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    cmd = fh.read()
            except OSError:
                continue
            if ppid == os.getpid() and b"xacct_map._engine.worker" in cmd:
                pids.add(int(entry))
    return pids


def _workers_gone(seconds: float = 5.0) -> bool:
    """Whether this process's listing workers have all exited within ``seconds``: once a listing ends
    they are told to stop and exit by themselves (a thread reaps them), the caller does not wait."""
    deadline = time.monotonic() + seconds
    while _worker_pids() and time.monotonic() < deadline:
        time.sleep(0.02)
    return _worker_pids() == set()


def test_abandoning_the_iterator_stops_the_workers(synthetic_s3):
    synthetic_s3.buckets["src"] = GeneratedKeys(20_000)
    it = iter_objects(
        client_for(synthetic_s3.endpoint_url),
        "src",
        parallelism=4,
        processes=2,
        page_size=100,
        credentials=TEST_CREDENTIALS,
    )
    assert [next(it).key for _ in range(101)]  # past the first page (botocore's): the engine runs
    assert len(_worker_pids()) == 2
    del it  # CPython frees it at once; the engine's finally stops its workers
    gc.collect()
    assert _workers_gone()


def test_out_of_order_page_is_refused(synthetic_s3):
    class Shuffled(ListedKeys):
        def key(self, i):  # swaps two neighbours: S3 would never, the guard must notice
            j = {5: 6, 6: 5}.get(i, i)
            return super().key(j)

        def lower_bound(self, s, lo=0):
            return ListedKeys.lower_bound(self, s, lo)

    synthetic_s3.buckets["src"] = Shuffled([f"k{i:03d}" for i in range(50)])
    with pytest.raises(ListingOrderError, match="src"):
        list(
            iter_objects(
                client_for(synthetic_s3.endpoint_url),
                "src",
                parallelism=2,
                processes=1,
                page_size=20,
                credentials=TEST_CREDENTIALS,
            )
        )


# -- moto: the real S3 API emulation -----------------------------------------------------------
def test_awkward_keys_against_moto_server_use_the_parallel_engine(moto_server):
    s3 = client_for(moto_server)
    s3.create_bucket(Bucket="awkward")
    for key in MOTO_AWKWARD_KEYS:
        s3.put_object(Bucket="awkward", Key=key, Body=key.encode())
    stats: dict = {}
    objects = list(
        iter_objects(s3, "awkward", parallelism=4, processes=1, page_size=3, stats=stats, credentials=TEST_CREDENTIALS)
    )
    assert stats["engine"] == "parallel"
    _assert_exactly_once(_keys(objects), MOTO_AWKWARD_KEYS)
    sizes = {o.key: o.size for o in objects}
    assert all(sizes[k] == len(k.encode()) for k in MOTO_AWKWARD_KEYS)
    assert all(o.etag.startswith('"') and o.last_modified.endswith("Z") for o in objects)


def test_missing_bucket_against_moto_server(moto_server):
    with pytest.raises(ListingError) as err:
        list(iter_objects(client_for(moto_server), "not-there", credentials=TEST_CREDENTIALS))
    assert err.value.response["Error"]["Code"] == "NoSuchBucket"


@mock_aws
@pytest.mark.parametrize("engine, with_credentials", [("auto", True), ("auto", False), ("paginator", True)])
def test_in_process_mock_uses_the_plain_engine_in_s3_order(engine, with_credentials):
    """moto's mock_aws answers at before-send, never over HTTP: "auto" sees that (credentials or
    not) and lists with the paginator, which never reaches for the real endpoint."""
    session = boto3.session.Session(region_name="us-east-1")
    s3 = session.client("s3")
    s3.create_bucket(Bucket="awkward")
    for key in AWKWARD_KEYS:
        s3.put_object(Bucket="awkward", Key=key, Body=b"x")
    stats: dict = {}
    credentials = session if with_credentials else None
    listed = _keys(iter_objects(s3, "awkward", listing_engine=engine, credentials=credentials, stats=stats))
    assert stats["engine"] == "plain"
    assert listed == sorted(AWKWARD_KEYS)


@mock_aws
def test_parallel_engine_under_an_in_process_mock_is_refused_naming_the_bucket():
    session = boto3.session.Session(region_name="us-east-1")
    s3 = session.client("s3")
    s3.create_bucket(Bucket="mocked")
    s3.put_object(Bucket="mocked", Key="a", Body=b"x")
    with pytest.raises(ListingEngineError, match=r"s3://mocked/.*answered in process"):
        list(iter_objects(s3, "mocked", listing_engine="parallel", credentials=session))


def test_parallelism_one_is_the_plain_engine(synthetic_s3):
    synthetic_s3.buckets["src"] = ListedKeys(AWKWARD_KEYS)
    stats: dict = {}
    objects = list(
        iter_objects(
            client_for(synthetic_s3.endpoint_url), "src", parallelism=1, stats=stats, credentials=TEST_CREDENTIALS
        )
    )
    assert stats["engine"] == "plain"
    assert _keys(objects) == sorted(AWKWARD_KEYS)
    assert objects[0].last_modified == "2026-01-01T00:00:00.000Z"  # same text as the parallel engine


# -- the page parser ---------------------------------------------------------------------------
REAL_S3_PAGE = b"""<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix></Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated><Contents><Key>a+b%2Bc%0A</Key><LastModified>2025-05-01T10:00:00.000Z</LastModified><ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag><ChecksumAlgorithm>CRC64NVME</ChecksumAlgorithm><ChecksumType>FULL_OBJECT</ChecksumType><Size>12</Size><Owner><ID>abc</ID></Owner><StorageClass>GLACIER</StorageClass><RestoreStatus><IsRestoreInProgress>false</IsRestoreInProgress></RestoreStatus></Contents><Contents><Key>%E6%97%A5</Key><LastModified>2025-05-01T10:00:01.000Z</LastModified><ETag>&quot;x-2&quot;</ETag><Size>0</Size><StorageClass>STANDARD</StorageClass></Contents><NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken></ListBucketResult>"""


def test_parser_reads_s3s_full_layout():
    page = parse_list_page(REAL_S3_PAGE)
    assert page.keys == ["a b+c\n", "日"]
    assert page.sizes == [12, 0] and page.storage_classes == ["GLACIER", "STANDARD"]
    assert page.etags == ['"9b2cf535f27731c974343645a3985328"', '"x-2"']
    assert page.truncated and page.next_token == "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM="
    assert page == _parse_with_etree(REAL_S3_PAGE)


def test_parser_falls_back_to_a_full_xml_parser_for_other_layouts():
    pretty = REAL_S3_PAGE.replace(b"<Contents>", b"<Contents>\n  ").replace(b"</Key>", b"</Key>\n")
    assert parse_list_page(pretty) == parse_list_page(REAL_S3_PAGE)
    no_url = REAL_S3_PAGE.replace(b"<EncodingType>url</EncodingType>", b"").replace(b"%E6%97%A5", b"a&amp;b")
    assert parse_list_page(no_url).keys == ["a+b%2Bc%0A", "a&b"]


@mock_aws
def test_missing_bucket_on_the_plain_engine_names_the_bucket():
    s3 = boto3.client("s3", region_name="us-east-1")
    with pytest.raises(s3.exceptions.NoSuchBucket) as err:
        list(iter_objects(s3, "gone-bucket", "some/prefix/"))
    assert isinstance(err.value, ListingError)
    assert "s3://gone-bucket/some/prefix/" in str(err.value)


def test_listing_error_pickles_as_a_client_error():
    import pickle

    err = ListingError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "ListObjectsV2", bucket="b", prefix="p/")
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, ClientError) and back.response == err.response and str(back) == str(err)


def test_bad_options_are_refused_at_once():
    with pytest.raises(ValueError, match="parallelism"):
        iter_objects(None, "b", parallelism=0)
    with pytest.raises(ValueError, match="page_size"):
        iter_objects(None, "b", page_size=1001)


def test_refreshed_credentials_reach_the_workers(synthetic_s3, monkeypatch):
    """Assumed-role credentials expire during long listings: botocore refreshes the caller's
    credentials object, and the engine passes what it reads there on to the workers."""
    from datetime import datetime, timedelta, timezone

    from botocore.credentials import RefreshableCredentials

    import xacct_map._engine.coordinator as coordinator

    monkeypatch.setattr(coordinator, "CREDENTIAL_CHECK_SECONDS", 0.0)
    generation = iter(range(1, 10**6))

    def refresh():
        n = next(generation)
        expiry = datetime.now(timezone.utc) + timedelta(minutes=1)  # always due: refreshed on read
        return {"access_key": f"AKIDGEN{n}", "secret_key": "s", "token": f"t{n}", "expiry_time": expiry.isoformat()}

    synthetic_s3.buckets["src"] = GeneratedKeys(8_000)
    s3 = client_for(synthetic_s3.endpoint_url)
    credentials = RefreshableCredentials.create_from_metadata(refresh(), refresh_using=refresh, method="assume-role")
    synthetic_s3.record_params = True
    listed = _keys(iter_objects(s3, "src", parallelism=2, processes=1, page_size=250, credentials=credentials))
    assert len(listed) == len(set(listed)) == 8_000
    # the engine's own pages (not botocore's first page and folder probe) were signed with several generations
    engine_keys = [p["_access_key"] for p in synthetic_s3.stats.list_params if "start-after" in p]
    assert len(engine_keys) >= 32 and len(set(engine_keys)) >= 3
    assert all(k.startswith("AKIDGEN") for k in engine_keys)


def test_a_small_listing_takes_one_round_after_its_first_page(synthetic_s3):
    """After botocore's first page the rest of the key space is cut a page apart at the first page's
    density: 20 pages come in one round of parallel requests, each range in one request (a range whose
    page ends at its upper key needs no second, empty one)."""
    keys = GeneratedKeys(2_000, flat=True)
    synthetic_s3.buckets["src"] = keys
    stats: dict = {}
    objects = iter_objects(
        client_for(synthetic_s3.endpoint_url),
        "src",
        parallelism=32,
        processes=1,
        page_size=100,
        stats=stats,
        credentials=TEST_CREDENTIALS,
    )
    _assert_exactly_once(_keys(objects), list(keys.keys()))
    assert stats["engine"] == "parallel" and stats["rounds"] == 2


def test_a_listing_without_details_leaves_etags_and_dates_out(synthetic_s3):
    """``details=False``: the engine's pages carry keys, sizes and storage classes only (the first page,
    botocore's, stays whole); the same keys, sizes and classes as a listing with details."""
    synthetic_s3.buckets["src"] = GeneratedKeys(3_000, flat=True)
    client = client_for(synthetic_s3.endpoint_url)
    common = {"parallelism": 8, "processes": 1, "page_size": 500, "credentials": TEST_CREDENTIALS}
    lean = list(iter_objects(client, "src", details=False, **common))
    full = {o.key: o for o in iter_objects(client, "src", **common)}
    _assert_exactly_once(_keys(lean), full)
    assert all((o.size, o.storage_class) == (full[o.key].size, full[o.key].storage_class) for o in lean)
    assert all(o.etag and o.last_modified for o in full.values())
    assert lean[:500] == [full[o.key] for o in lean[:500]]  # botocore's first page, whole
    assert {(o.etag, o.last_modified) for o in lean[500:]} == {("", "")}


def test_folders_found_while_listing_split_the_running_ranges(synthetic_s3):
    """Discovery under a lone top "folder" runs while the listing has begun; the partitions it
    finds cut ranges that already have pages on the way, and nothing is listed twice."""
    keys = [f"top/mid/g{g:02d}/k{k:04d}" for g in range(40) for k in range(10)]
    synthetic_s3.buckets["src"] = ListedKeys(keys)
    synthetic_s3.latency = 0.02  # discovery's two round trips overlap the first pages
    stats: dict = {}
    # every 25-key page spans group boundaries, so the page on its way when the cuts land is
    # trimmed to its (new, shorter) range
    listed = _keys(
        iter_objects(
            client_for(synthetic_s3.endpoint_url),
            "src",
            parallelism=2,
            processes=1,
            page_size=25,
            stats=stats,
            credentials=TEST_CREDENTIALS,
        )
    )
    _assert_exactly_once(listed, keys)
    assert stats.get("late_cuts", 0) >= 30
    assert stats.get("trimmed_pages", 0) >= 1


def test_transient_server_errors_are_retried(synthetic_s3):
    source = GeneratedKeys(4_000, per_day=1_000)
    synthetic_s3.buckets["src"] = source
    failed: set = set()

    def first_attempt_fails(params, n):
        # every engine page's first attempt: 500, then 502, ... - retried until it comes through
        sig = (params.get("start-after"), params.get("continuation-token"))
        if "start-after" not in params or sig in failed:
            return None
        failed.add(sig)
        return (500, "InternalError") if len(failed) % 2 else (502, "BadGateway")

    synthetic_s3.fault = first_attempt_fails
    stats: dict = {}
    listed = _keys(
        iter_objects(
            client_for(synthetic_s3.endpoint_url),
            "src",
            parallelism=4,
            processes=1,
            page_size=500,
            stats=stats,
            credentials=TEST_CREDENTIALS,
        )
    )
    _assert_exactly_once(listed, source.keys())
    assert stats["retries"] == len(failed) >= 8


def test_a_dead_worker_fails_the_listing(synthetic_s3):
    import signal

    from xacct_map._engine.coordinator import WorkerError

    synthetic_s3.buckets["src"] = GeneratedKeys(50_000)
    synthetic_s3.latency = 0.01
    it = iter_objects(
        client_for(synthetic_s3.endpoint_url),
        "src",
        parallelism=4,
        processes=2,
        page_size=100,
        credentials=TEST_CREDENTIALS,
    )
    assert [next(it).key for _ in range(101)]  # past the first page (botocore's): the engine runs
    (victim, *_) = sorted(_worker_pids())
    os.kill(victim, signal.SIGKILL)  # one of the workers this test started
    with pytest.raises(WorkerError, match="exited"):
        for _ in it:
            pass
    del it
    gc.collect()
    assert _workers_gone()


def test_objects_made_in_bulk_are_ordinary_frozen_s3objects():
    import dataclasses

    from xacct_map.core.listing import _make_objects

    made = _make_objects(["a", "b/"], [1, 2], ['"e"', '"f"'], ["t1", "t2"], ["STANDARD", "GLACIER"])
    assert made == [S3Object("a", 1, '"e"', "t1", "STANDARD"), S3Object("b/", 2, '"f"', "t2", "GLACIER")]
    assert type(made[0]) is S3Object and hash(made[0]) == hash(S3Object("a", 1, '"e"', "t1", "STANDARD"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        made[0].key = "changed"


# -- listing_engine: an explicit choice, public botocore seams only ---------------------------------
def test_paginator_engine_never_starts_workers(synthetic_s3, monkeypatch):
    import xacct_map._engine

    def no_workers(*_a, **_k):
        raise AssertionError("listing_engine='paginator' started worker processes")

    monkeypatch.setattr(xacct_map._engine, "WorkerPool", no_workers)
    monkeypatch.setattr(xacct_map._engine, "list_ranges", no_workers)
    synthetic_s3.buckets["src"] = ListedKeys(AWKWARD_KEYS)
    stats: dict = {}
    it = iter_objects(
        client_for(synthetic_s3.endpoint_url),
        "src",
        listing_engine="paginator",
        credentials=TEST_CREDENTIALS,
        page_size=2,
        stats=stats,
    )
    assert next(it).key == sorted(AWKWARD_KEYS)[0] and _worker_pids() == set()
    assert [o.key for o in it] == sorted(AWKWARD_KEYS)[1:]
    assert stats["engine"] == "plain"
    assert synthetic_s3.stats.list_requests == 1  # no probe: one paginator page held every key


def _stubbed_client():
    from botocore.stub import Stubber

    s3 = client_for("http://127.0.0.1:9")  # never contacted: the Stubber answers before HTTP
    stubber = Stubber(s3)
    stubber.add_response("list_objects_v2", {"Contents": [{"Key": "a", "Size": 1}], "IsTruncated": False})
    stubber.add_response("list_objects_v2", {"Contents": [{"Key": "a", "Size": 1}], "IsTruncated": False})
    stubber.activate()
    return s3


@pytest.mark.parametrize(
    "case",
    ["no credentials", "proxy", "stubbed", "sigv2"],
)
def test_parallel_engine_that_cannot_run_fails_naming_the_bucket(synthetic_s3, case):
    """listing_engine="parallel" never falls back: it says which bucket and why; "auto" falls back
    to the paginator for the same clients and lists everything."""
    from xacct_map.core.listing import ListingEngineError

    synthetic_s3.buckets["src"] = ListedKeys(["a"])
    url = synthetic_s3.endpoint_url
    clients = {
        "no credentials": lambda: (client_for(url), None),
        "proxy": lambda: (client_for(url, proxies={"http": "http://127.0.0.1:9"}), TEST_CREDENTIALS),
        "stubbed": lambda: (_stubbed_client(), TEST_CREDENTIALS),
        "sigv2": lambda: (client_for(url, signature_version="s3"), TEST_CREDENTIALS),
    }
    s3, credentials = clients[case]()
    with pytest.raises(ListingEngineError, match=r"s3://src/data/: ") as err:
        list(iter_objects(s3, "src", "data/", listing_engine="parallel", credentials=credentials))
    assert "listing_engine='auto'" in str(err.value) and _worker_pids() == set()
    if case == "proxy":
        return  # the proxy is not there: only the refusal before any request is of interest
    s3, credentials = clients[case]()
    stats: dict = {}
    assert _keys(iter_objects(s3, "src", listing_engine="auto", credentials=credentials, stats=stats)) == ["a"]
    assert stats["engine"] == "plain"


def test_auto_and_parallel_use_the_parallel_engine_against_a_real_endpoint(synthetic_s3):
    synthetic_s3.buckets["src"] = GeneratedKeys(3_000)
    for engine in ("auto", "parallel"):
        stats: dict = {}
        listed = _keys(
            iter_objects(
                client_for(synthetic_s3.endpoint_url),
                "src",
                listing_engine=engine,
                credentials=boto3.session.Session(aws_access_key_id="AKIDTEST", aws_secret_access_key="test-secret"),
                page_size=500,
                processes=1,
                stats=stats,
            )
        )
        assert stats["engine"] == "parallel" and len(set(listed)) == len(listed) == 3_000


def test_unknown_listing_engine_is_refused_at_once():
    with pytest.raises(ValueError, match="listing_engine must be one of auto, parallel, paginator"):
        iter_objects(None, "b", listing_engine="fast")


class _PublicOnly:
    """A view of a botocore object without its private attributes: what the listing may use."""

    def __init__(self, target, path="client"):
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_path", path)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(f"the listing used the private attribute {self._path}.{name}")
        value = getattr(self._target, name)
        if name in ("meta", "config", "events"):
            return _PublicOnly(value, f"{self._path}.{name}")
        return value

    def __setattr__(self, name, value):
        raise AttributeError(f"the listing set {self._path}.{name} on a botocore object")


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_the_listing_uses_no_private_botocore_attribute(synthetic_s3, tls_certificate, scheme):
    """Listed through a client whose private attributes (``_request_signer``, ``_endpoint``, ...)
    cannot be read nor anything on it be set, the parallel engine still works."""
    source = GeneratedKeys(5_000, per_day=1_000)
    if scheme == "http":
        synthetic_s3.buckets["src"] = source
        url, verify = synthetic_s3.endpoint_url, None
        listed, stats = _list_public_only(url, verify)
    else:
        with SyntheticS3({"src": source}, tls=tls_certificate) as server:
            listed, stats = _list_public_only(server.endpoint_url, tls_certificate[0])
    assert stats["engine"] == "parallel"
    _assert_exactly_once(listed, source.keys())


def _list_public_only(url, verify):
    stats: dict = {}
    client = _PublicOnly(client_for(url, verify=verify))
    listed = _keys(
        iter_objects(
            client, "src", credentials=TEST_CREDENTIALS, verify=verify, page_size=500, processes=1, stats=stats
        )
    )
    return listed, stats


def test_no_function_of_the_engine_is_longer_than_80_lines():
    import ast
    import pathlib

    import xacct_map

    root = pathlib.Path(xacct_map.__file__).parent
    files = [root / "core" / "listing.py", *sorted((root / "_engine").glob("*.py"))]
    long = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                long.append(f"{path.name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert long == []


def _list_in_small_pages(synthetic_s3, keys: GeneratedKeys, *, parallelism: int) -> dict:
    """List ``keys`` (as bucket ``src``) with 100-key pages and one worker, every request's parameters
    recorded; checks each key came exactly once and returns the listing's stats."""
    synthetic_s3.buckets["src"] = keys
    synthetic_s3.record_params = True
    stats: dict = {}
    objects = iter_objects(
        client_for(synthetic_s3.endpoint_url),
        "src",
        parallelism=parallelism,
        processes=1,
        page_size=100,
        stats=stats,
        credentials=TEST_CREDENTIALS,
    )
    _assert_exactly_once(_keys(objects), list(keys.keys()))
    return stats


def test_a_range_asks_for_its_own_prefix_so_a_folders_end_costs_no_page(synthetic_s3):
    """Ranges cut past the end of a date "folder" lie inside that folder's key prefix: each asks for
    the prefix its ends share, so S3 answers them with no keys instead of a page of the next folder's
    keys that all lie past the range (and were thrown away)."""
    keys = GeneratedKeys(4_000, per_day=1_000)
    _list_in_small_pages(synthetic_s3, keys, parallelism=32)
    narrowed = [p["prefix"] for p in synthetic_s3.stats.list_params if p.get("prefix", "").startswith("warehouse/")]
    assert any(prefix.startswith("warehouse/events/date=2020-01-01/part-") for prefix in narrowed)
    assert synthetic_s3.stats.listed_keys <= 1.1 * len(keys)  # every key about once on the wire


def test_a_truncated_page_without_keys_is_followed_by_its_token(synthetic_s3):
    """S3 may answer a page with no keys that is still truncated (past many delete markers): the worker
    goes on with that page's continuation token, with the same prefix, and no key is lost or doubled."""
    synthetic_s3.hollow = lambda q, _n: "start-after" in q and "continuation-token" not in q
    stats = _list_in_small_pages(synthetic_s3, GeneratedKeys(3_000, per_day=1_000), parallelism=16)
    asked = synthetic_s3.stats.list_params
    hollow = [p for p in asked if "start-after" in p and "continuation-token" not in p]
    followed = [p for p in asked if "continuation-token" in p]
    assert stats["engine"] == "parallel" and len(hollow) >= 10
    assert len(followed) == len(hollow)  # each hollow page's token asked for once, with the same prefix
    assert stats["requests"] >= len(hollow) + len(followed)  # the worker's own follow-ups counted too
    assert {p["prefix"] for p in followed} <= {p["prefix"] for p in hollow}
