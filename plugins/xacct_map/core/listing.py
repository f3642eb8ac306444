"""List the objects under an S3 prefix, byte-exact, each key exactly once.

The pure core: it takes a boto3 S3 client and plain values, knows nothing of Airflow.

Two engines behind one function, :func:`iter_objects`, chosen by ``listing_engine``:

* **parallel** (``"auto"``'s choice against a real HTTP endpoint): disjoint key ranges listed at the
  same time by worker processes that sign requests (SigV4, :mod:`xacct_map._engine.sigv4`), keep
  many in flight on keep-alive connections from one event loop (:mod:`xacct_map._engine.http1`) and
  parse pages with a fast exact parser (:mod:`xacct_map._engine.page`): the engine,
  :mod:`xacct_map._engine`. Only public botocore seams are used: the endpoint, addressing style and
  Region come from the request botocore itself sends for the first page, seen through the client's
  ``before-send`` event; timeouts and proxies from ``client.meta.config``; the credentials (re-read
  during long listings, so refreshed assumed-role credentials are used) and TLS verification from
  the caller. A prefix that fits in that first page is done then: no worker process starts. Past
  it, the workers start while a ``Delimiter="/"`` listing finds the "folders" that become the
  first range boundaries.
* **plain** (``"paginator"``): botocore's own paginator, one page after another. ``"auto"`` uses it
  when ``parallelism=1``, or when the parallel engine cannot run: no credentials given for a
  signed client, a proxy, a non-HTTP endpoint, a first page answered in process rather than over HTTP
  (botocore's Stubber, moto's ``mock_aws``), a signature other than SigV4. ``"parallel"`` raises
  :class:`ListingEngineError` then.

Sources: a bucket name, an access point alias (used like a name) or an access point ARN (botocore
sends to the access point's endpoint, ``NAME-ACCOUNT.s3-accesspoint.REGION.amazonaws.com``; the
parallel engine lists through the same host). A directory bucket (S3 Express One Zone) lists in no
order and refuses ``StartAfter``: it is always listed with the paginator (botocore does its
CreateSession authentication), every key checked against those already listed.

Order: the plain engine yields keys in S3's order (UTF-8 binary). The parallel engine yields
each range in ascending order with ranges interleaved, so its output is **not globally sorted**
(a manifest does not need it to be). Either way every key is yielded exactly once, or the
listing fails with an exception - never silently short.
"""

from __future__ import annotations

import logging
import operator
import os
import re
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import chain, islice, repeat
from typing import Any
from urllib.parse import urlsplit

import urllib3
from botocore.exceptions import ClientError

from xacct_map.core.s3uri import access_point, check_source_bucket, is_access_point_alias, is_directory_bucket
from xacct_map.core.timestamps import s3_timestamp

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class S3Object:
    """One listed object. ``last_modified`` is the ISO-8601 text S3 sent (not parsed)."""

    key: str
    size: int
    etag: str = ""
    last_modified: str = ""
    storage_class: str = "STANDARD"


_FIELDS = ("key", "size", "etag", "last_modified", "storage_class")
# The slot descriptors of S3Object: setting them directly from C loops (map) makes the same frozen
# instances as S3Object(...) at a third of the cost - the dataclass __init__ calls
# object.__setattr__ per field from Python, and this is most of the per-key cost left in the
# caller's process. Valid while S3Object is a slots dataclass without __post_init__.
_SLOT_SETTERS = (
    tuple(S3Object.__dict__[name].__set__ for name in _FIELDS)
    if getattr(S3Object, "__slots__", None) == _FIELDS and not hasattr(S3Object, "__post_init__")
    else None
)


def _make_objects(keys: list, sizes: list, etags: list, modified: list, classes: list) -> list[S3Object]:
    """``list(map(S3Object, keys, sizes, etags, modified, classes))``, faster; empty ``etags`` and
    ``modified`` (a listing without details) make objects with ``""`` there."""
    if keys and not etags:
        etags = modified = [""] * len(keys)
    if _SLOT_SETTERS is None:  # S3Object changed shape: the plain way
        return list(map(S3Object, keys, sizes, etags, modified, classes))
    objects = list(map(object.__new__, repeat(S3Object, len(keys))))
    for setter, values in zip(_SLOT_SETTERS, (keys, sizes, etags, modified, classes), strict=False):
        deque(map(setter, objects, values), maxlen=0)
    return objects


class ListingOrderError(RuntimeError):
    """S3 returned keys out of order or twice: the listing cannot be trusted to be exactly-once."""


class ListingError(ClientError):
    """S3 refused the listing (NoSuchBucket, AccessDenied, SlowDown after every retry, ...).

    A :class:`botocore.exceptions.ClientError` with the same ``response`` and ``operation_name``
    (``ListObjectsV2``) as S3's answer, so callers keep handling ``ClientError``; the message also
    names the bucket and prefix. When the error came from botocore, the raised object is also an
    instance of botocore's modelled class (e.g. ``client.exceptions.NoSuchBucket``).
    """

    def __init__(self, error_response: dict, operation_name: str, *, bucket: str = "", prefix: str = ""):
        super().__init__(error_response, operation_name)
        self.bucket = bucket
        self.prefix = prefix
        self.args = (f"listing s3://{bucket}/{prefix} failed: {self.args[0] if self.args else ''}",)  # type: ignore[has-type]

    def __reduce__(self):
        return _rebuild_listing_error, (self.response, self.operation_name, self.bucket, self.prefix)


