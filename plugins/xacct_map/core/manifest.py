"""Turn a stream of listed objects into a Distributed Map manifest in S3, never holding it whole.

The default ("batched") layout is a JSON array whose items are batches of keys, each closed by a
key count and by a byte budget::

    [{"bucket": "src", "keys": ["a", "b"], "bytes": 123}, ...]

Step Functions' ItemReader (InputType JSON) hands one batch to each child execution. Batching here
rather than with ItemBatcher bounds the *object bytes* per child, which ItemBatcher cannot do, and
runs the same state machine on AWS and in the local emulator (which lacks ItemBatcher).

The manifest is streamed through a multipart upload: the object appears only when the upload
completes, and any failure aborts it, so a failed run never leaves a half-written manifest.

Other layouts and formats (flat items for ItemBatcher as JSON, JSONL or CSV; bare keys) are in
:mod:`xacct_map.core.layouts`; :func:`write_manifest` writes any of them, applies an
:class:`~xacct_map.core.filters.ObjectFilter`, and then a metadata sidecar ``<key>.meta.json``.
:func:`write_batched_manifest` is the original entry point (batched JSON, no sidecar).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import islice
from operator import attrgetter

from botocore.exceptions import BotoCoreError, ClientError

from xacct_map import __version__
from xacct_map.core.filters import ObjectFilter
from xacct_map.core.layouts import (
    CONTENT_TYPES,
    DEFAULT_MAX_BATCH_BYTES,
    MAX_CHILD_INPUT_BYTES,
    BatchSizer,
    JsonArrayEncoder,
    check_batch_budget,
    check_layout,
    encoder_for,
    flat_item,
    json_bytes,
    source_block,
    source_block_bytes,
)
from xacct_map.core.listing import S3Object
from xacct_map.core.sources import source_table

MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum for every part but the last
MAX_PARTS = 10_000
# Parts start at part_size and grow by part_size every PARTS_PER_STEP parts, so memory stays small
# for usual manifests while 10,000 parts still hold 55,000 x part_size (268 GiB at 5 MiB).
PARTS_PER_STEP = 1_000
#: User metadata every manifest upload carries: a token of the upload, so that after a
#: CompleteMultipartUpload whose answer was lost, the object at the key can be told to be this upload's.
UPLOAD_TOKEN = "xacct-map-upload"
# A manifest (part) smaller than one upload part is written with one PutObject when complete
# rather than a multipart upload (three round trips fewer, and no look for open uploads):
# it is just as atomic. False: always a multipart upload (the fault tests exercise it on small data).
SMALL_OBJECT_PUT = True

log = logging.getLogger(__name__)

_open_writers: set[MultipartUploadWriter] = set()  # this process's uploads in progress


def abort_open_uploads() -> int:
    """Abort every multipart upload this process has open; the writers then fail on their next call.

    For a task being terminated (SIGTERM: the operator's ``on_kill``), so that it leaves no upload
    open behind it. Returns how many were aborted.
    """
    aborted = 0
    for writer in list(_open_writers):
        aborted += writer.abort_now()
    return aborted


@dataclass(frozen=True)
class ManifestSummary:
    """What was written: the operator's XCom, the CLI's ``--json`` output and the metadata sidecar.

    The first fields are the original contract (``bucket``, ``key``, counts, ``sha256``, source);
    the rest describe layout, source, filters and provenance (None when not recorded).
    ``batch_count`` counts the batches *in the manifest* (batched layout); it is 0 for the flat and
    keys layouts, whose items are single objects (ItemBatcher batches them at run time).
    ``largest_item_bytes`` (batched layout) is the largest child execution input the manifest makes:
    UTF-8 bytes of the ``ItemSelector`` output (item plus ``source`` block), as Step Functions counts.
    ``parts`` lists the manifest's parts (``{"key", "items", "bytes", "sha256", "etag"}``; one part,
    at ``key``, unless the manifest passed ``max_part_bytes``); ``sha256``/``etag`` are the first
    part's, ``manifest_bytes`` and ``item_count`` the totals.
    """

    bucket: str
    key: str
    object_count: int
    batch_count: int
    total_bytes: int
    manifest_bytes: int
    sha256: str
    source_bucket: str
    source_prefix: str
    etag: str = ""
    layout: str = "batched"
    format: str = "json"
    item_count: int | None = None
    source: dict | None = None
    batching: dict | None = None
    filters: dict | None = None
    objects_seen: int | None = None
    skipped: dict | None = None
    created_at: str | None = None
    xacct_map_version: str | None = None
    metadata_key: str | None = None
    largest_item_bytes: int | None = None
    parts: list | None = None
    part_count: int | None = None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def iter_batches(objects: Iterable[S3Object], *, max_keys: int, max_bytes: int) -> Iterator[tuple[list[str], int]]:
    """Group objects into ``(keys, bytes)`` batches of at most ``max_keys`` keys and ``max_bytes``.

    An object larger than ``max_bytes`` travels alone: it is one batch's work. (No child-input
    budget: :func:`iter_sized_batches` adds one.)
    """
    for keys, size, _ in iter_sized_batches(objects, max_keys=max_keys, max_bytes=max_bytes):
        yield keys, size


def iter_sized_batches(
    objects: Iterable[S3Object],
    *,
    max_keys: int,
    max_bytes: int,
    max_input_bytes: int | None = None,
    sizer: BatchSizer | None = None,
    entry=None,
) -> Iterator[tuple[list, int, int]]:
    """Group objects into ``(keys, object bytes, child input bytes)`` batches.

    A batch closes before it would hold more than ``max_keys`` keys, more than ``max_bytes`` bytes of
    objects (an object larger than that travels alone), or, with ``max_input_bytes``, before the
    child execution's input (``sizer``: the item plus the source block, UTF-8 JSON) would pass
    ``max_input_bytes``. A single key always makes a batch; it is refused only if it alone passes
    Step Functions' 256 KiB (impossible for an S3 key of at most 1,024 bytes unless the source block
    is huge).

    :param entry: what the ``keys`` array holds for an object (default its key); e.g. a pinned
        ``[key, version or ETag]`` (:func:`pinned_entry`), sized exactly as JSON.
    :raises ValueError: a limit below 1, or one key that cannot fit a child's input at all.
    """
    if entry is not None:
        yield from _iter_entry_batches(objects, max_keys, max_bytes, max_input_bytes, sizer or BatchSizer(""), entry)
        return
    if max_keys < 1 or max_bytes < 1:
        raise ValueError(f"max_keys ({max_keys}) and max_bytes ({max_bytes}) must both be at least 1")
    sizer = sizer or BatchSizer("")
    budget = max_input_bytes if max_input_bytes is not None else sys.maxsize
    batch = _Batch(sizer, max_keys, max_bytes, budget)
    objects = iter(objects)
    while chunk := list(islice(objects, max_keys - len(batch.keys))):
        # The common case in C calls: the chunk that would fill the batch is taken whole when the
        # whole of it fits (then every key added one by one would have fitted too: the greedy
        # batches are the same); else key by key (at most until the batch closes).
        if not batch.take_whole(chunk):
            yield from batch.add_each(chunk)
        elif len(batch.keys) >= max_keys:
            yield batch.close()
    if batch.keys:
        yield batch.close()


_KEY = attrgetter("key")
_NOT_PLAIN = bytes(range(32)) + b'\x7f"\\'  # the ASCII that is not printable, or is escaped in JSON
_SIZE = attrgetter("size")


class _Batch:
    """The batch :func:`iter_sized_batches` is filling: its keys, object bytes and key bytes."""

    def __init__(self, sizer: BatchSizer, max_keys: int, max_bytes: int, budget: int) -> None:
        self.sizer, self.max_keys, self.max_bytes = sizer, max_keys, max_bytes
        self.budget = budget
        # a plain key is len + 2 bytes; the exact size is only worked out once a batch comes within
        # 40 bytes (commas and digits) of the budget
        self.near = budget - sizer.fixed - 40
        self.keys: list[str] = []
        self.size = self.key_bytes = 0

    def close(self) -> tuple[list[str], int, int]:
        done = (self.keys, self.size, self.sizer.size(len(self.keys), self.key_bytes, self.size))
        self.keys, self.size, self.key_bytes = [], 0, 0
        return done

    def take_whole(self, chunk: list) -> bool:
        """Add all of ``chunk`` if all of it fits (its keys plain: printable ASCII without escapes)."""
        keys = list(map(_KEY, chunk))
        joined = "".join(keys)
        # printable ASCII without '"' or '\\' (what BatchSizer.key_bytes counts as len + 2), in one C pass
        if not (joined.isascii() and len(joined.encode("ascii").translate(None, _NOT_PLAIN)) == len(joined)):
            return False
        size = self.size + sum(map(_SIZE, chunk))
        key_bytes = self.key_bytes + len(joined) + 2 * len(keys)
        count = len(self.keys) + len(keys)
        if (size > self.max_bytes and count > 1) or key_bytes + count - 1 > self.near:
            return False
        if not self.keys:
            self._check_alone(keys[0], len(keys[0]) + 2, chunk[0].size)
        self.keys += keys
        self.size, self.key_bytes = size, key_bytes
        return True

    def add_each(self, chunk: list) -> Iterator[tuple[list[str], int, int]]:
        sizer = self.sizer
        for obj in chunk:
            key = obj.key
            one = sizer.key_bytes(key)
            count = len(self.keys)
            if count and (
                count >= self.max_keys
                or self.size + obj.size > self.max_bytes
                or (
                    self.key_bytes + one + count > self.near
                    and sizer.size(count + 1, self.key_bytes + one, self.size + obj.size) > self.budget
                )
            ):
                yield self.close()
            if not self.keys:
                self._check_alone(key, one, obj.size)
            self.keys.append(key)
            self.size += obj.size
            self.key_bytes += one
        if len(self.keys) >= self.max_keys:
            yield self.close()

    def _check_alone(self, key: str, one: int, size: int) -> None:
        if self.sizer.size(1, one, size) > MAX_CHILD_INPUT_BYTES:
            raise ValueError(
                f"key {key[:80]!r}... alone makes a child input of {self.sizer.size(1, one, size)} bytes, more "
                f"than Step Functions' {MAX_CHILD_INPUT_BYTES}: shorten the source prefix"
            )


def pinned_entry(obj) -> str | list[str]:
    """``[key, pin]``: the listed VersionId (a key list's or a versioned listing's) or else the ETag (always in
    double quotes, as S3 sends it, which is how the processor tells them apart); the bare key when neither
    is known (a key list without versions)."""
    pin = getattr(obj, "version_id", None) or obj.etag
    return [obj.key, pin] if pin else obj.key


def _iter_entry_batches(
    objects: Iterable, max_keys: int, max_bytes: int, max_input_bytes: int | None, sizer: BatchSizer, entry
) -> Iterator[tuple[list, int, int]]:
    """:func:`iter_sized_batches` for entries other than bare keys: each entry's JSON size, exactly."""
    budget = max_input_bytes if max_input_bytes is not None else sys.maxsize
    entries: list = []
    size = entry_bytes = 0
    for obj in objects:
        value = entry(obj)
        one = json_bytes(value)
        if entries and (
            len(entries) >= max_keys
            or size + obj.size > max_bytes
            or sizer.size(len(entries) + 1, entry_bytes + one, size + obj.size) > budget
        ):
            yield entries, size, sizer.size(len(entries), entry_bytes, size)
            entries, size, entry_bytes = [], 0, 0
        entries.append(value)
        size += obj.size
        entry_bytes += one
        if len(entries) == 1 and sizer.size(1, one, size) > MAX_CHILD_INPUT_BYTES:
            raise ValueError(f"key {obj.key[:80]!r}... alone makes a child input over {MAX_CHILD_INPUT_BYTES} bytes")
    if entries:
        yield entries, size, sizer.size(len(entries), entry_bytes, size)


