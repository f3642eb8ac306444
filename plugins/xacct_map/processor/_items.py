"""Every item shape a manifest produces, turned into ``(run context, [object descriptions])``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RunContext:
    """What a processor knows about the run its batch belongs to.

    :ivar source_bucket: the source bucket (account A), when the event names it.
    :ivar source_account: the account that must own the source bucket (sent as ``ExpectedBucketOwner``);
        from the event's ``source.account_id``, else the ``SOURCE_ACCOUNT_ID`` environment variable.
    :ivar source_region: the source bucket's Region (the S3 client is made there).
    :ivar request_payer: ``"requester"`` for a Requester Pays source (the event's
        ``source.request_payer``, else the ``REQUEST_PAYER`` environment variable): sent on every read.
    :ivar execution: the parent execution's ARN (the shipped state machines pass ``$$.Execution.Id``;
        its name is derived from the DAG id and run id, :func:`xacct_map.core.naming.execution_name`).
    :ivar dag_id: the Airflow DAG, when the batch carries ``run`` (a state machine of your own can
        pass the execution input's ``"run.$": "$.run"``; the shipped ones do not, so that executions
        started without ``run`` still work).
    :ivar run_id: the Airflow DAG run, likewise.
    :ivar extra: the rest of the batch's context (``source``, ``BatchInput``), as given.
    :ivar on_changed: the items are pinned to the listed version or ETag; what to do with an object changed
        or deleted since: ``fail`` (the batch fails naming it), ``skip`` (reported, not processed) or
        ``current`` (the current object is processed, reported as changed). None: not pinned.
    :ivar buckets: several sources: each bucket's ``(account, Region)`` (``source.sources``).
    """

    source_bucket: str | None = None
    source_account: str | None = None
    source_region: str | None = None
    request_payer: str | None = None
    execution: str | None = None
    dag_id: str | None = None
    run_id: str | None = None
    extra: dict = field(default_factory=dict)
    on_changed: str | None = None
    buckets: dict = field(default_factory=dict)

    def account_of(self, bucket: str) -> str | None:
        """The account that must own ``bucket`` (its source's, else the run's)."""
        return (self.buckets.get(bucket) or {}).get("account_id") or self.source_account

    def region_of(self, bucket: str) -> str | None:
        """``bucket``'s Region (its source's, else the run's)."""
        return (self.buckets.get(bucket) or {}).get("region") or self.source_region


@dataclass(frozen=True)
class ObjectRef:
    """One object named by an item: bucket and key, plus what the manifest already knew."""

    bucket: str
    key: str
    size: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    version_id: str | None = None
    if_match: str | None = None


def _pinned(bucket: str, entry: Any) -> ObjectRef:
    """A batch's key: a string, or ``[key, pin]`` where the pin is an ETag (in double quotes, as S3 sends
    it) or else a VersionId."""
    if isinstance(entry, str):
        return ObjectRef(bucket, entry)
    if not (isinstance(entry, list) and len(entry) == 2 and all(isinstance(v, str) for v in entry)):
        raise ValueError(f"unrecognised key entry {entry!r}: expected a key or [key, version or ETag]")
    key, pin = entry
    if pin.startswith('"'):
        return ObjectRef(bucket, key, etag=pin, if_match=pin)
    return ObjectRef(bucket, key, version_id=pin)


def _context(batch_input: dict) -> RunContext:
    source = batch_input.get("source") or {}
    run = batch_input.get("run") or {}
    return RunContext(
        on_changed=source.get("on_changed"),
        buckets={entry.get("bucket"): entry for entry in source.get("sources") or () if isinstance(entry, dict)},
        source_bucket=source.get("bucket"),
        source_account=source.get("account_id") or os.environ.get("SOURCE_ACCOUNT_ID") or None,
        source_region=source.get("region"),
        request_payer=source.get("request_payer") or os.environ.get("REQUEST_PAYER") or None,
        execution=batch_input.get("execution"),
        dag_id=run.get("dag_id"),
        run_id=run.get("run_id"),
        extra=dict(batch_input),
    )


def _size(value: Any) -> int | None:
    return None if value in (None, "") else int(value)


def _refs(item: Any, default_bucket: str | None) -> list[ObjectRef]:
    """The objects of one manifest item: a batch, a flat object or a bare key."""
    if isinstance(item, str):
        return [ObjectRef(_bucket(default_bucket, item), item)]
    if not isinstance(item, dict):
        raise ValueError(f"unrecognised manifest item {item!r}: expected a batch, a flat object or a key")
    if "keys" in item:
        bucket = item.get("bucket") or default_bucket
        return [_pinned(_bucket(bucket, str(key)), key) for key in item["keys"]]
    key = item.get("Key", item.get("key"))
    if key is None:
        raise ValueError(f"unrecognised manifest item with fields {sorted(item)}: expected 'keys', 'Key' or 'key'")
    return [
        ObjectRef(
            _bucket(item.get("Bucket") or item.get("bucket") or default_bucket, key),
            key,
            size=_size(item.get("Size", item.get("size"))),
            etag=item.get("ETag", item.get("etag")),
            last_modified=item.get("LastModified", item.get("last_modified")),
            version_id=item.get("VersionId", item.get("version_id")) or None,
        )
    ]


def _bucket(bucket: str | None, key: str) -> str:
    if not bucket:
        raise ValueError(
            f"no bucket for key {key!r}: the item names none, and neither does the batch's source.bucket "
            "(nor the SOURCE_BUCKET environment variable)"
        )
    return bucket


def parse_event(event: Any) -> tuple[RunContext, list[ObjectRef]]:
    """The run context and the objects of a processor event, whatever the manifest layout.

    Accepted: ItemBatcher's ``{"Items": [...], "BatchInput": {...}}`` (items: batches, flat objects
    or bare keys), one batch ``{"bucket", "keys", "source"?}``, one flat object ``{"Bucket", "Key"}``
    and one bare key string. Raises ``ValueError`` naming what it got otherwise.
    """
    if isinstance(event, dict) and "Items" in event:
        context = _context(dict(event.get("BatchInput") or {}))
        items = event["Items"]
    elif isinstance(event, dict) and ("keys" in event or "Key" in event or "key" in event):
        context = _context(event)
        items = [event]
    elif isinstance(event, str):
        context, items = _context({}), [event]
    else:
        shown = sorted(event) if isinstance(event, dict) else type(event).__name__
        raise ValueError(
            f"unrecognised event: expected a manifest batch, a flat item, a key or ItemBatcher input, got {shown}"
        )
    default_bucket = context.source_bucket or os.environ.get("SOURCE_BUCKET")
    return context, [ref for item in items for ref in _refs(item, default_bucket)]