class ListingUnavailableError(ConnectionError):
    """The endpoint could not be reached (or answered garbage) on every retry of a page."""


def _rebuild_listing_error(response, operation_name, bucket, prefix):
    return ListingError(response, operation_name, bucket=bucket, prefix=prefix)


_error_classes: dict[type, type[ListingError]] = {}


def _listing_error(err: ClientError, bucket: str, prefix: str) -> ListingError:
    """``err`` as a :class:`ListingError` that is still an instance of ``err``'s own class."""
    cls = type(err)
    target: type[ListingError] | None
    if cls is ClientError or issubclass(cls, ListingError):
        target = ListingError
    else:
        target = _error_classes.get(cls)
        if target is None:
            target = _error_classes[cls] = type(cls.__name__, (ListingError, cls), {"__module__": __name__})
    return target(err.response, err.operation_name, bucket=bucket, prefix=prefix)


LISTING_ENGINES = ("auto", "parallel", "paginator")


class ListingEngineError(ValueError):
    """``listing_engine="parallel"`` was asked for, but the parallel engine cannot list this bucket
    with this client (no credentials given, a proxy, a non-HTTP endpoint, a request that never
    reached HTTP, a signature other than SigV4). The message names the bucket and the reason."""


def iter_objects(
    s3_client,
    bucket: str,
    prefix: str = "",
    *,
    expected_bucket_owner: str | None = None,
    request_payer: str | None = None,
    listing_engine: str = "auto",
    credentials=None,
    verify: bool | str | None = None,
    parallelism: int = 32,
    processes: int | None = None,
    max_attempts: int = 10,
    page_size: int = 1000,
    stats: dict | None = None,
    start_after: str = "",
    up_to: str | None = None,
    details: bool = True,
) -> Iterator[S3Object]:
    """Yield every object under ``prefix`` in ``bucket`` exactly once, with its key byte-exact.

    Lazy: nothing is sent until the first object is asked for; dropping the iterator stops the workers.

    Keys come back exactly as stored: requests ask for ``EncodingType=url`` and keys are decoded
    from it, so keys with characters XML 1.0 cannot carry survive, as do keys ending in ``/``,
    ``//``, ``./``, ``../``, spaces, ``+`` and ``%2F``. Order: see the module docstring (sorted
    only with ``parallelism=1`` or on the plain engine).

    :param s3_client: a boto3 S3 client with credentials that may list ``bucket``; its endpoint,
        Region, addressing style and timeout settings are used by the parallel engine too.
    :param expected_bucket_owner: account id the bucket must belong to (``ExpectedBucketOwner`` on every
        request: 403 if another owns it; through an access point, the bucket's). ``request_payer``: on every request.
    :param listing_engine: ``"auto"`` (default): the parallel engine when it can run (see the
        module docstring), else botocore's paginator; ``"parallel"``: the parallel engine or
        :class:`ListingEngineError`; ``"paginator"``: no worker processes.
    :param credentials: what ``s3_client`` signs with, for the parallel engine's own signing (a botocore
        credentials object or the session the client was made from), re-read during long listings so
        assumed roles refresh; without them a signed client is listed with the paginator (``"auto"``).
    :param verify: the parallel engine's TLS verification, as given to the client; None: botocore's default.
    :param parallelism: ListObjectsV2 requests in flight at once (one per key range). ``1``
        selects the paginator under ``"auto"``.
    :param processes: worker processes fetching and parsing pages (default: CPU count, at most 3).
    :param max_attempts: tries per page on throttling (503 SlowDown), 5xx and connection errors, with
        exponential backoff and full jitter; the same page is retried, never skipped.
    :param page_size: keys per page of the parallel engine (1000, S3's maximum, but in tests of range splitting).
    :param stats: filled with the listing's counters (``engine``, ``requests``, ``retries``, ``keys``, seconds).
    :param start_after: with ``up_to`` (None: the end), list only ``(start_after, up_to]`` (:func:`plan_cuts`).
    :param details: False: ``etag``/``last_modified`` unused: the parallel engine leaves them ``""``.
    :raises ListingError: S3 refused the listing (a ``ClientError`` naming the bucket).
    :raises ListingOrderError: S3 returned keys out of order, twice, or outside the range asked.
    :raises ListingUnavailableError: a page could not be fetched within ``max_attempts``.
    :raises ListingEngineError: ``listing_engine="parallel"`` and the parallel engine cannot run.
    """
    if parallelism < 1:
        raise ValueError(f"parallelism must be at least 1, not {parallelism}")
    if not 1 <= page_size <= 1000:
        raise ValueError(f"page_size must be between 1 and 1000 (S3's maximum), not {page_size}")
    if listing_engine not in LISTING_ENGINES:
        raise ValueError(f"listing_engine must be one of {', '.join(LISTING_ENGINES)}, not {listing_engine!r}")
    job = _Job(
        s3_client,
        bucket,
        prefix,
        owner=call_params(bucket, prefix, expected_bucket_owner, request_payer),
        engine=listing_engine,
        credentials=_credential_source(credentials),
        verify=verify,
        parallelism=parallelism,
        processes=processes,
        max_attempts=max_attempts,
        page_size=page_size,
        stats=stats,
        start_after=start_after,
        up_to=up_to,
        details=details,
    )
    # Nothing happens until the first object is asked for (errors surface where the caller
    # consumes); objects are made and handed over page by page in C loops (chain) rather than
    # one generator step per object.
    return chain.from_iterable(_recorded_pages(job))


