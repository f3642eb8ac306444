"""Key lists as a source: an S3 Batch Operations CSV, JSON Lines or plain text, in S3 or a local file.

* ``csv``: S3 Batch Operations' manifest, ``bucket,key[,versionId]`` per row, keys URL-encoded
  (``%2F``, ``+`` for a space... as Batch Operations writes them: decoded with ``unquote_plus``).
* ``jsonl``: ``{"bucket": ..., "key": ..., "version_id"?: ...}`` per line (``bucket`` may be left out).
* ``text``: one key per line, exactly as written (no decoding); the bucket is the run's source.

The list is streamed (a line at a time; an S3 object through its body, never read whole). A malformed
row fails the build naming its line. Duplicates (same bucket, key and version) are dropped, each key
kept once: the keys seen are remembered as 16-byte BLAKE2b digests (about 100 bytes of memory per
distinct key), so a list may hold at most ``max_keys`` distinct keys (default 10 million, about 1 GB);
past that the build fails rather than grow without bound. Key lists carry no sizes: each key's
``size`` is 0 (unknown), so batches close by key count and by the child-input budget, never by
object bytes, and the manifest's ``total_bytes`` is 0; no HeadObject is sent per key (a million
HEADs would cost more than the run).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote_plus

from xacct_map.core.s3uri import split_s3_uri

KEY_LIST_FORMATS = ("auto", "csv", "jsonl", "text")
DEFAULT_MAX_KEYS = 10_000_000
_MAX_KEY_BYTES = 1024


class KeyListError(ValueError):
    """A key list that cannot be read: the message names the list, the line and what is wrong."""


class _BadRow(ValueError):
    """A malformed row; :func:`iter_key_list` adds the list's name."""


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs a setattr call per field, per key
class ListedKey:
    """One key of a key list: duck-typed like :class:`~xacct_map.core.listing.S3Object`, plus its bucket and
    version. ``size`` is 0 (not known), ``etag`` and ``last_modified`` empty."""

    key: str
    bucket: str
    version_id: str | None = None
    size: int = 0
    etag: str = ""
    last_modified: str = ""
    storage_class: str = "STANDARD"


def key_list_format(location: str, fmt: str = "auto") -> str:
    """The format of ``location``: as given, or from its suffix (``.csv``, ``.jsonl``/``.ndjson``, else text)."""
    if fmt not in KEY_LIST_FORMATS:
        raise KeyListError(f"key list format {fmt!r} is not one of {', '.join(KEY_LIST_FORMATS)}")
    if fmt != "auto":
        return fmt
    lower = location.lower()
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    return "text"


class _BodyRaw(io.RawIOBase):
    """A botocore streaming body as a raw stream, so the text layer reads it in chunks."""

    def __init__(self, body):
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def open_key_list(location: str, client=None, *, expected_bucket_owner: str | None = None) -> io.TextIOBase:
    """``location`` (``s3://bucket/key`` read with ``client``, or a local path) as streamed UTF-8 text."""
    if location.startswith("s3://"):
        bucket, key = split_s3_uri(location, what="keys_from", key_required=True)
        if client is None:
            raise KeyListError(f"keys_from {location}: no S3 client to read it with")
        owner = {"ExpectedBucketOwner": expected_bucket_owner} if expected_bucket_owner else {}
        body = client.get_object(Bucket=bucket, Key=key, **owner)["Body"]
        return io.TextIOWrapper(io.BufferedReader(_BodyRaw(body)), encoding="utf-8-sig", newline="")
    try:
        return open(Path(location), encoding="utf-8-sig", newline="")  # noqa: SIM115 - the caller closes it
    except OSError as err:
        raise KeyListError(f"keys_from {location}: cannot open it: {err.strerror}") from err


