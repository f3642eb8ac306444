"""Which listed objects go into the manifest: suffix, glob pattern, size, storage class, LastModified.

The pure core: an :class:`ObjectFilter` wraps any stream of :class:`~xacct_map.core.listing.S3Object`
(from a listing or an S3 Inventory) and counts what each filter skipped.

Rules (each filter that is set must pass; within one filter any value may match):

* ``suffixes``: the key ends with one of them (case-sensitive).
* ``patterns``: :func:`fnmatch.fnmatchcase` glob patterns (``*``, ``?``, ``[seq]``; case-sensitive;
  ``*`` also matches ``/``). ``pattern_base="key"`` (default) matches the whole key;
  ``"relative"`` matches the part of the key after the listed prefix (``data/2026/a.csv`` listed
  under ``data/`` is matched as ``2026/a.csv``).
* ``min_size`` / ``max_size``: object bytes, both bounds inclusive.
* storage class: ``storage_classes`` lists the classes to keep, exactly. Without it, every class
  is kept except GLACIER and DEEP_ARCHIVE (objects there must be restored before they can be read:
  a Map Run over them would only fail), unless ``include_archived=True``. GLACIER_IR (Instant
  Retrieval) needs no restore and is kept. Objects of INTELLIGENT_TIERING in an opt-in archive
  tier also need a restore; a listing cannot tell, so they are kept.
* ``modified_after`` (inclusive) / ``modified_before`` (exclusive): timezone-aware datetimes or
  ISO-8601 text with an offset; ``modified_after <= LastModified < modified_before``. This is how
  an incremental run selects the objects of its data interval (:func:`resolve_listing_mode`).

An object that fails several filters is counted once, under the first that fails, in this order:
storage_class, size, suffix, pattern, modified.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fnmatch import fnmatchcase
from itertools import islice
from operator import attrgetter

from xacct_map.core.timestamps import iso_or_none

#: Every storage class ListObjectsV2 reports.
STORAGE_CLASSES = (
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "DEEP_ARCHIVE",
    "GLACIER_IR",
    "OUTPOSTS",
    "SNOW",
    "EXPRESS_ONEZONE",
)
# Storage classes whose objects must be restored (RestoreObject) before GetObject works.
ARCHIVED_STORAGE_CLASSES = ("DEEP_ARCHIVE", "GLACIER")
_CHUNK = 1024  # objects filtered at a time when only the storage class decides
_STORAGE_CLASS = attrgetter("storage_class")
FILTER_NAMES = ("storage_class", "size", "suffix", "pattern", "modified")
PATTERN_BASES = ("key", "relative")


if sys.version_info >= (3, 11):
    fromisoformat = datetime.fromisoformat
else:  # Python 3.10's fromisoformat refuses the "Z" suffix (S3's LastModified ends with it)

    def fromisoformat(text: str) -> datetime:
        return datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text)


def strings(value: Iterable[str] | None, *, name: str) -> tuple[str, ...]:
    """A tuple of the non-empty strings of a list (or tuple, or set); ``None`` means none.

    Text is refused, not split: ``".csv"`` would otherwise mean the suffixes ``.``, ``c``, ``s``, ``v``.
    """
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)):
        raise ValueError(f"{name} must be a list of strings, not {type(value).__name__} {value!r}")
    if not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name}: every value must be a string, got {value!r}")
    return tuple(v for v in value if v)


def optional_size(value: int | None, *, name: str) -> int | None:
    """A number of bytes (``int``, at least 0), or ``None``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer number of bytes, not {type(value).__name__} {value!r}")
    if value < 0:
        raise ValueError(f"{name} must not be negative, not {value}")
    return value


def parse_datetime(value: datetime | str | None, *, name: str) -> datetime | None:
    """A timezone-aware datetime from a datetime or ISO-8601 text (a Variable, a CLI flag); None for
    ``None`` or empty text.

    A naive value is refused: a window without a time zone would silently shift by the worker's offset.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        try:
            value = fromisoformat(value.strip())
        except ValueError as err:
            raise ValueError(f"{name}={value!r} is not an ISO-8601 date-time (e.g. 2026-11-26T00:00:00+00:00)") from err
    if not isinstance(value, datetime):
        raise ValueError(f"{name} must be a datetime or ISO-8601 text, not {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"{name}={value.isoformat()} has no time zone: give an offset (e.g. +00:00 or Z) so the "
            "window means the same instant everywhere"
        )
    return value


def parse_last_modified(text: str, key: str = "") -> datetime:
    """S3's LastModified text (``2026-01-01T00:00:00.000Z``) as an aware datetime."""
    try:
        value = fromisoformat(text)
    except (TypeError, ValueError) as err:
        raise ValueError(f"object {key!r} has no readable LastModified ({text!r})") from err
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