def call_params(bucket: str, prefix: str, expected_bucket_owner: str | None, request_payer: str | None) -> dict:
    """What every ListObjectsV2 of the listing (and ListObjectVersions, :mod:`xacct_map.core.versions`)
    sends besides the bucket and prefix (checked)."""
    if request_payer not in (None, "requester"):
        raise ValueError(f"request_payer must be 'requester' or None, not {request_payer!r}")
    check_source_bucket(bucket, what="bucket")  # Multi-Region, Object Lambda access points: refused by name
    if is_directory_bucket(bucket) and prefix and not prefix.endswith("/"):
        raise ValueError(
            f"s3://{bucket}/{prefix}: {bucket!r} is a directory bucket, whose listings take only prefixes "
            f"that end in '/': use {prefix.rpartition('/')[0] + '/' if '/' in prefix else ''!r} as the prefix "
            "and a filter (patterns) for the rest."
        )
    params = {"ExpectedBucketOwner": expected_bucket_owner} if expected_bucket_owner else {}
    return params | {"RequestPayer": request_payer} if request_payer else params


@dataclass(frozen=True)
class _Job:
    """One listing's arguments, as :func:`iter_objects` checked them."""

    s3_client: Any
    bucket: str
    prefix: str
    owner: dict  # sent on every call: ExpectedBucketOwner and RequestPayer when given
    engine: str
    credentials: Any  # has get_frozen_credentials(), or None
    verify: bool | str | None
    parallelism: int
    processes: int | None
    max_attempts: int
    page_size: int
    stats: dict | None
    start_after: str = ""
    up_to: str | None = None
    details: bool = True

    def __post_init__(self) -> None:
        if (self.start_after or self.up_to is not None) and is_directory_bucket(self.bucket):
            raise ValueError(
                f"{self.bucket!r} is a directory bucket: its listings are in no order and refuse StartAfter, so it "
                "cannot be listed by key range: list it in one task (listing_tasks=1)"
            )

    def cannot_run_parallel(self) -> str | None:
        """Why the parallel engine cannot run, as far as is known before the first request (or None)."""
        config = self.s3_client.meta.config
        if self.engine == "paginator":
            return "listing_engine='paginator'"
        if self.engine == "auto" and self.parallelism == 1:
            return "parallelism=1"
        if is_directory_bucket(self.bucket):
            return (
                f"{self.bucket!r} is a directory bucket: its listings are in no order and refuse StartAfter, "
                "which the key ranges need"
            )
        if config.proxies:
            return "the client sends through a proxy, which the parallel engine does not"
        if urlsplit(self.s3_client.meta.endpoint_url or "").scheme not in ("http", "https"):
            return f"the client's endpoint {self.s3_client.meta.endpoint_url!r} is not HTTP(S)"
        if _unsigned(self.s3_client):
            return None
        if config.signature_version not in (None, "s3v4", "v4"):
            return f"the client signs with {config.signature_version!r}; the parallel engine signs SigV4 only"
        if self.credentials is None:
            return "no credentials were given (pass credentials=, e.g. the client's session.get_credentials())"
        return None

    def refuse(self, reason: str) -> ListingEngineError:
        return ListingEngineError(
            f"listing_engine='parallel' cannot list s3://{self.bucket}/{self.prefix}: {reason}. "
            "Use listing_engine='auto' (falls back to botocore's paginator) or 'paginator'."
        )


def _recorded_pages(job: _Job) -> Iterator[Iterable[S3Object]]:
    """:func:`_object_pages`, with the listing's totals in ``job.stats``: keys, seconds from the first
    request to the last page, keys per second, and requests and retries of both engines."""
    stats = job.stats
    if stats is None:
        yield from _object_pages(job)
        return
    stats.update(engine="plain", keys=0, requests=0, retries=0)
    stats["started_at"] = s3_timestamp(datetime.now(timezone.utc))  # the first request's time, for pipeline timings
    started = time.monotonic()
    for page in _object_pages(job):
        stats["keys"] += len(page)
        yield page
    seconds = time.monotonic() - started
    engine = stats.pop("engine_counters", {})
    # requests: every one sent, retries included (the engine counts its retries apart)
    stats["requests"] += engine.get("requests", 0) + engine.get("retries", 0)
    stats["retries"] += engine.get("retries", 0)
    stats.update({k: v for k, v in engine.items() if k not in ("requests", "retries")})
    stats.update(listing_seconds=round(seconds, 3), keys_per_second=round(stats["keys"] / max(seconds, 1e-6)))


