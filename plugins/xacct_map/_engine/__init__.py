"""The parallel listing engine (private): key ranges of one prefix listed at once by worker processes.

Airflow-free and self-contained: nothing here imports Airflow or any other part of ``xacct_map``.
The rest of the package uses only the names below (:mod:`xacct_map.core.listing` does):

* :class:`Endpoint` - where and how to send ListObjectsV2 (taken from a boto3 client's own request);
* :class:`WorkerPool` - the worker processes (``python -m xacct_map._engine.worker``);
* :func:`list_ranges` - list the key ranges with the pool, objects out as pages arrive;
* :func:`plan_cuts` - where to cut a key space whose first keys are known (a listing planned
  over several tasks).
* :func:`parse_list_page` - the exact page parser (the caller's first page, answered to botocore).

Inside: :mod:`.coordinator` (ranges, cuts, the pool; the caller's process), :mod:`.keyspace` (where to
cut), :mod:`.worker` (one worker process), :mod:`.page` (one page's request and exact parse),
:mod:`.http1` (keep-alive HTTP/1.1 client), :mod:`.sigv4` (the request signer), :mod:`.frames`
(the pipe format between coordinator and workers).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xacct_map._engine.coordinator import Endpoint, WorkerPool, list_ranges
    from xacct_map._engine.keyspace import plan_cuts
    from xacct_map._engine.page import PageFormatError, parse_list_page

# Each name from its module when first asked for: a worker process (``-m xacct_map._engine.worker``)
# imports this package first, and the coordinator's imports (subprocess, dataclasses) would cost it
# ~15 ms of its start.
_HOMES = {
    "Endpoint": "coordinator",
    "WorkerPool": "coordinator",
    "list_ranges": "coordinator",
    "plan_cuts": "keyspace",
    "PageFormatError": "page",
    "parse_list_page": "page",
}
__all__ = ["Endpoint", "PageFormatError", "WorkerPool", "list_ranges", "parse_list_page", "plan_cuts"]


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
