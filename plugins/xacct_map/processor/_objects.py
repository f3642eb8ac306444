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


class ObjectChanged(Exception):
    """The object is no longer what was listed: another ETag (overwritten since the listing)."""


class ObjectGone(Exception):
    """The object (or the listed version of it) no longer exists: deleted since the listing."""


_GONE = ("NoSuchKey", "NoSuchVersion", "404", "NotFound")
_CHANGED = ("PreconditionFailed", "412")


def _outcome_of(err: Exception) -> str | None:
    """``changed``, ``gone`` or None (another error) for a failed GetObject/HeadObject."""
    response = getattr(err, "response", None) or {}
    code = str((response.get("Error") or {}).get("Code", ""))
    status = str((response.get("ResponseMetadata") or {}).get("HTTPStatusCode", ""))
    if code in _CHANGED or status == "412":
        return "changed"
    if code in _GONE or status == "404":
        return "gone"
    return None


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

    A pinned item (``on_changed`` set when the manifest was built) names the listed ``version_id`` or
    ETag: GetObject and HeadObject send ``VersionId``, or ``IfMatch`` with the ETag, so exactly what was
    listed is read. An object changed since raises :class:`ObjectChanged`, a deleted one
    :class:`ObjectGone` (reported per object, as ``on_changed`` says); with ``on_changed="current"`` the
    current object is read instead and ``status`` says ``"changed"``. Your own calls on the object can
    pass :attr:`pin` (e.g. ``CopySourceIfMatch`` from it).
    """

    def __init__(self, ref: ObjectRef, context: RunContext, client=None):
        self.bucket = ref.bucket
        self.key = ref.key
        self.context = context
        self.version_id = ref.version_id
        self._if_match = ref.if_match
        self._meta: dict[str, Any] = {"size": ref.size, "etag": ref.etag, "last_modified": ref.last_modified}
        self._client = client
        self.bytes_read = 0
        self._lock = threading.Lock()
        #: ``"changed"`` or ``"gone"`` once a read found the object changed or deleted since the listing.
        self.status: str | None = None

    @property
    def pin(self) -> dict:
        """``{"VersionId": ...}`` or ``{"IfMatch": etag}`` (what was listed), empty when not pinned or
        once ``on_changed="current"`` moved on to the current object."""
        if self.version_id:
            return {"VersionId": self.version_id}
        return {"IfMatch": self._if_match} if self._if_match else {}

    def _pinned_call(self, call, **args):
        """``call`` with the pin; a changed or gone object per ``on_changed`` (see the class)."""
        try:
            return call(Bucket=self.bucket, Key=self.key, **self.read_args, **self.pin, **args)
        except Exception as err:  # a botocore ClientError: told apart by its code, not its class
            outcome = _outcome_of(err) if self.pin else None
            if outcome is None:
                raise
            self.status = outcome
            if self.context.on_changed != "current":
                raise (ObjectChanged if outcome == "changed" else ObjectGone)(
                    f"s3://{self.bucket}/{self.key} {outcome} since the listing ({self._pin_text()})"
                ) from err
        self.version_id = self._if_match = None  # "current": read what is there now
        self.status = "changed"
        try:
            return call(Bucket=self.bucket, Key=self.key, **self.read_args, **args)
        except Exception as err:
            if _outcome_of(err) != "gone":
                raise
            self.status = "gone"
            raise ObjectGone(f"s3://{self.bucket}/{self.key} gone since the listing") from err

    def _pin_text(self) -> str:
        return f"version {self.version_id}" if self.version_id else f"listed ETag {self._if_match}"

    def __repr__(self) -> str:
        return f"S3Object(s3://{self.bucket}/{self.key})"

    @property
    def client(self):
        """The S3 client in the source Region (see :func:`s3_client`)."""
        if self._client is None:
            self._client = s3_client(self.context.region_of(self.bucket))
        return self._client

    @property
    def owner(self) -> dict:
        """``{"ExpectedBucketOwner": account}`` for calls on the source bucket (empty when unknown)."""
        account = self.context.account_of(self.bucket)
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
            head = self._pinned_call(self.client.head_object)
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
        response = self._pinned_call(self.client.get_object, **get_object_args)
        if "Range" not in get_object_args:
            self._remember(response)
        return io.BufferedReader(_CountingRaw(response["Body"], self._count), buffer_size=buffer_size)

    def read(self) -> bytes:
        """The whole object in memory: only for objects you know are small."""
        with self.open() as body:
            return body.read()