def _object_pages(job: _Job) -> Iterator[list[S3Object]]:
    """The first page from botocore; the rest, if any, from the parallel engine (else the paginator).

    A prefix that fits in one page costs one request and starts no worker process. When the
    parallel engine may run, its worker processes start as the first request goes out (they
    import during its round trip) and are killed unused if the first page is the only one.
    """
    reason = job.cannot_run_parallel()
    if reason is not None:
        if job.engine == "parallel":
            raise job.refuse(reason)
        log.debug("listing s3://%s/%s with botocore's paginator: %s", job.bucket, job.prefix, reason)
        if is_directory_bucket(job.bucket):
            yield from _unordered_pages(job)
        else:
            yield from _plain_pages(job, start_after=job.start_after)
        return
    pool = _start_pool(job)
    try:
        after = {"StartAfter": job.start_after} if job.start_after else {}
        first, request, objects = _watched_list(job, MaxKeys=job.page_size, **after)
        endpoint, reason = _endpoint(job, *request) if request else (None, _IN_PROCESS)
        if endpoint is None and job.engine == "parallel":
            raise job.refuse(reason)
        if objects is None:
            objects = list(_checked_objects(first.get("Contents", ()), job.bucket, job.prefix, job.start_after))
        within = _up_to(objects, job.up_to)
        more = bool(first.get("IsTruncated")) and len(within) == len(objects)  # past up_to: the next range's
        if endpoint is None or not more:
            pool.discard()
        if job.stats is not None:
            job.stats.update(first_page_keys=len(within), workers=0)
            if endpoint is not None:
                job.stats["engine"] = "parallel"
        yield within
        if not more:
            return
        if endpoint is None:
            log.debug("listing s3://%s/%s with botocore's paginator: %s", job.bucket, job.prefix, reason)
            yield from _plain_pages(job, start_after=objects[-1].key)
            return
        owned, pool = pool, None
        yield from _parallel_pages(job, endpoint, owned, first_keys=[o.key for o in objects])
    finally:
        if pool is not None:
            pool.discard()


def _start_pool(job: _Job):
    """The worker processes, started now so they import while the first request is on its way."""
    from xacct_map._engine import WorkerPool

    # Past ~3 parsers this process (making the objects) is the limit, so more would only idle.
    return WorkerPool(max(1, min(job.processes or min(os.cpu_count() or 1, 3), job.parallelism)))


def _parallel_pages(job: _Job, endpoint, pool, *, first_keys: list[str]) -> Iterator[list[S3Object]]:
    """Everything after the first page (``first_keys``) with the worker processes in ``pool``; the
    "folders" found meanwhile (a ``Delimiter="/"`` listing, in the background) become range
    boundaries."""
    from xacct_map._engine import list_ranges

    bucket, prefix = job.bucket, job.prefix
    engine: dict = {}
    if job.stats is not None:
        job.stats["workers"] = len(pool.procs)
        job.stats["engine_counters"] = engine
    if "ExpectedBucketOwner" in job.owner:
        endpoint.headers["x-amz-expected-bucket-owner"] = job.owner["ExpectedBucketOwner"]
    if "RequestPayer" in job.owner:  # signed with the rest: S3 checks it is part of the signature
        endpoint.headers["x-amz-request-payer"] = job.owner["RequestPayer"]
    listed = threading.Event()  # the discovery stops looking once the listing is over
    finder = threading.Thread(
        target=_find_folders, args=(job, pool.add_cuts, listed, first_keys), name="xacct-map-discovery"
    )
    finder.daemon = True
    finder.start()
    pages = list_ranges(
        endpoint,
        prefix=prefix,
        credentials=_no_credentials if job.credentials is None or _unsigned(job.s3_client) else job.credentials.read,
        make_error=lambda status, code, message: _fast_error(status, code, message, bucket, prefix),
        make_order_error=lambda message: ListingOrderError(
            f"ListObjectsV2 on s3://{bucket}/{prefix}: {message}: refusing to build a manifest that could miss or "
            "repeat objects. Nothing was written: retry the task; if it repeats, the endpoint (or a proxy before "
            "it) does not list as S3 does."
        ),
        parallelism=job.parallelism,
        processes=len(pool.procs),
        max_attempts=job.max_attempts,
        page_size=job.page_size,
        start_after=first_keys[-1],
        up_to=job.up_to,
        first_keys=first_keys,
        pool=pool,
        stats=engine,
        details=job.details,
    )
    try:
        for keys, sizes, etags, modified, classes in pages:
            yield _make_objects(keys, sizes, etags, modified, classes)
    finally:
        listed.set()
        pages.close()  # stops the workers as soon as the caller lets go of the iterator
        pool.close()  # in case the engine never got to run


# -- the plain engine ------------------------------------------------------------------------


PLAIN_PAGE_ATTEMPTS = 3  # tries of a page whose answer is not a ListObjectsV2 result (botocore retried the rest)


