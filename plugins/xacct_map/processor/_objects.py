"""One source object as the user's function sees it: metadata, and a streaming read-only body."""

from __future__ import annotations

import io
import threading
from typing import Any

from xacct_map.processor._items import ObjectRef, RunContext

# One client per Region, kept across warm invocations (boto3 clients are thread-safe; making one is not).
_clients: dict[str | None, Any] = {}
_clients_lock = threading.Lock()


def s3_client(region: str | None = None):
    """The S3 client the SDK reads with, in ``region`` (the Lambda's own Region when None); cached.

    Use it in your function for other calls to the source bucket (or to your own buckets in the
    same Region).
    """
    with _clients_lock:
        if region not in _clients:
            import boto3

            _clients[region] = boto3.client("s3", region_name=region) if region else boto3.client("s3")
        return _clients[region]


class _CountingRaw(io.RawIOBase):
    """A raw, read-only stream over a botocore ``StreamingBody`` that counts the bytes read."""

    def __init__(self, body, on_read):
        self._body = body
        self._on_read = on_read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._body.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self._on_read(n)
        return n

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class S3Object:
    """A source object: ``bucket``, ``key``, ``size``, ``etag``, ``last_modified``, ``context``, ``open()``.

    ``size``, ``etag`` and ``last_modified`` come from the manifest when it carries them (the flat
    layout), from the GetObject response once :meth:`open` was called, and otherwise from one
    HeadObject on first use. Every request sends ``ExpectedBucketOwner`` (the source account), so a
    bucket name taken over by another account fails instead of being read, and ``RequestPayer`` for
    a Requester Pays source (:attr:`read_args`). ``bucket`` may be an access point ARN or alias:
    boto3 reads through it.
    """

    def __init__(self, ref: ObjectRef, context: RunContext, client=None):
        self.bucket = ref.bucket
        self.key = ref.key
        self.context = context
        self._meta: dict[str, Any] = {"size": ref.size, "etag": ref.etag, "last_modified": ref.last_modified}
        self._client = client
        self.bytes_read = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3Object(s3://{self.bucket}/{self.key})"

    @property
    def client(self):
        """The S3 client in the source Region (see :func:`s3_client`)."""
        if self._client is None:
            self._client = s3_client(self.context.source_region)
        return self._client

    @property
    def owner(self) -> dict:
        """``{"ExpectedBucketOwner": account}`` for calls on the source bucket (empty when unknown)."""
        account = self.context.source_account
        return {"ExpectedBucketOwner": account} if account else {}

    @property
    def read_args(self) -> dict:
        """:attr:`owner` plus ``{"RequestPayer": "requester"}`` for a Requester Pays source: pass them to
        your own calls reading the source (HeadObject, GetObject, CopyObject)."""
        payer = self.context.request_payer
        return self.owner | {"RequestPayer": payer} if payer else self.owner

    @property
    def size(self) -> int:
        return self._metadata("size")

    @property
    def etag(self) -> str:
        return self._metadata("etag")

    @property
    def last_modified(self) -> str:
        return self._metadata("last_modified")

    @property
    def size_if_known(self) -> int | None:
        """The size without a request: None when neither the manifest nor a read told it."""
        return self._meta["size"]

    def _metadata(self, name: str):
        if self._meta[name] is None:
            head = self.client.head_object(Bucket=self.bucket, Key=self.key, **self.read_args)
            self._remember(head)
        return self._meta[name]

    def _remember(self, response: dict) -> None:
        modified = response.get("LastModified")
        self._meta.update(
            size=int(response.get("ContentLength", 0)),
            etag=response.get("ETag"),
            last_modified=getattr(modified, "isoformat", lambda: modified)(),
        )

    def _count(self, n: int) -> None:
        with self._lock:
            self.bytes_read += n

    def open(self, buffer_size: int = 1024 * 1024, **get_object_args) -> io.BufferedReader:
        """The object's body as a read-only binary file, streamed from S3 (one GetObject).

        Iterate it for lines, ``read(n)`` it in chunks, or wrap it in ``io.TextIOWrapper`` for text;
        ``read()`` without a size holds the whole object in memory. Use it as a context manager.
        ``get_object_args`` go to GetObject (e.g. ``Range="bytes=0-1023"``).
        """
        response = self.client.get_object(Bucket=self.bucket, Key=self.key, **self.read_args, **get_object_args)
        if "Range" not in get_object_args:
            self._remember(response)
        return io.BufferedReader(_CountingRaw(response["Body"], self._count), buffer_size=buffer_size)

    def read(self) -> bytes:
        """The whole object in memory: only for objects you know are small."""
        with self.open() as body:
            return body.read()
