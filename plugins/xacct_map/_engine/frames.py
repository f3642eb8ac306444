"""The listing coordinator's and workers' wire format: typed messages, pickled, each behind its length.

The coordinator (:mod:`xacct_map._engine.coordinator`) reads and writes with blocking file objects, a worker
(:mod:`xacct_map._engine.worker`) reads with asyncio. The messages are small immutable named tuples
defined here (not in the worker, which runs as ``__main__``), so both sides unpickle the same classes:

* coordinator -> worker: :class:`Configure` (once, first), :class:`Task`, :class:`NewCredentials`,
  :class:`Stop`;
* worker -> coordinator: :class:`Page` or :class:`Failure`, one per :class:`Task`.
"""

from __future__ import annotations

import pickle
import struct
from typing import NamedTuple

_HEADER = struct.Struct("!I")

# (access_key, secret_key, session token or None); None altogether for unsigned requests
Credentials = tuple[str, str, "str | None"]


class WorkerConfig(NamedTuple):
    """How a worker lists: the endpoint, the signing Region, retries and connections."""

    base_url: str  # scheme://host[:port]/path-to-bucket (path style) or / (virtual host)
    region: str
    headers: dict[str, str]
    verify: bool | str
    connect_timeout: float
    read_timeout: float
    prefix: str
    page_size: int
    max_attempts: int
    base_backoff: float
    max_backoff: float
    connections: int  # requests in flight at once in this worker
    details: bool = True  # False: pages carry no ETags and LastModified (the caller does not use them)


class Configure(NamedTuple):
    config: WorkerConfig
    credentials: Credentials | None


class Task(NamedTuple):
    """List one page of range ``(start_after, hi]`` (``hi`` None: to the end of the prefix)."""

    tid: int
    start_after: str
    hi: str | None


class NewCredentials(NamedTuple):
    credentials: Credentials | None


class Stop(NamedTuple):
    pass


class Page(NamedTuple):
    """One page of a range: the objects as parallel lists, and where the range goes on."""

    tid: int
    keys: list[str]
    sizes: list[int]
    etags: list[str]
    modified: list[str]
    classes: list[str]
    more: bool  # the range has more pages
    after: str  # the next page's StartAfter
    parsed: int  # keys parsed, including any beyond the range
    retries: int
    continued: int = 0  # requests that followed a truncated page without keys (its continuation token)


class Failure(NamedTuple):
    """A task that failed for good. ``kind``: ``client`` (S3 answered an error), ``transport``
    (no usable answer), ``order`` (keys out of order or outside the range), ``other`` (a bug)."""

    tid: int
    kind: str
    status: int = 0
    code: str = ""
    message: str = ""


def write_frame(stream, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def read_frame(stream):
    """The next frame, or None at end of stream."""
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        return None
    return pickle.loads(data)


async def read_frame_async(reader):
    """The next frame from an :class:`asyncio.StreamReader`, or None at end of stream."""
    try:
        (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
        return pickle.loads(await reader.readexactly(size))
    except EOFError:  # asyncio.IncompleteReadError: the stream ended
        return None