def _up_to(objects: list[S3Object], up_to: str | None) -> list[S3Object]:
    """The ascending ``objects`` whose key is at most ``up_to`` (all of them when None)."""
    if up_to is None or not objects or objects[-1].key <= up_to:
        return objects
    return [obj for obj in objects if obj.key <= up_to]


def _plain_pages(job: _Job, *, start_after: str = "") -> Iterator[list[S3Object]]:
    bucket, prefix = job.bucket, job.prefix
    previous = start_after
    params: dict = {"StartAfter": start_after} if start_after else {}
    while True:
        page = _plain_page(job.s3_client, bucket, prefix, job.owner, params, job.stats)
        objects = list(_checked_objects(page.get("Contents", ()), bucket, prefix, previous))
        within = _up_to(objects, job.up_to)
        if within:
            previous = within[-1].key
            yield within
        if len(within) < len(objects):
            return  # the rest belongs to the next range
        following = _next_page(page, bucket, prefix)
        if following is None:
            return
        params = following


def _plain_page(s3_client, bucket: str, prefix: str, owner: dict, params: dict, stats: dict | None = None) -> dict:
    """One ListObjectsV2 page (botocore asks for EncodingType=url and decodes the keys itself).

    An answer that is not a ListObjectsV2 result (no ``IsTruncated``: an HTML error page, which
    botocore's parser reads as an empty page) or that botocore cannot parse is asked for again, at
    most :data:`PLAIN_PAGE_ATTEMPTS` times: taken as the last page, it would end the listing short.
    """
    from botocore.exceptions import BotoCoreError
    from botocore.parsers import ResponseParserError

    for attempt in range(1, PLAIN_PAGE_ATTEMPTS + 1):
        if stats is not None:  # botocore's own retries are counted from the answer
            stats["requests"] += 1
            stats["retries"] += attempt > 1
        try:
            page = s3_client.list_objects_v2(Bucket=bucket, Prefix=prefix, **owner, **params)
        except ClientError as err:
            raise _listing_error(err, bucket, prefix) from err
        except ResponseParserError as err:
            problem: BotoCoreError | str = err
        except BotoCoreError as err:  # connection errors and timeouts, after botocore's own retries
            raise ListingUnavailableError(
                f"listing s3://{bucket}/{prefix} failed: ListObjectsV2 could not get a page ({err})"
            ) from err
        else:
            if stats is not None:
                retried = page.get("ResponseMetadata", {}).get("RetryAttempts", 0)
                stats["requests"] += retried
                stats["retries"] += retried
            if isinstance(page.get("IsTruncated"), bool) and _names_bucket(page, bucket):
                return page
            problem = f"not a ListObjectsV2 result: {sorted(k for k in page if k != 'ResponseMetadata')}"
        log.warning("listing s3://%s/%s: page try %d of %d: %s", bucket, prefix, attempt, PLAIN_PAGE_ATTEMPTS, problem)
    raise ListingUnavailableError(
        f"listing s3://{bucket}/{prefix} failed: ListObjectsV2 answered no valid page in {PLAIN_PAGE_ATTEMPTS} "
        f"tries ({problem})"
    )


def _names_bucket(page: dict, bucket: str) -> bool:
    """The page is of ``bucket`` (through an access point, S3 may name the bucket behind it)."""
    return page.get("Name", bucket) == bucket or access_point(bucket) is not None or is_access_point_alias(bucket)


def _unordered_pages(job: _Job) -> Iterator[list[S3Object]]:
    """A directory bucket's listing: pages in no particular order, so every key is checked against
    the keys already listed instead of against the one before (memory: the listed keys)."""
    bucket, prefix = job.bucket, job.prefix
    seen: set[str] = set()
    params: dict = {}
    while True:
        page = _plain_page(job.s3_client, bucket, prefix, job.owner, params, job.stats)
        objects = [_object(item) for item in page.get("Contents", ())]
        for obj in objects:
            if obj.key in seen:
                raise ListingOrderError(
                    f"ListObjectsV2 on directory bucket s3://{bucket}/{prefix} listed {obj.key!r} twice; refusing "
                    "to build a manifest that could repeat objects. Nothing was written: retry the task."
                )
            seen.add(obj.key)
        yield objects
        following = _next_page(page, bucket, prefix)
        if following is None:
            return
        params = following


def _next_page(page: dict, bucket: str, prefix: str) -> dict | None:
    """The parameters of the page after ``page`` (None: it was the last)."""
    if not page["IsTruncated"]:
        return None
    if not page.get("NextContinuationToken"):
        raise ListingUnavailableError(
            f"listing s3://{bucket}/{prefix} failed: ListObjectsV2 answered a truncated page without "
            "NextContinuationToken; the rest cannot be listed. Retry the task."
        )
    return {"ContinuationToken": page["NextContinuationToken"]}


def _object(item: dict) -> S3Object:
    return S3Object(
        key=item["Key"],
        size=item["Size"],
        etag=item.get("ETag", ""),
        last_modified=s3_timestamp(item.get("LastModified", "")),
        storage_class=item.get("StorageClass", "STANDARD"),
    )


