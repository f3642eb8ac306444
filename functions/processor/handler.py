"""The built-in processor: stream every object and return its SHA-256 (an example of the SDK).

Written with :mod:`xacct_map.processor` like any user's function; ``xacct-map deploy`` without
``--processor`` packages this file with the SDK (``--processor functions/processor/handler.py:process``
does the same). Each object is streamed in ``CHUNK_SIZE`` reads (environment variable, default
1 MiB), never held whole; its result is ``{"sha256": ..., "bytes": ...}``.
"""

from __future__ import annotations

import hashlib
import os

from xacct_map.processor import S3Object, lambda_handler

CHUNK_SIZE = int(os.environ.get("CHUNK_SIZE", str(1024 * 1024)))


def process(obj: S3Object) -> dict:
    """SHA-256 and length of the object's bytes, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with obj.open() as body:
        while chunk := body.read(CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
    return {"sha256": digest.hexdigest(), "bytes": size}


handler = lambda_handler(process)
