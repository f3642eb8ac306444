"""Manifest layouts (what one Map item is) and formats (how items are written as bytes).

The pure core: no S3, no Airflow. :mod:`xacct_map.core.manifest` streams the bytes an encoder makes
through a multipart upload.

Layouts:

* ``batched`` (default): one item per *batch* of keys, closed by a key count and by object bytes,
  ``{"bucket": "src", "keys": ["a", "b"], "bytes": 123}``. Runs ``asl/distributed_map.asl.json``
  (no ItemBatcher: works on AWS and in the local emulator).
* ``flat``: one item per object, ``{"Bucket", "Key", "Size", "ETag", "LastModified"}``, for
  ``asl/distributed_map_flat.asl.json``, whose ItemBatcher groups items at run time (by item count
  and input bytes, never by object bytes).
* ``keys``: the bare key strings, ``["a", "b"]`` (the original manifest of the design seed).

Formats: ``json`` (a JSON array), ``jsonl`` (one JSON value per line) and ``csv`` (flat layout
only; a header row, then one row per object). Which layout takes which format: :data:`FORMATS`.

CSV follows the rules Step Functions' ItemReader uses to parse CSV: every field is enclosed in
double quotes, so commas, newlines (LF and CR) and any other control character inside a key stay
in the field; a double quote is written twice (``""``) and a backslash twice (``\\\\``), because
Step Functions also treats the backslash as an escape character. Python reads it back exactly with
``csv.reader(f, escapechar="\\\\", doublequote=True, strict=True)`` (:func:`read_csv_rows`).
Every S3 key (any UTF-8) therefore round-trips: nothing is refused.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any

LAYOUTS = ("batched", "flat", "keys")
FORMATS: dict[str, tuple[str, ...]] = {
    "batched": ("json", "jsonl"),
    "flat": ("json", "jsonl", "csv"),
    "keys": ("json", "jsonl"),
}
FLAT_FIELDS = ("Bucket", "Key", "Size", "ETag", "LastModified")
CONTENT_TYPES = {"json": "application/json", "jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
# Step Functions' limit on one state's (and so one child execution's) input, in UTF-8 bytes of its
# JSON; also the most ItemBatcher's MaxInputBytesPerBatch may be.
MAX_CHILD_INPUT_BYTES = 256 * 1024
MAX_INPUT_BYTES_PER_BATCH = MAX_CHILD_INPUT_BYTES
# The default budget for one child's input: 16 KiB of headroom under the hard limit.
DEFAULT_MAX_BATCH_BYTES = 240 * 1024
# The smallest budget accepted: a batch of one key (at most 1,024 UTF-8 bytes) plus its source block.
MIN_MAX_BATCH_BYTES = 4 * 1024
# Placeholders for a source account / Region not known when the manifest is written: the budget then
# reserves room for the longest values the start operator may add (12 digits; a 32-character Region).
_ACCOUNT_PLACEHOLDER = "0" * 12
_REGION_PLACEHOLDER = "x" * 32


def check_layout(layout: str, fmt: str) -> None:
    """Raise ``ValueError`` (saying what is possible) for an unknown layout or an unsupported pair."""
    if layout not in FORMATS:
        raise ValueError(f"layout {layout!r} is not one of {', '.join(LAYOUTS)}")
    if fmt not in FORMATS[layout]:
        raise ValueError(
            f"format {fmt!r} is not available for the {layout!r} layout: choose one of "
            f"{', '.join(FORMATS[layout])}" + (" (CSV needs the flat layout)" if fmt == "csv" else "")
        )


def _json(value) -> bytes:
    # ensure_ascii=False writes non-ASCII keys as UTF-8 (an emoji is 4 bytes, not a 12-byte
    # surrogate-pair escape): the bytes Step Functions counts. Control characters are still escaped.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def json_bytes(value) -> int:
    """UTF-8 bytes of ``value`` as compact JSON: how Step Functions measures a state's input."""
    return len(_json(value))


def source_block(
    bucket: str,
    prefix: str = "",
    account_id: str | None = None,
    region: str | None = None,
    request_payer: str | None = None,
    *,
    sources: list[dict] | None = None,
    on_changed: str | None = None,
) -> dict:
    """The ``source`` block of the execution input, which the batched ASL's ``ItemSelector`` adds to
    every child's input (see ``build_execution_input`` in :mod:`xacct_map.operators`); a Requester
    Pays source adds ``request_payer`` (the processor sends it on its reads).

    :param sources: several sources: ``[{"bucket", "account_id", "region"}]``, one per bucket
        (:func:`xacct_map.core.sources.source_table`): the processor reads each item's bucket as its entry says.
    :param on_changed: the items are pinned (a version or ETag per key): what the processor does with an
        object changed or deleted since the listing (``fail``, ``skip``, ``current``).
    """
    block: dict = {"bucket": bucket, "prefix": prefix, "account_id": account_id, "region": region}
    if request_payer:
        block["request_payer"] = request_payer
    if sources:
        block["sources"] = [dict(entry) for entry in sources]
    if on_changed:
        block["on_changed"] = on_changed
    return block