def _checked_objects(contents: Iterable[dict], bucket: str, prefix: str, previous: str = "") -> Iterator[S3Object]:
    """S3Objects of botocore's ``Contents`` items, refusing keys that do not strictly ascend."""
    for item in contents:
        key = item["Key"]
        # Python compares str by code point, which is the UTF-8 byte order S3 lists in.
        if previous and key <= previous:
            raise ListingOrderError(
                f"ListObjectsV2 on s3://{bucket}/{prefix} listed {key!r} after {previous!r}: keys must be "
                "strictly ascending (a page repeated or went back); refusing to build a manifest that could "
                "miss or repeat objects. Nothing was written: retry the task; if it repeats, the endpoint "
                "(or a proxy before it) does not list as S3 does."
            )
        previous = key
        yield _object(item)


# -- a listing planned over several tasks ----------------------------------------------------


def plan_cuts(
    s3_client,
    bucket: str,
    prefix: str,
    parts: int,
    *,
    expected_bucket_owner: str | None = None,
    request_payer: str | None = None,
) -> list[str]:
    """Up to ``parts - 1`` ascending keys that cut the listing of ``prefix`` into ranges of similar size.

    The ranges ``("", c1], (c1, c2], ..., (cN, end of the prefix]`` hold every key exactly once
    whatever the cuts are (:func:`iter_objects` with ``start_after``/``up_to`` lists one); the cuts
    only decide how evenly the keys spread. A prefix that fits in the first page (1,000 keys) is cut
    between its keys, by count; a larger one with at least ``parts`` "folders" (a ``Delimiter="/"``
    listing, through lone folders as the listing does) between folders, by their count; else at
    points :mod:`xacct_map._engine` picks from the first page's keys and the end of the key space,
    found with ``MaxKeys=1`` probes (at most ~50 requests). A directory bucket (no order, no
    ``StartAfter``) is not cut.

    :raises ListingError: S3 refused the listing (a ``ClientError`` naming the bucket).
    """
    from xacct_map._engine import plan_cuts as engine_cuts

    if parts < 1:
        raise ValueError(f"parts must be at least 1, not {parts}")
    owner = call_params(bucket, prefix, expected_bucket_owner, request_payer)
    if is_directory_bucket(bucket):
        return []
    first = _plain_page(s3_client, bucket, prefix, owner, {"MaxKeys": 1000})
    keys = [obj.key for obj in _checked_objects(first.get("Contents", ()), bucket, prefix)]
    if parts < 2 or len(keys) < 2:
        return []
    if not first["IsTruncated"]:  # every key is known: cut by count
        step = len(keys) / parts
        return sorted({keys[round(step * i) - 1] for i in range(1, parts) if round(step * i) >= 1})
    folders = _all_folders(s3_client, bucket, prefix, owner)
    if len(folders) >= parts:  # a folder's keys all sort after its name: cut at folder names
        step = len(folders) / parts
        return sorted({folders[round(step * i)] for i in range(1, parts)})

    def exists_after(key: str) -> bool:
        page = _plain_page(s3_client, bucket, prefix, owner, {"MaxKeys": 1, "StartAfter": key})
        return bool(page.get("Contents"))

    return engine_cuts(keys, parts, exists_after)


def _all_folders(s3_client, bucket: str, prefix: str, owner: dict) -> list[str]:
    """Every "folder" of the first level under ``prefix`` that has several (through lone ones, at
    most :data:`DISCOVERY_DEPTH` levels down); [] when there are more than one page holds."""
    level = prefix
    for _ in range(DISCOVERY_DEPTH):
        page = _plain_page(s3_client, bucket, level, owner, {"Delimiter": "/", "MaxKeys": 1000})
        groups = [p["Prefix"] for p in page.get("CommonPrefixes", ())]
        if not _lone_folder(page, groups):
            return [] if page["IsTruncated"] else groups
        level = groups[0]
    return []


# -- choosing and configuring the parallel engine -----------------------------------------------

DISCOVERY_ENTRIES = 200  # common prefixes asked for per level when looking for "folders"
DISCOVERY_DEPTH = 3
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/s3/aws4_request")


_IN_PROCESS = (
    "the listing was answered in process (a mock such as moto's mock_aws or botocore's Stubber), not over HTTP"
)