#: The user-facing filters: ObjectFilter's arguments that select objects (``prefix`` and
#: ``listing_mode`` are set by whoever lists; the counters by :meth:`ObjectFilter.apply`).
FILTER_ARGUMENTS = (
    "suffixes",
    "patterns",
    "pattern_base",
    "min_size",
    "max_size",
    "storage_classes",
    "include_archived",
    "modified_after",
    "modified_before",
)


@dataclass
class ObjectFilter:
    """Select objects; :meth:`apply` filters a stream and counts what was skipped, per filter.

    Takes native values: lists (or tuples) of strings, ints, a bool; the LastModified bounds as
    timezone-aware datetimes or ISO-8601 text. A value of the wrong type raises ``ValueError``.

    :param suffixes: keep keys ending with one of these.
    :param patterns: keep keys matching one of these fnmatch patterns.
    :param pattern_base: ``"key"`` (the whole key) or ``"relative"`` (the part after ``prefix``).
    :param prefix: the prefix the objects were listed under (for ``pattern_base="relative"``).
    :param min_size: keep objects of at least this many bytes.
    :param max_size: keep objects of at most this many bytes.
    :param storage_classes: keep exactly these storage classes (default: all but the archived ones).
    :param include_archived: keep GLACIER and DEEP_ARCHIVE objects too.
    :param modified_after: keep objects with LastModified at or after this.
    :param modified_before: keep objects with LastModified before this.
    :param listing_mode: the listing mode that produced the window (recorded in :meth:`as_dict`).
    :raises ValueError: a value of the wrong type or out of range.
    """

    suffixes: Sequence[str] = ()
    patterns: Sequence[str] = ()
    pattern_base: str = "key"
    prefix: str = ""
    min_size: int | None = None
    max_size: int | None = None
    storage_classes: Sequence[str] | None = None
    include_archived: bool = False
    # ISO-8601 text is accepted too (a Variable, a CLI flag) and parsed in __post_init__.
    modified_after: datetime | None = None
    modified_before: datetime | None = None
    listing_mode: str | None = None
    skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FILTER_NAMES, 0))
    seen: int = 0
    kept: int = 0

    def __post_init__(self) -> None:
        self.suffixes = strings(self.suffixes, name="suffixes")
        self.patterns = strings(self.patterns, name="patterns")
        if self.pattern_base not in PATTERN_BASES:
            raise ValueError(f"pattern_base {self.pattern_base!r} is not one of {', '.join(PATTERN_BASES)}")
        self.min_size = optional_size(self.min_size, name="min_size")
        self.max_size = optional_size(self.max_size, name="max_size")
        if self.min_size is not None and self.max_size is not None and self.min_size > self.max_size:
            raise ValueError(
                f"min_size ({self.min_size}) is larger than max_size ({self.max_size}): nothing could match"
            )
        if self.storage_classes is not None:
            classes = strings(self.storage_classes, name="storage_classes")
            self.storage_classes = tuple(c.upper() for c in classes) or None
        if not isinstance(self.include_archived, bool):
            raise ValueError(f"include_archived must be True or False, not {self.include_archived!r}")
        self.modified_after = parse_datetime(self.modified_after, name="modified_after")
        self.modified_before = parse_datetime(self.modified_before, name="modified_before")
        after, before = self.modified_after, self.modified_before
        if after is not None and before is not None and after > before:
            raise ValueError(
                f"modified_after ({after.isoformat()}) is later than modified_before ({before.isoformat()}): "
                "nothing could match; swap them"
            )

    @property
    def skipped_storage_classes(self) -> tuple[str, ...]:
        """Classes skipped when no explicit ``storage_classes`` list is given."""
        if self.storage_classes is not None or self.include_archived:
            return ()
        return ARCHIVED_STORAGE_CLASSES

    def _class_reason(self, storage_class: str | None) -> str | None:
        """``"storage_class"`` if objects of this class are skipped, else None."""
        cls = (storage_class or "STANDARD").upper()
        if self.storage_classes is not None:
            if cls not in self.storage_classes:
                return "storage_class"
        elif not self.include_archived and cls in ARCHIVED_STORAGE_CLASSES:
            return "storage_class"
        return None

    def _reason(self, obj) -> str | None:
        """The first filter ``obj`` fails, or None if it is kept."""
        if self._class_reason(obj.storage_class) is not None:
            return "storage_class"
        if (self.min_size is not None and obj.size < self.min_size) or (
            self.max_size is not None and obj.size > self.max_size
        ):
            return "size"
        if self.suffixes and not obj.key.endswith(self.suffixes):
            return "suffix"
        if self.patterns:
            name = obj.key
            if self.pattern_base == "relative" and name.startswith(self.prefix):
                name = name[len(self.prefix) :]
            if not any(fnmatchcase(name, p) for p in self.patterns):
                return "pattern"
        if self.modified_after is not None or self.modified_before is not None:
            modified = parse_last_modified(obj.last_modified, obj.key)
            if (self.modified_after is not None and modified < self.modified_after) or (
                self.modified_before is not None and modified >= self.modified_before
            ):
                return "modified"
        return None

    def matches(self, obj) -> bool:
        """Whether ``obj`` passes every filter (counts nothing)."""
        return self._reason(obj) is None

    def apply(self, objects: Iterable) -> Iterator:
        """Yield the objects that pass, counting ``seen``, ``kept`` and ``skipped[filter]``."""
        if self._by_class_only():
            yield from self._apply_by_class(objects)
            return
        skipped = self.skipped
        for obj in objects:
            self.seen += 1
            reason = self._reason(obj)
            if reason is None:
                self.kept += 1
                yield obj
            else:
                skipped[reason] += 1

    @property
    def uses_dates(self) -> bool:
        """Whether a filter reads ``last_modified``."""
        return self.modified_after is not None or self.modified_before is not None

    def _by_class_only(self) -> bool:
        """Whether only the storage class decides (the default: archived classes skipped)."""
        return not (
            self.suffixes
            or self.patterns
            or self.min_size is not None
            or self.max_size is not None
            or self.modified_after is not None
            or self.modified_before is not None
        )

    def _apply_by_class(self, objects: Iterable) -> Iterator:
        """:meth:`apply` when only the storage class decides: a chunk at a time, one verdict per class
        value (a listing has a handful); a chunk of kept classes only (the usual) passes whole."""
        verdicts: dict = {}
        skipped = self.skipped
        objects = iter(objects)
        while chunk := list(islice(objects, _CHUNK)):
            self.seen += len(chunk)
            classes = set(map(_STORAGE_CLASS, chunk))
            for cls in classes.difference(verdicts):
                verdicts[cls] = self._class_reason(cls) is None
            if not all(map(verdicts.__getitem__, classes)):
                kept = [obj for obj in chunk if verdicts[obj.storage_class]]
                skipped["storage_class"] += len(chunk) - len(kept)
                chunk = kept
            self.kept += len(chunk)
            yield from chunk

    def as_dict(self) -> dict:
        """The filters applied, JSON-ready (for the manifest metadata and XCom)."""
        return {
            "suffixes": list(self.suffixes),
            "patterns": list(self.patterns),
            "pattern_base": self.pattern_base,
            "min_size": self.min_size,
            "max_size": self.max_size,
            "storage_classes": list(self.storage_classes) if self.storage_classes is not None else None,
            "include_archived": self.include_archived,
            "skipped_storage_classes": list(self.skipped_storage_classes),
            "modified_after": iso_or_none(self.modified_after),
            "modified_before": iso_or_none(self.modified_before),
            "listing_mode": self.listing_mode,
        }

    def counts(self) -> dict:
        """``{"seen", "kept", "skipped": {filter: count}}``."""
        return {"seen": self.seen, "kept": self.kept, "skipped": dict(self.skipped)}