class MultipartUploadWriter:
    """Stream bytes into one S3 object through a multipart upload.

    Use as a context manager: leaving it normally completes the upload; an exception (raised inside
    the block, or while completing) aborts it, so the object never exists half-written. The
    manifest's SHA-256 and size are computed on the way.

    A full part is uploaded by a background thread while the next one fills, so the caller (and
    the listing feeding it) does not stop for every part's round trip; at most one part is in
    flight, parts stay in order, and an upload's error is raised by the next write or on exit.
    The multipart upload is opened when the first part is full: an object smaller than one part is
    written with one PutObject on exit instead (:data:`SMALL_OBJECT_PUT`).

    :param part_size: bytes of the first :data:`PARTS_PER_STEP` parts (S3's minimum, 5 MiB, by
        default); every further :data:`PARTS_PER_STEP` parts are ``part_size`` larger. Memory
        holds about two parts: one filling, one uploading.
    :param encoder: optional; its ``header()`` bytes are written on entry and its ``footer()``
        bytes on a normal exit, and :meth:`write_item` writes ``encoder.item(value)``.
    """

    def __init__(
        self,
        s3_client,
        bucket: str,
        key: str,
        *,
        part_size: int = MIN_PART_SIZE,
        expected_bucket_owner: str | None = None,
        content_type: str = "application/octet-stream",
        encoder=None,
    ):
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum part size)")
        self._s3 = s3_client
        self.bucket = bucket
        self.key = key
        self._base_part_size = self._part_size = part_size
        self._owner = {"ExpectedBucketOwner": expected_bucket_owner} if expected_bucket_owner else {}
        self._content_type = content_type
        self._encoder = encoder
        self._buffer = bytearray()
        self._parts: list[dict] = []
        self._uploader: ThreadPoolExecutor | None = None
        self._in_flight: Future | None = None
        self._upload_id: str | None = None
        self._token = secrets.token_hex(16)
        self._killed = False
        self._multipart = False  # a multipart upload was opened (else one PutObject at the end)
        self._sha = hashlib.sha256()
        self.items = 0
        self.bytes_written = 0
        self.etag = ""

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    def __enter__(self):
        self._multipart = not SMALL_OBJECT_PUT
        if self._multipart:
            self._create()
        _open_writers.add(self)
        if self._encoder is not None:
            self.write(self._encoder.header())
        return self

    def _create(self) -> None:
        """Open the multipart upload: on entry, or (:data:`SMALL_OBJECT_PUT`) once a first part is full."""
        self._multipart = True
        response = self._s3.create_multipart_upload(
            Bucket=self.bucket,
            Key=self.key,
            ContentType=self._content_type,
            Metadata={UPLOAD_TOKEN: self._token},
            **self._owner,
        )
        self._upload_id = response["UploadId"]

    def write(self, data: bytes) -> None:
        """Append ``data``; a full part is uploaded as soon as the buffer reaches the part size."""
        if self._killed:
            raise RuntimeError(f"the upload of s3://{self.bucket}/{self.key} was aborted: the task is being terminated")
        self._buffer += data
        self._sha.update(data)
        self.bytes_written += len(data)
        if len(self._buffer) >= self._part_size:
            self._flush_part()

    def write_item(self, item) -> None:
        """Append one item, encoded by the writer's encoder."""
        self.items += 1
        self.write(self._encoder.item(item))

    def abort_now(self) -> bool:
        """Abort the upload at once, from another thread or a signal handler (see :func:`abort_open_uploads`)."""
        upload_id, self._upload_id = self._upload_id, None
        _open_writers.discard(self)
        self._killed = True
        if upload_id is None:
            return False
        try:
            self._s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=upload_id, **self._owner)
        except (ClientError, BotoCoreError) as err:
            log.warning("Could not abort the upload of s3://%s/%s: %s", self.bucket, self.key, err)
            return False
        return True

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                try:
                    if self._encoder is not None:
                        self.write(self._encoder.footer())
                    self._complete()
                    return
                except BaseException:
                    self._abort()
                    raise
            self._abort()
        finally:
            _open_writers.discard(self)

    def _complete(self) -> None:
        if self._killed:
            raise RuntimeError(f"the upload of s3://{self.bucket}/{self.key} was aborted: the task is being terminated")
        self._wait_for_part()
        if not self._parts and (not self._multipart or not self._buffer):
            # All of it fits one part (or nothing at all, which a multipart upload cannot hold): one
            # PutObject, as whole as a completed upload. No open upload to look for either: only a
            # manifest of more than a part opens one, and its retry completes (and cleans up) as such.
            if self._multipart:
                self._abort()
            response = self._s3.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=bytes(self._buffer),
                ContentType=self._content_type,
                Metadata={UPLOAD_TOKEN: self._token},
                **self._owner,
            )
            self._buffer = bytearray()
            self.etag = response.get("ETag", "")
            if self._multipart:
                self._abort_orphans()
            return
        self._flush_part()
        self._wait_for_part()
        try:
            response = self._s3.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
                **self._owner,
            )
        except (ClientError, BotoCoreError) as err:
            # The answer may have been lost after S3 completed it: botocore's retry then gets NoSuchUpload
            # (or no answer at all). The object at the key tells whether it is this upload's.
            etag = self._completed_anyway()
            if etag is None:
                raise
            log.warning(
                "CompleteMultipartUpload of s3://%s/%s failed (%s), but the object there is this upload's "
                "(upload token and size match): its answer was lost, the manifest is complete.",
                self.bucket,
                self.key,
                err,
            )
            response = {"ETag": etag}
        self._upload_id = None  # complete: nothing to abort any more
        self._stop_uploader()
        self.etag = response.get("ETag", "")
        self._abort_orphans()

    def _completed_anyway(self) -> str | None:
        """The ETag of the object at the key if this upload made it (its token, its size), else None."""
        try:
            head = self._s3.head_object(Bucket=self.bucket, Key=self.key, **self._owner)
        except (ClientError, BotoCoreError):
            return None
        if head.get("Metadata", {}).get(UPLOAD_TOKEN) == self._token and head.get("ContentLength") == (
            self.bytes_written
        ):
            return head.get("ETag", "")
        return None

    def _abort_orphans(self) -> None:
        """Abort the other open uploads of this key: one a CreateMultipartUpload opened when its answer was
        lost (botocore's retry opened another), or an earlier attempt's that was killed. Best effort: the
        bucket's lifecycle rule (AbortIncompleteMultipartUpload, 1 day) removes what is left."""
        try:
            listed = self._s3.list_multipart_uploads(Bucket=self.bucket, Prefix=self.key, **self._owner)
            for upload in listed.get("Uploads", []):
                if upload.get("Key") == self.key and upload.get("UploadId") != self._upload_id:
                    self._s3.abort_multipart_upload(
                        Bucket=self.bucket, Key=self.key, UploadId=upload["UploadId"], **self._owner
                    )
                    log.info(
                        "Aborted an open multipart upload of s3://%s/%s left by an earlier try", self.bucket, self.key
                    )
        except (ClientError, BotoCoreError) as err:
            log.warning(
                "Could not look for open multipart uploads of s3://%s/%s left by earlier tries (%s); the bucket's "
                "lifecycle rule (AbortIncompleteMultipartUpload) removes them.",
                self.bucket,
                self.key,
                err,
            )

    def _flush_part(self) -> None:
        if not self._buffer:
            return
        self._wait_for_part()  # one part in flight at most: bounded memory, parts in order
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            raise RuntimeError(
                f"manifest s3://{self.bucket}/{self.key} needs more than {MAX_PARTS} parts; raise part_size"
            )
        if not self._multipart:
            self._create()
        body, self._buffer = self._buffer, bytearray()  # handed over, not copied: a part less at peak
        self._part_size = self._base_part_size * (1 + number // PARTS_PER_STEP)
        if self._uploader is None:
            self._uploader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xacct-map-upload")
        self._in_flight = self._uploader.submit(self._upload_part, number, body)

    def _upload_part(self, number: int, body: bytes | bytearray) -> dict:
        response = self._s3.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, PartNumber=number, Body=body, **self._owner
        )
        return {"PartNumber": number, "ETag": response["ETag"]}

    def _wait_for_part(self) -> None:
        """Wait for the part in flight; raise its upload's error, if any."""
        if self._in_flight is not None:
            in_flight, self._in_flight = self._in_flight, None
            while True:
                try:  # in short waits: Python runs signal handlers (SIGTERM's on_kill) only between them
                    part = in_flight.result(timeout=0.25)
                    break
                except FutureTimeout:
                    continue
            self._parts.append(part)

    def _stop_uploader(self) -> None:
        if self._in_flight is not None:
            self._in_flight.exception()  # let it finish; its error is the one being raised, or moot
            self._in_flight = None
        if self._uploader is not None:
            self._uploader.shutdown(wait=True)
            self._uploader = None

    def _abort(self) -> None:
        self._stop_uploader()
        if self._upload_id is not None:
            upload_id, self._upload_id = self._upload_id, None
            try:
                self._s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=upload_id, **self._owner)
            except ClientError as err:
                if err.response.get("Error", {}).get("Code") != "NoSuchUpload":
                    raise
                # Gone already: aborted by an earlier try of this call whose answer was lost.
            self._abort_orphans()