def _watched_list(job: _Job, **params) -> tuple[dict, tuple[str, dict] | None, list[S3Object] | None]:
    """A botocore ListObjectsV2 of the prefix, watching the request botocore sends.

    Returns the response, ``(url, headers)`` of the request that was answered over HTTP (or None
    when it was answered in process: botocore's Stubber, moto's ``mock_aws``), and the page's
    objects when the engine's parser took them (see :func:`_take_contents`; else None: they are
    in the response, from botocore). The request
    is seen through the client's public ``before-send`` event: its URL (endpoint, addressing
    style, after any redirect) and headers (the SigV4 scope names the Region). S3's errors
    (NoSuchBucket, AccessDenied, a wrong ExpectedBucketOwner) surface here, from botocore.
    """
    client, bucket, prefix = job.s3_client, job.bucket, job.prefix
    seen: list[tuple[str, dict]] = []

    # where botocore sends this bucket's requests: virtual-host or path style, or an access point's host
    point = access_point(bucket)
    host_label = point.host_prefix + "." if point else bucket + "."
    path_head = None if point else "/" + bucket

    def watch(request, **_) -> None:
        url = urlsplit(request.url)
        ours = url.netloc.startswith(host_label) or (path_head is not None and url.path.startswith(path_head))
        if "list-type=2" in url.query and ours:
            seen.append(
                (request.url, {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()})
            )
        return None  # botocore sends it

    answers: list[object] = []

    def answered(http_response=None, **_) -> None:
        # A mock answering at before-send too (moto's mock_aws) sees the request; only a response
        # read from a socket has urllib3's response underneath.
        answers.append(getattr(http_response, "raw", None))

    taken: list = []

    def take(response_dict=None, **_) -> None:
        taken[:] = [_take_contents(response_dict)]  # per attempt: the last one is answered

    unique_id = f"xacct-map-probe-{id(seen)}"
    hooks = (
        ("before-send.s3.ListObjectsV2", watch),
        ("before-parse.s3.ListObjectsV2", take),
        ("after-call.s3.ListObjectsV2", answered),
    )
    for event, handler in hooks:  # unique ids are unique across events
        client.meta.events.register(event, handler, unique_id=f"{unique_id}-{event}")
    try:
        response = _plain_page(client, bucket, prefix, job.owner, params, job.stats)
    finally:
        for event, _ in hooks:
            client.meta.events.unregister(event, unique_id=f"{unique_id}-{event}")
    over_http = seen and isinstance(answers[-1] if answers else None, urllib3.response.HTTPResponse)
    page = taken[-1] if taken else None
    objects = None if page is None else _page_objects(page, job.bucket, job.prefix, job.start_after)
    return response, (seen[-1] if over_http else None), objects  # the last attempt worked (after any redirect)


_CONTENTS_START, _CONTENTS_END = b"<Contents>", b"</Contents>"


def _take_contents(response_dict: dict | None):
    """Parse a 200 answer's ``<Contents>`` with the engine's exact parser and cut them out of the
    body botocore goes on to parse (its XML parse and dateutil cost ~80 ms per 1,000 keys, the
    engine's ~2 ms). Only a body of the usual shape: its ``<Contents>`` elements side by side, all
    taken; anything else is left whole to botocore. The page (``ListPage``) or None."""
    body = (response_dict or {}).get("body")
    if response_dict is None or response_dict.get("status_code") != 200 or not isinstance(body, bytes):
        return None
    start, end = body.find(_CONTENTS_START), body.rfind(_CONTENTS_END)
    if start < 0 or end < start:
        return None
    from xacct_map._engine import PageFormatError, parse_list_page

    try:
        page = parse_list_page(body)
    except (PageFormatError, UnicodeDecodeError):
        return None
    rest = body[:start] + body[end + len(_CONTENTS_END) :]
    region = body[start : end + len(_CONTENTS_END)]
    if (
        _CONTENTS_START[:-1] in rest
        or region.count(_CONTENTS_START) != len(page.keys)
        or region.count(_CONTENTS_END + _CONTENTS_START) != len(page.keys) - 1
    ):
        return None
    response_dict["body"] = rest
    return page


def _page_objects(page, bucket: str, prefix: str, previous: str = "") -> list[S3Object]:
    """The objects of a page the engine's parser took, refusing keys that do not strictly ascend
    (from ``previous``, the ``StartAfter`` asked for)."""
    keys = page.keys
    if not all(map(operator.lt, keys, islice(keys, 1, None))) or (keys and previous and keys[0] <= previous):
        list(_checked_objects(({"Key": k, "Size": 0} for k in keys), bucket, prefix, previous))  # raises, naming them
    return _make_objects(keys, page.sizes, page.etags, page.last_modified, page.storage_classes)


def _find_folders(job: _Job, found, listed: threading.Event, first_keys: list[str]) -> None:
    """Call ``found(cuts)`` with the "folders" beside the one the first page lies in (a ``Delimiter="/"``
    listing there; looking inside a lone folder, down to :data:`DISCOVERY_DEPTH`), so a partitioned
    layout is listed one partition per range. Runs in the background while the listing has begun (no
    round trip waited for before the first range starts); only an optimisation: errors end it, the
    listing reports real ones."""
    _discover(job, discovery_level(job.prefix, first_keys[0], first_keys[-1]), found, listed)


def discovery_level(prefix: str, first: str, last: str) -> str:
    """Where to look for the partitions of a listing of ``prefix`` whose first page ran from ``first`` to
    ``last``: the folder holding that page's sub-folders, else the one above the folder holding the page
    (its siblings: the next dates of a date-partitioned layout), never above ``prefix``. One round trip
    instead of descending through each lone folder from the top."""
    common = os.path.commonprefix([first, last])
    folder = common[: common.rfind("/") + 1]
    if len(folder) <= len(prefix) or "/" in first[len(folder) :]:
        return folder if len(folder) > len(prefix) else prefix
    parent = folder[: folder.rfind("/", 0, len(folder) - 1) + 1]
    return parent if len(parent) >= len(prefix) else prefix


