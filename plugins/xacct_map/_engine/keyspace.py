"""Where to cut a range of S3 keys so that parallel listings get similar shares.

S3 gives no key counts, only sorted pages. After a page, what is known is its first and last key
and the range still to list, ``(last, hi]``. This module maps keys to integers with a mixed radix
learned from the keys seen so far (per position, the characters that occur there, widened to their
class: a digit means any digit) so that arithmetic between keys is meaningful for common layouts
(counters, dates, hashes), and cuts ``(last, hi]`` into equal-looking parts.

Only performance depends on these guesses: a range split at *any* string strictly inside it is
still listed exactly once, and the caller checks that every cut is strictly inside.
"""

from __future__ import annotations

import os
from bisect import bisect_right

_DIGITS = "0123456789"
_LOWER = "abcdefghijklmnopqrstuvwxyz"
_UPPER = _LOWER.upper()
MAX_DEPTH = 1024  # S3 keys are at most 1024 bytes


class KeySpace:
    """A learned, order-preserving map between keys and integers."""

    def __init__(self) -> None:
        self._seen: list[set[str]] = []
        self._alphabets: list[str] = []
        self._version = 0  # changes with the alphabets (values worked out before are stale)
        self._widths: dict[tuple, int] = {}

    def learn(self, keys) -> None:
        """Widen the per-position alphabets with the characters of ``keys``."""
        for key in keys:
            for i, ch in enumerate(key[:MAX_DEPTH]):
                if i == len(self._seen):
                    self._seen.append(set())
                    self._alphabets.append("")
                seen = self._seen[i]
                if ch not in seen:
                    seen.add(ch)
                    self._alphabets[i] = _widen(seen)
                    self._version += 1

    def _alphabet(self, i: int) -> str:
        return self._alphabets[i] if i < len(self._alphabets) else ""

    def value(self, key: str | None, depth: int) -> int:
        """The integer of ``key`` over the first ``depth`` positions; None is the top (past all)."""
        if key is None:
            top = 1
            for i in range(depth):
                top *= len(self._alphabet(i)) + 1
            return top
        v = 0
        for i in range(depth):
            alphabet = self._alphabet(i)
            # rank 0 is "the key has ended" (a shorter key sorts first); unknown characters floor
            rank = bisect_right(alphabet, key[i]) if i < len(key) else 0
            v = v * (len(alphabet) + 1) + rank
        return v

    def key(self, value: int, depth: int) -> str:
        """The key of ``value`` (the inverse of :meth:`value` for keys made of learned characters)."""
        chars: list[str] = []
        for i in reversed(range(depth)):
            alphabet = self._alphabet(i)
            value, rank = divmod(value, len(alphabet) + 1)
            chars.append(alphabet[rank - 1] if rank else "\0")
        text = "".join(reversed(chars))
        end = text.find("\0")
        return text if end < 0 else text[:end]

    def cuts(
        self, first: str, last: str, hi: str | None, parts: int, *, min_pages: int = 4, max_pages: int = 32
    ) -> list[str]:
        """Up to ``parts - 1`` ascending keys cutting ``(last, hi]`` into ``parts`` similar ranges.

        ``first..last`` is the page just listed: its span estimates how much key space a page
        covers: a range expected to hold fewer than ``min_pages`` pages is not cut, and no part
        but the last is made larger than ``max_pages`` (0: no limit). Every
        returned cut ``c`` satisfies ``last < c`` and ``c < hi``.
        """
        if parts < 2:
            return []
        depth = min(MAX_DEPTH, max(len(first), len(last), len(hi or "")) + 2)
        v_first, v_last, v_hi = self.value(first, depth), self.value(last, depth), self.value(hi, depth)
        room = v_hi - v_last
        page = max(v_last - v_first, 1)
        if room < page * min_pages:
            return []
        # (integers throughout: values of long keys are far beyond a float's range)
        # every part should hold a few pages, or its first and last pages are mostly overhead
        if min_pages > 0:
            parts = min(parts, room // (page * min_pages))
        if parts < 2:
            return []
        # ...and at most max_pages as far as this page's density says: the range may be mostly
        # empty space (a date's part numbers end, another date begins), and a near cut is right
        # for a dense run while a far one would land in that emptiness
        step = min(room // parts, page * max_pages) if max_pages > 0 else room // parts
        out: list[str] = []
        prev = last
        for j in range(1, parts):
            cut = self.key(v_last + step * j, depth)
            if cut > prev and (hi is None or cut < hi):
                out.append(cut)
                prev = cut
        return out

    def pages_ahead(
        self, sample: tuple[str, str, int], after: str, hi: str | None, count: int, page_size: int
    ) -> list[str]:
        """Up to ``count`` ascending keys in ``(after, hi)``, each a page further than the last: cuts that
        give the range from ``after`` on one page per part, nearest first.

        ``sample`` is ``(first, last, keys)`` of a page just listed: its span, scaled to
        ``page_size - 1`` gaps, is the width of a part, so a part fits in one request at that density
        (S3 answers with a full page whatever the range: a part holding the page's whole share ends
        in one request). Every returned cut ``c`` satisfies ``after < c`` and ``c < hi``.
        """
        first, last, keys = sample
        if count < 1 or keys < 2:
            return []
        counted = _counter_steps(first, last, keys, after, hi, count, page_size)
        if counted is not None:
            return counted
        depth = min(MAX_DEPTH, max(len(first), len(last), len(after), len(hi or "")) + 2)
        start, top = self.value(after, depth), self.value(hi, depth)
        if top - start < 2:
            return []
        width = self._widths.get((sample, page_size, depth, self._version))
        if width is None:  # the same sample serves many cuts: its width is worked out once
            width = max((self.value(last, depth) - self.value(first, depth)) * (page_size - 1) // (keys - 1), 1)
            self._widths = {(sample, page_size, depth, self._version): width}
        out: list[str] = []
        prev = after
        for j in range(1, count + 1):
            value = start + width * j
            if value >= top:  # past hi (or past every learned value: key() would wrap around)
                break
            cut = self.key(value, depth)
            if cut > prev and (hi is None or cut < hi):
                out.append(cut)
                prev = cut
        return out


def _counter_steps(
    first: str, last: str, keys: int, after: str, hi: str | None, count: int, page_size: int
) -> list[str] | None:
    """:meth:`KeySpace.pages_ahead` for a counter: keys that differ only in one run of decimal digits
    (``part-000005000`` .. ``part-000005999``), stepped in decimal. The learned radix leaves room for
    shorter keys at every position, so its arithmetic makes a counter's parts ~11 % short of a page;
    this makes them exact. None when the sample is not such a counter or ``after`` is not shaped like it."""
    start = len(os.path.commonprefix([first, last]))
    if start == len(first) or len(first) != len(last) or len(after) != len(first):
        return None
    while start and first[start - 1].isdigit():
        start -= 1
    end = start
    while end < len(first) and first[end].isdigit():
        end += 1
    run = slice(start, end)
    if first[end:] != last[end:] or not (first[run].isdigit() and last[run].isdigit() and after[run].isdigit()):
        return None
    if not (first[run].isascii() and last[run].isascii() and after[run].isascii()):
        return None
    width = max((int(last[run]) - int(first[run])) * (page_size - 1) // (keys - 1), 1)
    out: list[str] = []
    base, digits = int(after[run]), end - start
    for j in range(1, count + 1):
        number = base + width * j
        if number >= 10**digits:
            break
        cut = f"{after[:start]}{number:0{digits}d}{after[end:]}"
        if hi is not None and cut >= hi:
            break
        out.append(cut)
    return out


def plan_cuts(keys: list[str], parts: int, exists_after=None, probes: int = 48) -> list[str]:
    """Up to ``parts - 1`` ascending keys cutting the key space from ``keys[0]`` on into similar parts.

    Plans a listing spread over several tasks before any of it runs. ``keys`` are the first keys
    of the listing (ascending). ``exists_after(key) -> bool`` (one ``MaxKeys=1`` request) lets the
    end of the key space be found by bisection in at most ``probes`` calls; without it the cuts
    divide all the space the learned alphabets can express. Only the balance depends on this.
    """
    if parts < 2 or not keys:
        return []
    space = KeySpace()
    space.learn(keys)
    end = _find_end(space, keys[-1], exists_after, probes) if exists_after is not None else None
    return space.cuts(keys[0], keys[0], end, parts, min_pages=0, max_pages=0)


def _find_end(space: KeySpace, last: str, exists_after, probes: int) -> str | None:
    """About the last key of the space (a key at or past it), or None (past all learned values)."""
    depth = min(MAX_DEPTH, len(last) + 2)
    lo, hi = space.value(last, depth), space.value(None, depth)  # a key lies after lo, none after hi
    for _ in range(probes):
        if hi - lo <= 1:
            break
        mid = (lo + hi) // 2
        if exists_after(space.key(mid, depth)):
            lo = mid
        else:
            hi = mid
    top = space.value(None, depth)
    return space.key(hi, depth) if hi < top else None


def _widen(seen: set[str]) -> str:
    """The sorted alphabet for one position: classes fill in (a seen digit means all digits)."""
    chars = set(seen)
    if chars & set(_DIGITS):
        chars.update(_DIGITS)
    if len(chars & set(_LOWER)) > 1:
        chars.update(_LOWER)
    if len(chars & set(_UPPER)) > 1:
        chars.update(_UPPER)
    chars.discard("\0")
    return "".join(sorted(chars))
