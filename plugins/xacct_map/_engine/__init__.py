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

from xacct_map._engine.coordinator import Endpoint, WorkerPool, list_ranges
from xacct_map._engine.keyspace import plan_cuts
from xacct_map._engine.page import PageFormatError, parse_list_page

__all__ = ["Endpoint", "PageFormatError", "WorkerPool", "list_ranges", "parse_list_page", "plan_cuts"]