class MultipartJsonArrayWriter(MultipartUploadWriter):
    """Stream JSON array items into one S3 object through a multipart upload.

    Use as a context manager: leaving it normally completes the upload; an exception aborts it.
    """

    def __init__(
        self,
        s3_client,
        bucket: str,
        key: str,
        *,
        part_size: int = MIN_PART_SIZE,
        expected_bucket_owner: str | None = None,
        content_type: str = "application/json",
    ):
        super().__init__(
            s3_client,
            bucket,
            key,
            part_size=part_size,
            expected_bucket_owner=expected_bucket_owner,
            content_type=content_type,
            encoder=JsonArrayEncoder(),
        )


#: A manifest part closes once it holds this many bytes (ItemReader reads files of at most 10 GB).
DEFAULT_MAX_PART_BYTES = 5 * 10**9
#: ... or this many items (ItemReader's ``MaxItems`` limit).
MAX_PART_ITEMS = 100_000_000
#: The largest part size one may set: a part may pass it by one batch, and ItemReader reads at most 10 GB.
MAX_MANIFEST_PART_BYTES = 9 * 10**9


def part_key(key: str, number: int) -> str:
    """The key of manifest part ``number`` (1-based): the manifest key itself for the first part,
    ``<root>.part-00002<ext>`` for the next ones (``manifest.json`` -> ``manifest.part-00002.json``)."""
    if number == 1:
        return key
    slash = key.rfind("/")
    dot = key.rfind(".")
    root, ext = (key[:dot], key[dot:]) if dot > slash + 1 else (key, "")
    return f"{root}.part-{number:05d}{ext}"