LISTING_MODES = ("auto", "full", "incremental")
# Run types whose data interval is "new data since the last run" (Airflow's DagRunType values).
_INTERVAL_RUN_TYPES = ("scheduled", "backfill")


def resolve_listing_mode(
    mode: str,
    *,
    run_type: str | None,
    interval_start: datetime | None,
    interval_end: datetime | None,
    modified_after: datetime | None = None,
    modified_before: datetime | None = None,
    previous_success_end: Callable[[], datetime | None] | None = None,
) -> tuple[str, datetime | None, datetime | None]:
    """``(mode used, modified_after, modified_before)`` for a run.

    * ``"full"``: every object (the explicit window, if any, still applies);
    * ``"incremental"``: only objects modified in the run's data interval,
      ``interval_start <= LastModified < interval_end``, intersected with any explicit window;
    * ``"auto"``: incremental for scheduled and backfill runs, full for manual (and other) runs.

    :param previous_success_end: returns the previous successful run's ``data_interval_end`` (asked
        only when incremental): when it is earlier, the window opens there, so the objects of runs
        that failed or never ran (scheduler down, catchup off) are not lost.
    :raises ValueError: unknown mode, or incremental without a data interval.
    """
    if mode not in LISTING_MODES:
        raise ValueError(f"listing_mode {mode!r} is not one of {', '.join(LISTING_MODES)}")
    if mode == "auto":
        mode = "incremental" if (run_type or "") in _INTERVAL_RUN_TYPES else "full"
    if mode == "full":
        return mode, modified_after, modified_before
    start = parse_datetime(interval_start, name="data_interval_start")
    end = parse_datetime(interval_end, name="data_interval_end")
    if start is None or end is None:
        raise ValueError(
            "listing_mode 'incremental' needs the run's data interval, and this run has none "
            f"(run type {run_type!r}): use listing_mode 'full', or give modified_after/modified_before."
        )
    previous = previous_success_end() if previous_success_end is not None else None
    if previous is not None and previous < start:
        start = previous
    after = max(start, modified_after) if modified_after is not None else start
    before = min(end, modified_before) if modified_before is not None else end
    return mode, after, before