def iter_key_list(
    stream: io.TextIOBase,
    *,
    fmt: str,
    default_bucket: str | None,
    location: str = "key list",
    max_keys: int = DEFAULT_MAX_KEYS,
    stats: dict | None = None,
    versions: bool = True,
) -> Iterator[ListedKey]:
    """Each distinct key of ``stream`` once, in list order; ``stats`` gets ``rows`` and ``duplicates``.

    :param versions: keep the rows' versions (a key is then distinct per version); False drops them, so
        a key listed with two versions is one key (read at its current version).

    :raises KeyListError: a malformed row (its line number), a key over 1,024 bytes, no bucket for a
        key, more than ``max_keys`` distinct keys, or bytes that are not UTF-8.
    """
    stats = stats if stats is not None else {}
    stats.update(rows=0, duplicates=0)
    seen: set[bytes] = set()
    rows = {"csv": _csv_rows, "jsonl": _jsonl_rows, "text": _text_rows}[fmt]
    try:
        for line, bucket, key, version in rows(stream):
            bucket = bucket or default_bucket
            if not bucket:
                raise KeyListError(
                    f"{location} line {line}: no bucket for key {key[:80]!r}: give the list's bucket as the source"
                )
            # At most 4 UTF-8 bytes a character: only a key of over 256 characters needs encoding to check.
            if not key or (len(key) > _MAX_KEY_BYTES // 4 and len(key.encode()) > _MAX_KEY_BYTES):
                problem = "an empty key" if not key else "a key over 1,024 bytes"
                raise KeyListError(f"{location} line {line}: {problem}")
            stats["rows"] += 1
            version = version if versions else None
            digest = hashlib.blake2b(f"{bucket}\0{key}\0{version or ''}".encode(), digest_size=16).digest()
            if digest in seen:
                stats["duplicates"] += 1
                continue
            if len(seen) >= max_keys:
                raise KeyListError(
                    f"{location} line {line}: more than {max_keys:,} distinct keys; split the list into several "
                    "runs (each key is remembered to drop duplicates: about 100 bytes each)"
                )
            seen.add(digest)
            yield ListedKey(key, bucket, version or None)
    except _BadRow as err:
        raise KeyListError(f"{location} {err}") from err
    except UnicodeDecodeError as err:
        raise KeyListError(f"{location}: not UTF-8 text ({err.reason} at byte {err.start} of a chunk)") from err
    finally:
        stream.close()


def _csv_rows(stream) -> Iterator[tuple[int, str, str, str | None]]:
    reader = csv.reader(stream, strict=True)
    try:
        for row in reader:
            if not row or row == [""]:
                continue
            if len(row) not in (2, 3) or not row[0]:
                raise _BadRow(
                    f"line {reader.line_num}: {len(row)} fields {row[:4]!r}; a Batch Operations CSV row is "
                    "bucket,key[,versionId] with the key URL-encoded"
                )
            key = row[1]
            if "%" in key or "+" in key:  # most keys need no decoding: skip the call
                key = unquote_plus(key)
            yield reader.line_num, row[0], key, (row[2] if len(row) == 3 else None)
    except csv.Error as err:
        raise _BadRow(f"line {reader.line_num}: not CSV ({err})") from err


def _jsonl_rows(stream) -> Iterator[tuple[int, str | None, str, str | None]]:
    for number, text in enumerate(stream, 1):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as err:
            raise _BadRow(f"line {number}: not JSON ({err.msg})") from err
        if not isinstance(row, dict) or not isinstance(row.get("key"), str):
            raise _BadRow(f'line {number}: expected {{"bucket", "key", "version_id"?}}, got {text[:120]!r}')
        bucket, version = row.get("bucket"), row.get("version_id")
        if not isinstance(bucket, (str, type(None))) or not isinstance(version, (str, type(None))):
            raise _BadRow(f"line {number}: bucket and version_id must be text, got {text[:120]!r}")
        yield number, bucket, row["key"], version


def _text_rows(stream) -> Iterator[tuple[int, None, str, None]]:
    for number, text in enumerate(stream, 1):
        key = text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text
        if key:
            yield number, None, key, None
