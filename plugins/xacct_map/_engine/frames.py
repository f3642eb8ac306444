"""The listing coordinator's and workers' wire format: pickled objects, each behind its length.

The coordinator (:mod:`xacct_map._engine.coordinator`) reads and writes with blocking file objects, a worker
(:mod:`xacct_map._engine.worker`) reads with asyncio.
"""

from __future__ import annotations

import pickle
import struct

_HEADER = struct.Struct("!I")


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
