"""Turn a stream of listed objects into a Distributed Map manifest in S3, never holding it whole.

The default ("batched") layout is a JSON array whose items are batches of keys, each closed by a
key count and by a byte budget::

    [{"bucket": "src", "keys": ["a", "b"], "bytes": 123}, ...]

Step Functions' ItemReader (InputType JSON) hands one batch to each child execution. Batching here
rather than with ItemBatcher bounds the *object bytes* per child, which ItemBatcher cannot do, and
runs the same state machine on AWS and in the local emulator (which lacks ItemBatcher).

The manifest is streamed through a multipart upload: the object appears only when the upload
completes, and any failure aborts it, so a failed run never leaves a half-written manifest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from xacct_map.listing import S3Object

MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum for every part but the last
MAX_PARTS = 10_000


@dataclass(frozen=True)
class ManifestSummary:
    """What was written: the operator's XCom and the CLI's ``--json`` output."""

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

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def iter_batches(
    objects: Iterable[S3Object], *, max_keys: int, max_bytes: int
) -> Iterator[tuple[list[str], int]]:
    """Group objects into ``(keys, bytes)`` batches of at most ``max_keys`` keys and ``max_bytes``.

    An object larger than ``max_bytes`` travels alone: it is one batch's work.
    """
    if max_keys < 1 or max_bytes < 1:
        raise ValueError(f"max_keys ({max_keys}) and max_bytes ({max_bytes}) must both be at least 1")
    keys: list[str] = []
    size = 0
    for obj in objects:
        if keys and (len(keys) >= max_keys or size + obj.size > max_bytes):
            yield keys, size
            keys, size = [], 0
        keys.append(obj.key)
        size += obj.size
    if keys:
        yield keys, size


class MultipartJsonArrayWriter:
    """Stream JSON array items into one S3 object through a multipart upload.

    Use as a context manager: leaving it normally completes the upload; an exception aborts it.
    """

    def __init__(
        self,
        s3_client,
        bucket: str,
        key: str,
        *,
        part_size: int = 8 * 1024 * 1024,
        expected_bucket_owner: str | None = None,
        content_type: str = "application/json",
    ):
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum part size)")
        self._s3 = s3_client
        self.bucket = bucket
        self.key = key
        self._part_size = part_size
        self._owner = {"ExpectedBucketOwner": expected_bucket_owner} if expected_bucket_owner else {}
        self._content_type = content_type
        self._buffer = bytearray()
        self._parts: list[dict] = []
        self._upload_id: str | None = None
        self._items = 0
        self._sha = hashlib.sha256()
        self.bytes_written = 0
        self.etag = ""

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    def __enter__(self) -> MultipartJsonArrayWriter:
        response = self._s3.create_multipart_upload(
            Bucket=self.bucket, Key=self.key, ContentType=self._content_type, **self._owner
        )
        self._upload_id = response["UploadId"]
        self._write(b"[")
        return self

    def write_item(self, item: dict) -> None:
        prefix = b",\n" if self._items else b"\n"
        self._items += 1
        self._write(prefix + json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode())
        if len(self._buffer) >= self._part_size:
            self._flush_part()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self._write(b"\n]\n")
                self._flush_part()
                response = self._s3.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},
                    **self._owner,
                )
                self.etag = response.get("ETag", "")
                return
            except BaseException:
                self._abort()
                raise
        self._abort()

    def _write(self, data: bytes) -> None:
        self._buffer += data
        self._sha.update(data)
        self.bytes_written += len(data)

    def _flush_part(self) -> None:
        if not self._buffer:
            return
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            raise RuntimeError(
                f"manifest s3://{self.bucket}/{self.key} needs more than {MAX_PARTS} parts; raise part_size"
            )
        response = self._s3.upload_part(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=bytes(self._buffer),
            **self._owner,
        )
        self._parts.append({"PartNumber": number, "ETag": response["ETag"]})
        self._buffer.clear()

    def _abort(self) -> None:
        if self._upload_id is not None:
            self._s3.abort_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, **self._owner
            )


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
    expected_bucket_owner: str | None = None,
) -> ManifestSummary:
    """Write ``objects`` as a batched manifest to ``s3://bucket/key`` and summarise it.

    Memory stays flat: one batch and one upload part are held at a time.
    """
    object_count = batch_count = total_bytes = 0
    with MultipartJsonArrayWriter(
        s3_client, bucket, key, expected_bucket_owner=expected_bucket_owner
    ) as writer:
        for keys, size in iter_batches(objects, max_keys=max_keys_per_batch, max_bytes=max_bytes_per_batch):
            writer.write_item({"bucket": source_bucket, "keys": keys, "bytes": size})
            object_count += len(keys)
            batch_count += 1
            total_bytes += size
    return ManifestSummary(
        bucket=bucket,
        key=key,
        object_count=object_count,
        batch_count=batch_count,
        total_bytes=total_bytes,
        manifest_bytes=writer.bytes_written,
        sha256=writer.sha256,
        source_bucket=source_bucket,
        source_prefix=source_prefix,
        etag=writer.etag,
    )