class PartedManifestWriter:
    """Items into one manifest object, or into several parts when one would pass ``max_part_bytes``
    or ``max_part_items``: each part a complete manifest of its own (its own multipart upload and
    encoder), at :func:`part_key`. A part closes once it reaches the limit (it may pass it by one
    item). Any failure aborts the part being written and deletes the parts already completed.

    The attributes :class:`MultipartUploadWriter` has (``items``, ``bytes_written``, ``sha256``,
    ``etag``) are totals (items, bytes) or the first part's (``sha256``, ``etag``); ``parts``
    describes every part.

    :param open_part: makes the :class:`MultipartUploadWriter` of a part key.
    """

    def __init__(self, open_part, key: str, *, max_part_bytes: int, max_part_items: int = MAX_PART_ITEMS):
        if max_part_bytes < 1 or not 1 <= max_part_items <= MAX_PART_ITEMS:
            raise ValueError(
                f"max_part_bytes ({max_part_bytes}) must be at least 1 and max_part_items ({max_part_items}) "
                f"between 1 and {MAX_PART_ITEMS}"
            )
        self._open_part, self.key = open_part, key
        self._max_bytes, self._max_items = max_part_bytes, max_part_items
        self._current: MultipartUploadWriter | None = None
        self._done: list[MultipartUploadWriter] = []
        self.parts: list[dict] = []

    def __enter__(self):
        self._next_part()
        return self

    def _next_part(self) -> None:
        writer = self._open_part(part_key(self.key, len(self._done) + 1))
        writer.__enter__()
        self._current = writer

    def _close_part(self) -> None:
        writer, self._current = self._current, None
        assert writer is not None
        writer.__exit__(None, None, None)
        self._done.append(writer)
        self.parts.append(
            {
                "key": writer.key,
                "items": writer.items,
                "bytes": writer.bytes_written,
                "sha256": writer.sha256,
                "etag": writer.etag,
            }
        )

    def write_item(self, item) -> None:
        """Append one item; close the part (and open the next on the next item) at its limit."""
        if self._current is None:
            self._next_part()
        writer = self._current
        assert writer is not None
        writer.write_item(item)
        if writer.bytes_written >= self._max_bytes or writer.items >= self._max_items:
            self._close_part()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                if self._current is not None or not self._done:
                    if self._current is None:
                        self._next_part()  # an empty manifest is still one (empty) part
                    self._close_part()
                return
            except BaseException:
                self._discard()
                raise
        if self._current is not None:
            self._current.__exit__(exc_type, exc, tb)  # aborts its upload
            self._current = None
        self._discard()

    def _discard(self) -> None:
        """Delete the completed parts (best effort): a failed manifest leaves no part behind."""
        for writer in self._done:
            try:
                writer._s3.delete_object(Bucket=writer.bucket, Key=writer.key, **writer._owner)
            except Exception:  # noqa: BLE001, S110 - the original error is the one to raise
                pass

    @property
    def items(self) -> int:
        return sum(p["items"] for p in self.parts)

    @property
    def bytes_written(self) -> int:
        return sum(p["bytes"] for p in self.parts)

    @property
    def sha256(self) -> str:
        return self.parts[0]["sha256"] if self.parts else ""

    @property
    def etag(self) -> str:
        return self.parts[0]["etag"] if self.parts else ""