def source_block_bytes(block: dict) -> int:
    """Bytes the ``source`` block (:func:`source_block`'s) adds to a child's input (``,"source":{...}``),
    reserving room for an account id or Region still unknown (the start operator may add them, or a
    source not listed yet)."""
    filled = {
        **block,
        "account_id": block.get("account_id") or _ACCOUNT_PLACEHOLDER,
        "region": block.get("region") or _REGION_PLACEHOLDER,
    }
    if block.get("sources"):
        filled["sources"] = [
            {
                **entry,
                "account_id": entry.get("account_id") or _ACCOUNT_PLACEHOLDER,
                "region": entry.get("region") or _REGION_PLACEHOLDER,
            }
            for entry in block["sources"]
        ]
    return len(b',"source":') + json_bytes(filled)


def check_batch_budget(max_batch_bytes: int, source_bytes: int = 0) -> int:
    """Validate a child-input budget; returns it as an int.

    :param max_batch_bytes: the most UTF-8 bytes one child's input (item plus source block) may take.
    :param source_bytes: what the source block takes (:func:`source_block_bytes`).
    :raises ValueError: below :data:`MIN_MAX_BATCH_BYTES` plus the source block, or above Step
        Functions' :data:`MAX_CHILD_INPUT_BYTES`.
    """
    budget = int(max_batch_bytes)
    low = MIN_MAX_BATCH_BYTES + source_bytes
    if not low <= budget <= MAX_CHILD_INPUT_BYTES:
        raise ValueError(
            f"max_batch_bytes={budget}: a child execution's input must fit Step Functions' limit of "
            f"{MAX_CHILD_INPUT_BYTES} bytes (256 KiB), and room for one key of 1,024 bytes plus the source "
            f"block ({source_bytes} bytes) needs at least {low}: choose a value between {low} and "
            f"{MAX_CHILD_INPUT_BYTES} (default {DEFAULT_MAX_BATCH_BYTES})."
        )
    return budget


class BatchSizer:
    """The exact size of a batched item as a child's input, kept up to date key by key.

    The child's input is the ``ItemSelector`` output ``{"bucket", "keys", "bytes", "source"}``: the
    manifest item as written (:func:`_json`) followed by the source block. Its size is
    ``fixed + sum(key sizes) + commas + digits(bytes)``, so adding a key costs one ``json.dumps``
    of the key, never of the whole batch.
    """

    def __init__(self, source_bucket: str, source_bytes: int = 0):
        # {"bucket":"b","keys":[],"bytes":} ... "}" without the digits of the byte count.
        self.fixed = json_bytes({"bucket": source_bucket, "keys": [], "bytes": 0}) - 1 + source_bytes

    @staticmethod
    def key_bytes(key: str) -> int:
        """Bytes one key takes inside the ``keys`` array (without its comma): ``len + 2`` for printable
        ASCII without ``"`` or ``\\`` (the common case, no ``json.dumps``), else exactly as written."""
        if key.isascii() and key.isprintable() and '"' not in key and "\\" not in key:
            return len(key) + 2
        return json_bytes(key)

    def size(self, key_count: int, key_bytes: int, object_bytes: int) -> int:
        """Bytes of a child input holding ``key_count`` keys of ``key_bytes`` (sum) and ``object_bytes``."""
        return self.fixed + key_bytes + max(key_count - 1, 0) + len(str(object_bytes))


class JsonArrayEncoder:
    """``[\\n item,\\n item\\n]\\n``: byte-identical to the manifests written before formats existed."""

    def __init__(self):
        self._items = 0

    def header(self) -> bytes:
        return b"["

    def item(self, value) -> bytes:
        separator = b",\n" if self._items else b"\n"
        self._items += 1
        return separator + _json(value)

    def footer(self) -> bytes:
        return b"\n]\n"


class JsonLinesEncoder:
    """One compact JSON value per line (no newline can occur inside one: JSON escapes it)."""

    def header(self) -> bytes:
        return b""

    def item(self, value) -> bytes:
        return _json(value) + b"\n"

    def footer(self) -> bytes:
        return b""


def csv_field(value) -> str:
    """One CSV field, quoted the way Step Functions' CSV reader unquotes it."""
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '""') + '"'


