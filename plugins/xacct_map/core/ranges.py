"""A listing spread over several tasks: key ranges, their manifest names, and one manifest of them all.

A planning step cuts a prefix's keys into ranges ``(start_after, up_to]`` (:func:`key_ranges`, from
the cuts :func:`xacct_map.core.listing.plan_cuts` chooses); one task per range lists exactly its
range and writes its own manifest (:func:`range_manifest_key`, a name fixed by the run and the
range, so a retry overwrites its own and nothing else); :func:`combine_manifests` joins their
summaries into one manifest in parts, which one execution processes part by part.

Every key is in exactly one range: the ranges are contiguous (each one starts after the key the
previous one ends at), the first starts at the prefix's beginning, the last runs to its end.
:func:`check_cover` refuses a set of range manifests that does not add up to that.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from xacct_map.core.build import EmptySourceError, empty_source_reason

#: Most ranges (and listing tasks) of one run: far more than a billion keys need (README).
MAX_RANGES = 1_000


@dataclass(frozen=True)
class KeyRange:
    """The keys ``k`` with ``start_after < k <= up_to`` (``up_to`` None: to the prefix's end):
    range ``index`` (0-based) of ``count``."""

    index: int
    count: int
    start_after: str = ""
    up_to: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count <= MAX_RANGES:
            raise ValueError(f"key range {self.index} of {self.count}: need 0 <= index < count <= {MAX_RANGES}")
        if self.up_to is not None and self.up_to <= self.start_after:
            raise ValueError(
                f"key range {self.index}: up_to {self.up_to!r} is not after start_after {self.start_after!r}"
            )

    @property
    def whole(self) -> bool:
        """The one range of an unsplit listing."""
        return self.count == 1

    def as_dict(self) -> dict:
        return {"index": self.index, "count": self.count, "start_after": self.start_after, "up_to": self.up_to}

    @classmethod
    def from_dict(cls, value: dict) -> KeyRange:
        """The range of a planner's XCom entry.

        :raises ValueError: not such a dict.
        """
        if not isinstance(value, dict) or not {"index", "count"} <= set(value):
            raise ValueError(f"a key range is a dict with index, count, start_after, up_to, not {value!r}")
        return cls(int(value["index"]), int(value["count"]), value.get("start_after") or "", value.get("up_to"))


def key_ranges(cuts: list[str]) -> list[KeyRange]:
    """The contiguous ranges that ascending ``cuts`` make: ``("", c1], (c1, c2], ..., (cN, end]``."""
    bounds = sorted(set(cuts))
    count = len(bounds) + 1
    return [
        KeyRange(i, count, start_after, up_to)
        for i, (start_after, up_to) in enumerate(zip(["", *bounds], [*bounds, None], strict=True))
    ]


def range_manifest_key(key: str, key_range: KeyRange) -> str:
    """The manifest key of one range (1-based in the name): ``manifest.json`` ->
    ``manifest.range-00003.json``; the key itself for an unsplit listing."""
    if key_range.whole:
        return key
    slash, dot = key.rfind("/"), key.rfind(".")
    root, ext = (key[:dot], key[dot:]) if dot > slash + 1 else (key, "")
    return f"{root}.range-{key_range.index + 1:05d}{ext}"


def check_cover(ranges: list[KeyRange]) -> None:
    """``ranges`` (in any order) are exactly one split of the whole key space.

    :raises ValueError: a range is missing or repeated, or two neighbours do not meet.
    """
    ordered = sorted(ranges, key=lambda r: r.index)
    count = ordered[0].count if ordered else 0
    if not ordered or [r.index for r in ordered] != list(range(count)) or {r.count for r in ordered} != {count}:
        raise ValueError(
            f"the range manifests are not one full split: indexes {[r.index for r in ordered]} of "
            f"{sorted({r.count for r in ordered})}; every range must be built once (rebuild the run)"
        )
    ends = ["", *(r.up_to for r in ordered)]
    for r, previous_end in zip(ordered, ends, strict=False):
        if r.start_after != (previous_end or "") or (previous_end is None and r.index):
            raise ValueError(f"key range {r.index} starts after {r.start_after!r}, not where range {r.index - 1} ends")
    if ordered[-1].up_to is not None:
        raise ValueError(f"the last key range ends at {ordered[-1].up_to!r}, not at the prefix's end")


def combine_manifests(summaries: list[dict], *, on_empty: str = "skip") -> dict:
    """One manifest summary of the range manifests ``summaries`` (each with its ``key_range``).

    Its ``parts`` are every range's parts in key order, empty ones left out (unless all are empty
    and ``on_empty="run"``); ``key`` is the first part's; counts and bytes are totals,
    ``largest_item_bytes`` the largest. What :class:`~xacct_map.operators.StartDistributedMapOperator`
    takes as ``manifest``.

    :raises ValueError: the ranges do not cover the key space once, or the manifests disagree.
    :raises EmptySourceError: no range holds an object and ``on_empty`` is not ``run``.
    """
    pairs = sorted(
        ((KeyRange.from_dict((s or {}).get("key_range") or {}), s) for s in summaries), key=lambda p: p[0].index
    )
    check_cover([r for r, _ in pairs])
    ordered = [s for _, s in pairs]
    first = ordered[0]
    for name in ("bucket", "source_bucket", "source_prefix", "layout", "format"):
        if len({s.get(name) for s in ordered}) > 1:
            raise ValueError(f"the range manifests disagree on {name}: {sorted({str(s.get(name)) for s in ordered})}")
    skipped: Counter = Counter()
    for s in ordered:
        skipped.update(s.get("skipped") or {})
    counts = {"seen": sum(s.get("objects_seen", 0) for s in ordered), "skipped": dict(skipped)}
    objects = sum(s["object_count"] for s in ordered)
    if objects == 0 and on_empty != "run":
        description = first.get("source") or {"bucket": first["source_bucket"]}
        reason = empty_source_reason(description, counts, first.get("filters") or {})
        raise EmptySourceError(f"{reason} ({len(ordered)} key ranges)", on_empty=on_empty, counts=counts)
    parts = [p for s in ordered for p in s.get("parts") or [] if p.get("items") or objects == 0]
    parts = parts if objects else parts[:1]
    largest = [s["largest_item_bytes"] for s in ordered if s.get("largest_item_bytes") is not None]
    return {
        **{k: v for k, v in first.items() if k not in ("key_range", "metadata_key", "sha256", "etag")},
        "key": parts[0]["key"] if parts else first["key"],
        "sha256": parts[0].get("sha256") if parts else first.get("sha256"),
        "etag": parts[0].get("etag") if parts else first.get("etag"),
        "object_count": objects,
        "batch_count": sum(s.get("batch_count", 0) for s in ordered),
        "item_count": sum(s.get("item_count", 0) for s in ordered),
        "total_bytes": sum(s.get("total_bytes", 0) for s in ordered),
        "manifest_bytes": sum(p.get("bytes", 0) for p in parts),
        "objects_seen": counts["seen"],
        "skipped": counts["skipped"] or first.get("skipped"),
        "largest_item_bytes": max(largest) if largest else None,
        "parts": parts,
        "part_count": len(parts),
        "key_ranges": [{**r.as_dict(), "objects": s["object_count"], "key": s["key"]} for r, s in pairs],
    }