def write_batched_manifest(
    objects: Iterable[S3Object],
    s3_client,
    *,
    bucket: str,
    key: str,
    source_bucket: str,
    source_prefix: str = "",
    max_keys_per_batch: int = 100,
    max_bytes_per_batch: int = 512 * 1024 * 1024,
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    expected_bucket_owner: str | None = None,
) -> ManifestSummary:
    """:func:`write_manifest` in the batched JSON layout, without the metadata sidecar.

    Memory stays flat: one batch and one upload part are held at a time.
    """
    return write_manifest(
        objects,
        s3_client,
        bucket=bucket,
        key=key,
        source_bucket=source_bucket,
        source_prefix=source_prefix,
        max_keys_per_batch=max_keys_per_batch,
        max_bytes_per_batch=max_bytes_per_batch,
        max_batch_bytes=max_batch_bytes,
        expected_bucket_owner=expected_bucket_owner,
        write_metadata=False,
    )


METADATA_SUFFIX = ".meta.json"


def metadata_key(manifest_key: str) -> str:
    """Where the metadata sidecar of ``manifest_key`` lives: ``<manifest key>.meta.json``."""
    return manifest_key + METADATA_SUFFIX


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class _Written:
    """What :func:`_write_items` wrote: objects, batches, object bytes, largest child input."""

    objects: int = 0
    batches: int = 0
    object_bytes: int = 0
    largest_item_bytes: int | None = None