class CsvEncoder:
    """A header row of ``columns`` then one row per item (a dict with those keys)."""

    def __init__(self, columns: tuple[str, ...] = FLAT_FIELDS):
        self.columns = columns

    def header(self) -> bytes:
        return self._row(self.columns)

    def item(self, value: dict) -> bytes:
        return self._row([value[c] for c in self.columns])

    def footer(self) -> bytes:
        return b""

    @staticmethod
    def _row(values) -> bytes:
        return (",".join(csv_field(v) for v in values) + "\n").encode()


def encoder_for(fmt: str):
    """A fresh encoder for ``fmt`` (``json``, ``jsonl`` or ``csv``)."""
    if fmt == "json":
        return JsonArrayEncoder()
    if fmt == "jsonl":
        return JsonLinesEncoder()
    if fmt == "csv":
        return CsvEncoder()
    raise ValueError(f"format {fmt!r} is not one of json, jsonl, csv")


def flat_item(source_bucket: str, obj) -> dict:
    """The flat layout's item for one :class:`~xacct_map.core.listing.S3Object`."""
    return {
        "Bucket": source_bucket,
        "Key": obj.key,
        "Size": obj.size,
        "ETag": obj.etag,
        "LastModified": obj.last_modified,
    }


def read_csv_rows(data: bytes | str) -> list[dict]:
    """Parse a flat CSV manifest back into dicts (``Size`` as int): the exact inverse of :class:`CsvEncoder`."""
    text = data.decode() if isinstance(data, bytes) else data
    nul = None
    if sys.version_info < (3, 11) and "\0" in text:  # Python 3.10's csv reader refuses NUL: swap in a stand-in
        nul = next(c for c in map(chr, range(0xE000, 0x110000)) if c not in text)
        text = text.replace("\0", nul)
    reader = csv.reader(io.StringIO(text, newline=""), escapechar="\\", doublequote=True, strict=True)
    header = next(reader)
    rows = []
    for values in reader:
        if nul:
            values = [v.replace(nul, "\0") for v in values]
        row: dict[str, Any] = dict(zip(header, values, strict=True))
        if "Size" in row:
            row["Size"] = int(row["Size"])
        rows.append(row)
    return rows


def read_items(data: bytes, fmt: str) -> list:
    """The items of a manifest body in ``fmt``: for tests, tools and the CLI's self-checks."""
    if fmt == "json":
        return json.loads(data)
    if fmt == "jsonl":
        return [json.loads(line) for line in data.decode().split("\n") if line]
    if fmt == "csv":
        return read_csv_rows(data)
    raise ValueError(f"format {fmt!r} is not one of json, jsonl, csv")


def keys_of(items: Iterable, layout: str) -> Iterator[str]:
    """Every key a manifest's items name, in manifest order."""
    for item in items:
        if layout == "batched":  # a pinned key is [key, version or ETag]
            yield from (key if isinstance(key, str) else key[0] for key in item["keys"])
        elif layout == "flat":
            yield item["Key"]
        else:
            yield item


def flat_reader_config(fmt: str) -> dict:
    """The ItemReader ``ReaderConfig`` that reads a flat manifest in ``fmt``."""
    if fmt == "json":
        return {"InputType": "JSON"}
    if fmt == "jsonl":
        return {"InputType": "JSONL"}
    if fmt == "csv":
        return {"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW", "CSVDelimiter": "COMMA"}
    raise ValueError(f"format {fmt!r} is not one of json, jsonl, csv")


def flat_substitutions(
    *,
    manifest_format: str = "json",
    max_items_per_batch: int = 100,
    max_input_bytes_per_batch: int = DEFAULT_MAX_BATCH_BYTES,
) -> dict:
    """Placeholder values specific to ``asl/distributed_map_flat.asl.json`` (the others are the
    same as the batched definition's: function ARN, concurrency, tolerance, results location).

    ``MaxInputBytesPerBatch`` defaults to the batched layout's child-input budget,
    :data:`DEFAULT_MAX_BATCH_BYTES`, so ItemBatcher closes a batch with the same headroom under the
    256 KiB limit."""
    if not 1 <= int(max_items_per_batch):
        raise ValueError(f"max_items_per_batch must be at least 1, not {max_items_per_batch}")
    if not 1 <= int(max_input_bytes_per_batch) <= MAX_INPUT_BYTES_PER_BATCH:
        raise ValueError(
            f"max_input_bytes_per_batch must be between 1 and {MAX_INPUT_BYTES_PER_BATCH} "
            f"(Step Functions' limit), not {max_input_bytes_per_batch}"
        )
    return {
        "ReaderConfig": flat_reader_config(manifest_format),
        "MaxItemsPerBatch": int(max_items_per_batch),
        "MaxInputBytesPerBatch": int(max_input_bytes_per_batch),
    }