def _folder_page(job: _Job, level: str) -> dict:
    """One ``Delimiter="/"`` page of ``level`` (botocore), counted in the stats with its retries."""
    if job.stats is not None:
        job.stats["requests"] += 1
    response = job.s3_client.list_objects_v2(
        Bucket=job.bucket, Prefix=level, Delimiter="/", MaxKeys=DISCOVERY_ENTRIES, **job.owner
    )
    retried = response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
    if job.stats is not None and retried:
        job.stats["requests"] += retried
        job.stats["retries"] += retried
    return response


def _endpoint(job: _Job, url: str, headers: dict):
    """``(Endpoint, "")`` for the engine from the first page's request, or ``(None, why not)``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return None, f"the first request went to {parts.scheme}://, not HTTP(S)"
    authorization = headers.get("Authorization", "")
    scope = _SCOPE.search(authorization)
    if not _unsigned(job.s3_client) and (scope is None or not authorization.startswith("AWS4-HMAC-SHA256 ")):
        return None, "the client's request is not signed with SigV4"
    verify = job.verify
    if parts.scheme == "https":
        verify = _default_verify() if verify is None else verify
        verify = _bundled_cas() if verify is True else verify
    elif verify is None:
        verify = True  # plain HTTP: nothing to verify
    config = job.s3_client.meta.config
    from xacct_map._engine import Endpoint

    endpoint = Endpoint(
        base_url=f"{parts.scheme}://{parts.netloc}{parts.path or '/'}",
        region=scope.group(1) if scope else (job.s3_client.meta.region_name or "us-east-1"),
        headers={"User-Agent": headers.get("User-Agent", "xacct-map")},
        verify=verify,
        connect_timeout=float(config.connect_timeout or 60),
        read_timeout=float(config.read_timeout or 60),
    )
    return endpoint, ""


def _default_verify() -> bool | str:
    """What a client made without ``verify`` verifies against: botocore's ``ca_bundle`` setting
    (``AWS_CA_BUNDLE``), else ``REQUESTS_CA_BUNDLE``, else True (its bundled CAs)."""
    try:
        from botocore.session import get_session

        bundle = get_session().get_config_variable("ca_bundle")
    except Exception:  # an unreadable config file: the client would have failed already
        bundle = None
    return bundle or os.environ.get("REQUESTS_CA_BUNDLE") or True


def _bundled_cas() -> bool | str:
    try:
        from botocore.httpsession import get_cert_path

        return get_cert_path(True)
    except Exception:  # the system's CAs then
        return True


def _lone_folder(response: dict, groups: list[str]) -> bool:
    """A delimiter listing that found one common prefix and nothing else: look inside it."""
    return len(groups) == 1 and not response.get("Contents") and not response.get("IsTruncated")


def _discover(job: _Job, level: str, found, listed: threading.Event) -> None:
    """Descend through lone "folders" from ``level``; call ``found(cuts)`` with the first set of
    several (but the first of them, whose range the listing already runs).

    Runs while the listing has already begun (a few round trips saved on a latency-bound
    start); the engine splits its ranges at what arrives. Only an optimisation: errors end it.
    """
    try:
        for _ in range(DISCOVERY_DEPTH):
            if listed.is_set():
                return
            response = _folder_page(job, level)
            groups = [p["Prefix"] for p in response.get("CommonPrefixes", ())]
            if _lone_folder(response, groups):
                level = groups[0]
                continue
            if len(groups) > 1:
                found(groups[1:])
            return
    except Exception as err:  # the listing itself reports real problems
        log.debug("discovery under %r stopped: %s", level, err)


def _unsigned(s3_client) -> bool:
    from botocore import UNSIGNED

    return s3_client.meta.config.signature_version is UNSIGNED


class _CredentialSource:
    """Reads the caller's credentials object; botocore refreshes assumed-role ones before expiry."""

    def __init__(self, credentials) -> None:
        self.credentials = credentials

    def read(self) -> tuple[str, str, str | None] | None:
        frozen = self.credentials.get_frozen_credentials()
        return (frozen.access_key, frozen.secret_key, frozen.token)


def _no_credentials() -> None:  # unsigned requests
    return None


def _credential_source(credentials) -> _CredentialSource | None:
    """``credentials``: a botocore credentials object, a boto3 or botocore session, or None."""
    if credentials is not None and not hasattr(credentials, "get_frozen_credentials"):
        if not hasattr(credentials, "get_credentials"):
            raise TypeError(
                "credentials must be a botocore credentials object (session.get_credentials()) or a "
                f"boto3/botocore session, not {type(credentials).__name__}"
            )
        credentials = credentials.get_credentials()
    return None if credentials is None else _CredentialSource(credentials)


def _fast_error(status: int, code: str, message: str, bucket: str, prefix: str) -> Exception:
    if status == 0 or code == "MalformedResponse":
        return ListingUnavailableError(
            f"listing s3://{bucket}/{prefix} failed: ListObjectsV2 could not get a page ({code}: {message})"
        )
    response = {
        "Error": {"Code": code, "Message": message, "BucketName": bucket},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ListingError(response, "ListObjectsV2", bucket=bucket, prefix=prefix)