def write_manifest(
    objects: Iterable[S3Object],
    s3_client,
    *,
    bucket: str,
    key: str,
    source_bucket: str,
    source_prefix: str = "",
    layout: str = "batched",
    manifest_format: str = "json",
    max_keys_per_batch: int = 100,
    max_bytes_per_batch: int = 512 * 1024 * 1024,
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    expected_bucket_owner: str | None = None,
    object_filter: ObjectFilter | None = None,
    source: dict | None = None,
    write_metadata: bool = True,
    part_size: int = MIN_PART_SIZE,
    max_part_bytes: int = DEFAULT_MAX_PART_BYTES,
    max_part_items: int = MAX_PART_ITEMS,
    grouped: bool = False,
    pin: bool = False,
    before_complete: Callable[[], None] | None = None,
) -> ManifestSummary:
    """Write ``objects`` as a manifest in any layout/format, then its metadata sidecar.

    The manifest streams through :class:`MultipartUploadWriter` (constant memory; a failure at any point,
    including while completing, aborts the upload and leaves no object). Only after the manifest is
    complete is the sidecar ``<key>.meta.json`` written (a PutObject of :meth:`ManifestSummary.as_dict`),
    so a failed manifest never has a sidecar (one left by an earlier try names that try's ``etag``).

    :param layout: ``batched``, ``flat`` or ``keys`` (see :mod:`xacct_map.core.layouts`).
    :param manifest_format: ``json``, ``jsonl`` or ``csv`` (csv: flat layout only).
    :param max_batch_bytes: batched layout: the most UTF-8 bytes one child execution's input (the
        ``ItemSelector`` output: the item plus the execution input's ``source`` block) may take; a
        batch closes before it would pass this (default 240 KiB, at most Step Functions' 256 KiB).
        The flat layout's state machine gets the same budget as ``MaxInputBytesPerBatch``.
    :param max_part_bytes: batched layout: a part closes once it holds this many bytes (default 5 GB;
        ItemReader reads at most 10 GB) or ``max_part_items`` items (at most 100,000,000) and the next part
        starts (:class:`PartedManifestWriter`; ``parts`` in the summary). Other layouts write one object.
    :param object_filter: applied to ``objects`` on the way; its settings and skip counts are recorded.
    :param source: where the objects came from (``{"type": "listing", "bucket", ...}``), recorded as is.
    :param grouped: ``objects`` is ``(bucket, objects)`` pairs; a batch never mixes buckets.
    :param pin: batched layout: keys as ``[key, version or ETag]`` (:func:`pinned_entry`).
    :param before_complete: called once every object is written; what it raises aborts the upload.
    :raises ValueError: an unknown layout, format or batch limit, before anything is written.
    """
    source_bytes = _source_bytes(source_bucket, source_prefix, source or {})
    batching = _check_batching(
        layout, manifest_format, max_keys_per_batch, max_bytes_per_batch, max_batch_bytes, source_bytes
    )
    if pin and layout != "batched":
        raise ValueError(f"on_changed (items pinned to a version or ETag) needs the batched layout, not {layout!r}")
    groups: Iterable[tuple[str, Iterable]] = objects if grouped else [(source_bucket, objects)]  # type: ignore[assignment]
    if object_filter is not None:
        groups = ((bucket, object_filter.apply(group)) for bucket, group in groups)
    opener = _part_opener(s3_client, bucket, manifest_format, part_size, expected_bucket_owner)
    # only the batched state machine iterates parts
    limits = (max_part_bytes, max_part_items) if layout == "batched" else (sys.maxsize, MAX_PART_ITEMS)
    with PartedManifestWriter(opener, key, max_part_bytes=limits[0], max_part_items=limits[1]) as writer:
        written = _write_items(writer, groups, layout, batching, source_bytes, pin=pin)
        if before_complete is not None:
            before_complete()
    summary = _summary(
        writer,
        written,
        bucket=bucket,
        key=key,
        source_bucket=source_bucket,
        source_prefix=source_prefix,
        layout=layout,
        manifest_format=manifest_format,
        source=source,
        batching=batching,
        object_filter=object_filter,
        write_metadata=write_metadata,
    )
    if write_metadata:
        _write_sidecar(s3_client, summary, expected_bucket_owner)
    return summary


