"""Write the per-object work, get a Lambda handler: the processor SDK.

You write one function that takes an :class:`S3Object` and returns a small JSON-able value (or
``None``)::

    from xacct_map.processor import S3Object

    def process(obj: S3Object) -> dict | None:
        with obj.open() as body:              # streamed, read-only; never the whole object at once
            lines = sum(1 for _ in body)
        return {"lines": lines}

``xacct-map deploy --processor file.py:process`` (or ``xacct-map demo --processor ...`` locally)
packages it with this SDK; :func:`lambda_handler` turns it into the Lambda handler. That handler
accepts every item shape the manifests produce (a batch ``{"bucket", "keys"}``, a flat object
``{"Bucket", "Key", ...}``, a bare key, and ItemBatcher's ``{"Items", "BatchInput"}``), reads with
``ExpectedBucketOwner`` through a client in the source bucket's Region, runs a batch's objects on a
few threads, stops taking new objects before the Lambda deadline, and returns
``{"objects", "bytes", "bytes_read", "results"}``. An object whose function raises fails the batch
with :class:`ObjectsFailed`, whose message names the failed keys and exceptions (the first few) and
counts what the other objects did. A manifest built with ``on_changed`` pins each key to the listed
version or ETag: the SDK reads exactly that (``VersionId`` or ``IfMatch``) and reports objects changed
or deleted since the listing as ``changed``/``gone`` in the result (:class:`ObjectChanged`,
:class:`ObjectGone`; ``on_changed`` says whether that fails the batch, skips them or reads the current one).

This package imports only the standard library and boto3 (both in the Lambda Python runtime); it
knows nothing of Airflow or of the rest of xacct-map, so it runs inside the Lambda zip as is.
"""

from __future__ import annotations

from xacct_map.processor._handler import (
    BatchFailed,
    DeadlineReached,
    ObjectsFailed,
    ResultTooLarge,
    lambda_handler,
    process_batch,
)
from xacct_map.processor._items import RunContext, parse_event
from xacct_map.processor._objects import ObjectChanged, ObjectGone, S3Object, s3_client

__all__ = [
    "BatchFailed",
    "DeadlineReached",
    "ObjectChanged",
    "ObjectGone",
    "ObjectsFailed",
    "ResultTooLarge",
    "RunContext",
    "S3Object",
    "lambda_handler",
    "parse_event",
    "process_batch",
    "s3_client",
]
