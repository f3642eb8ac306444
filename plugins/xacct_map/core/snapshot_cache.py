"""At most one look at AWS per run per interval, however many people watch the Map runs page.

The page's JSON is polled by every open browser; each poll asking Step Functions would spend the
account's DescribeMapRun budget (1 request/s per account and Region, shared with the sensors). The
cache answers from the last look until it is ``ttl`` seconds old; a look that failed (throttled,
access denied) is kept just as long, so a failing run is not retried on every poll either. A value
that ``final`` says cannot change (a finished execution) is kept until it is evicted. Concurrent
requests for the same run wait for one look instead of making their own.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Entry:
    """The last look at one run: its value or error, when it was taken, and what was recorded."""

    value: Any = None
    error: str | None = None
    looked_at: float | None = None  # the clock's time of the last look
    looks: int = 0
    final: bool = False
    history: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class SnapshotCache:
    """Looks keyed by run, kept ``ttl`` seconds (final ones until evicted), at most ``max_entries`` runs.

    :param ttl: seconds a look is answered from the cache (the page's refresh interval).
    :param clock: seconds, monotonic (tests pass their own).
    :param max_entries: runs remembered; the least recently asked for goes first.
    """

    def __init__(self, ttl: float, *, clock: Callable[[], float] = time.monotonic, max_entries: int = 256):
        self.ttl = ttl
        self.clock = clock
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, Entry] = OrderedDict()
        self._lock = threading.Lock()

    def _entry(self, key: Hashable) -> Entry:
        with self._lock:
            entry = self._entries.pop(key, None) or Entry()
            self._entries[key] = entry
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
            return entry

    def get(
        self,
        key: Hashable,
        look: Callable[[], Any],
        *,
        final: Callable[[Any], bool] = lambda value: False,
        record: Callable[[list, Any], list] | None = None,
    ) -> Entry:
        """The entry for ``key``, after calling ``look()`` if the last look is missing or stale.

        :param look: one look at AWS; an exception is kept as the entry's ``error`` (its text).
        :param final: whether a value can no longer change (kept without expiry).
        :param record: ``record(history, value)`` -> the new history, called once per new value.
        """
        entry = self._entry(key)
        with entry.lock:
            fresh = entry.looked_at is not None and (entry.final or self.clock() - entry.looked_at < self.ttl)
            if fresh:
                return entry
            entry.looks += 1
            try:
                value = look()
            except Exception as err:  # noqa: BLE001 - shown on the page; the next look is a TTL away
                entry.error = f"{err.__class__.__name__}: {err}"[:500]
            else:
                entry.value, entry.error, entry.final = value, None, bool(final(value))
                if record is not None:
                    entry.history = record(entry.history, value)
            entry.looked_at = self.clock()
            return entry