def _source_bytes(source_bucket: str, source_prefix: str, described: dict) -> int:
    """What the execution input's ``source`` block adds to each child input (several sources: their table)."""
    block = source_block(
        source_bucket,
        source_prefix,
        described.get("account_id"),
        described.get("region"),
        described.get("request_payer"),
        sources=source_table(described["sources"]) if described.get("sources") else None,
        on_changed=described.get("on_changed"),
    )
    return source_block_bytes(block)


class SidecarWriteError(ClientError):
    """S3 refused the metadata sidecar (a PutObject, like a small manifest's own): the completed
    manifest was deleted again. The same ``response`` and ``operation_name`` as S3's answer."""


def _write_sidecar(s3_client, summary: ManifestSummary, expected_bucket_owner: str | None) -> None:
    """The metadata sidecar, or (if it cannot be written) no manifest either."""
    try:
        _put_metadata(s3_client, summary, expected_bucket_owner)
    except BaseException as err:
        # No manifest without its sidecar: the run's key holds both or neither (every part of it).
        written = [part["key"] for part in summary.parts or ()] or [summary.key]
        _delete_quietly(s3_client, summary.bucket, [*written, metadata_key(summary.key)], expected_bucket_owner)
        if isinstance(err, ClientError):
            raise SidecarWriteError(err.response, err.operation_name) from err
        raise


def _part_opener(s3_client, bucket: str, manifest_format: str, part_size: int, owner: str | None):
    """Opens the upload of one manifest part (a fresh encoder each: every part is a whole document)."""

    def open_part(part: str) -> MultipartUploadWriter:
        return MultipartUploadWriter(
            s3_client,
            bucket,
            part,
            part_size=part_size,
            expected_bucket_owner=owner,
            content_type=CONTENT_TYPES[manifest_format],
            encoder=encoder_for(manifest_format),
        )

    return open_part


def _check_batching(
    layout: str, manifest_format: str, max_keys: int, max_bytes: int, max_batch_bytes: int, source_bytes: int
) -> dict | None:
    """Validate the layout and the batch limits before anything is written; the ``batching`` record
    of the batched layout (None for the others, whose items ItemBatcher groups at run time)."""
    check_layout(layout, manifest_format)
    budget = check_batch_budget(max_batch_bytes, source_bytes)
    if layout != "batched":
        return None
    if max_keys < 1 or max_bytes < 1:
        raise ValueError(
            f"max_keys_per_batch ({max_keys}) and max_bytes_per_batch ({max_bytes}) must both be at least 1"
        )
    return {
        "max_keys_per_batch": max_keys,
        "max_bytes_per_batch": max_bytes,
        "max_batch_bytes": budget,
        "source_block_bytes": source_bytes,
    }


