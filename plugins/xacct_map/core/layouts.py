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
# Step Functions' ItemBatcher limit on one batch's input (MaxInputBytesPerBatch).
MAX_INPUT_BYTES_PER_BATCH = 256 * 1024


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
    # ensure_ascii=False keeps non-ASCII keys readable; control characters are still escaped.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


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
        if layout == "batched":
            yield from item["keys"]
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
    max_input_bytes_per_batch: int = MAX_INPUT_BYTES_PER_BATCH,
) -> dict:
    """Placeholder values specific to ``asl/distributed_map_flat.asl.json`` (the others are the
    same as the batched definition's: function ARN, concurrency, tolerance, results location)."""
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
