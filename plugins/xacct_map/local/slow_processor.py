"""A processor for watching a run: it reads each object, then sleeps ``XACCT_MAP_SECONDS_PER_OBJECT``.

Deployed by ``xacct-map demo`` / ``xacct-map airflow`` with ``--seconds-per-object`` (packaged like any
``--processor`` file: only :mod:`xacct_map.processor` and the standard library), so a local run lasts
long enough to see the Map runs page's bar move. The SDK still runs up to ``XACCT_MAP_CONCURRENCY``
(8) objects of a batch at once: small batches (``max_keys_per_batch``) make the bar move in small steps.
"""

from __future__ import annotations

import os
import time

from xacct_map.processor import S3Object

SECONDS = float(os.environ.get("XACCT_MAP_SECONDS_PER_OBJECT") or 0)


def process(obj: S3Object) -> dict:
    """The object's length (its bytes read to the end), after the configured delay."""
    size = 0
    with obj.open() as body:
        while chunk := body.read(1024 * 1024):
            size += len(chunk)
    time.sleep(SECONDS)
    return {"bytes": size}