def _summary(
    writer: PartedManifestWriter,
    written: _Written,
    *,
    bucket: str,
    key: str,
    source_bucket: str,
    source_prefix: str,
    layout: str,
    manifest_format: str,
    source: dict | None,
    batching: dict | None,
    object_filter: ObjectFilter | None,
    write_metadata: bool,
) -> ManifestSummary:
    """The :class:`ManifestSummary` of a completed upload."""
    counts = object_filter.counts() if object_filter is not None else None
    return ManifestSummary(
        bucket=bucket,
        key=key,
        object_count=written.objects,
        batch_count=written.batches,
        total_bytes=written.object_bytes,
        manifest_bytes=writer.bytes_written,
        sha256=writer.sha256,
        source_bucket=source_bucket,
        source_prefix=source_prefix,
        etag=writer.etag,
        layout=layout,
        format=manifest_format,
        item_count=writer.items,
        source=source or {"bucket": source_bucket, "prefix": source_prefix},
        batching=batching,
        filters=object_filter.as_dict() if object_filter is not None else None,
        objects_seen=counts["seen"] if counts else written.objects,
        skipped=counts["skipped"] if counts else None,
        created_at=_utc_now(),
        xacct_map_version=__version__,
        metadata_key=metadata_key(key) if write_metadata else None,
        largest_item_bytes=written.largest_item_bytes,
        parts=writer.parts,
        part_count=len(writer.parts),
    )


def _delete_quietly(s3_client, bucket: str, keys: list[str], expected_bucket_owner: str | None) -> None:
    owner = {"ExpectedBucketOwner": expected_bucket_owner} if expected_bucket_owner else {}
    for key in keys:
        try:
            s3_client.delete_object(Bucket=bucket, Key=key, **owner)
        except (ClientError, BotoCoreError) as err:
            log.error(
                "Could not delete s3://%s/%s after its sidecar failed (%s): delete it, or retry the task",
                bucket,
                key,
                err,
            )


def _write_items(
    writer: PartedManifestWriter,
    groups: Iterable[tuple[str, Iterable[S3Object]]],
    layout: str,
    batching: dict | None,
    source_bytes: int,
    *,
    pin: bool = False,
) -> _Written:
    """Write each group's objects as items of ``layout`` naming the group's bucket; what was written."""
    written = _Written()
    first_bucket = None
    for source_bucket, objects in groups:
        if layout == "keys" and first_bucket not in (None, source_bucket):
            raise ValueError(
                f"the keys layout names no bucket, and the sources hold {first_bucket!r} and {source_bucket!r}: "
                "use the batched or flat layout for several buckets"
            )
        first_bucket = first_bucket or source_bucket
        if batching is not None:
            _write_batches(writer, objects, source_bucket, batching, source_bytes, written, pin)
            continue
        for obj in objects:
            writer.write_item(flat_item(source_bucket, obj) if layout == "flat" else obj.key)
            written.objects += 1
            written.object_bytes += obj.size
    return written


def _write_batches(
    writer: PartedManifestWriter,
    objects: Iterable[S3Object],
    source_bucket: str,
    batching: dict,
    source_bytes: int,
    written: _Written,
    pin: bool,
) -> None:
    sizer = BatchSizer(source_bucket, source_bytes)
    for keys, size, input_bytes in iter_sized_batches(
        objects,
        max_keys=batching["max_keys_per_batch"],
        max_bytes=batching["max_bytes_per_batch"],
        max_input_bytes=batching["max_batch_bytes"],
        sizer=sizer,
        entry=pinned_entry if pin else None,
    ):
        writer.write_item({"bucket": source_bucket, "keys": keys, "bytes": size})
        written.objects += len(keys)
        written.batches += 1
        written.object_bytes += size
        written.largest_item_bytes = max(written.largest_item_bytes or 0, input_bytes)


def _put_metadata(s3_client, summary: ManifestSummary, expected_bucket_owner: str | None) -> None:
    """The sidecar ``<key>.meta.json``: written only once the manifest is complete."""
    owner = {"ExpectedBucketOwner": expected_bucket_owner} if expected_bucket_owner else {}
    s3_client.put_object(
        Bucket=summary.bucket,
        Key=summary.metadata_key,
        Body=json.dumps(summary.as_dict(), indent=2, sort_keys=True, ensure_ascii=False).encode() + b"\n",
        ContentType="application/json",
        **owner,
    )


def read_metadata(s3_client, bucket: str, manifest_key: str, *, expected_bucket_owner: str | None = None) -> dict:
    """The metadata sidecar of ``s3://bucket/manifest_key`` as a dict."""
    owner = {"ExpectedBucketOwner": expected_bucket_owner} if expected_bucket_owner else {}
    body = s3_client.get_object(Bucket=bucket, Key=metadata_key(manifest_key), **owner)["Body"].read()
    return json.loads(body)
