"""Example processor: validate and count the records of JSON Lines and CSV objects.

Each object is streamed line by line (never held whole) and decoded as UTF-8:

* ``*.jsonl`` / ``*.ndjson`` (optionally ``.gz``): every non-empty line must be a JSON object;
* ``*.csv`` (optionally ``.gz``): a header row, then rows with exactly as many fields as the header;
* any other key is skipped (result ``{"skipped": "not JSON Lines or CSV"}``).

The per-object result is ``{"format", "records", "fields"}`` (``fields``: the CSV header, or the union
of the JSON objects' keys, at most 50). An object with an invalid record raises ``ValueError`` naming
the first few bad lines, so the batch fails and the Map Run's failed items name the object.

Try it locally on your own sample files::

    xacct-map demo --processor examples/validate_records.py:process --source-dir ./samples
"""

from __future__ import annotations

import csv
import gzip
import io
import json

from xacct_map.processor import S3Object

MAX_FIELDS = 50
ERRORS_SHOWN = 3


def _format(key: str) -> str | None:
    name = key.lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if name.endswith(".csv"):
        return "csv"
    return None


def _text(obj: S3Object, body) -> io.TextIOWrapper:
    raw = gzip.GzipFile(fileobj=body) if obj.key.lower().endswith(".gz") else body
    return io.TextIOWrapper(raw, encoding="utf-8", newline="")


def _jsonl(lines) -> tuple[int, set, list[str]]:
    records, fields, errors = 0, set(), []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
            if not isinstance(value, dict):
                raise ValueError(f"a JSON {type(value).__name__}, not an object")
        except ValueError as err:
            errors.append(f"line {number}: {err}")
            continue
        records += 1
        if len(fields) < MAX_FIELDS:
            fields.update(value)
    return records, fields, errors


def _csv(lines) -> tuple[int, list, list[str]]:
    reader = csv.reader(lines)
    header = next(reader, None) or []
    records, errors = 0, []
    for row in reader:
        if not row:
            continue
        if len(row) != len(header):
            errors.append(f"line {reader.line_num}: {len(row)} fields, the header has {len(header)}")
            continue
        records += 1
    return records, header, errors


def process(obj: S3Object) -> dict:
    """Count the object's valid records; raise naming the first invalid ones."""
    fmt = _format(obj.key)
    if fmt is None:
        return {"skipped": "not JSON Lines or CSV"}
    with obj.open() as body:
        lines = _text(obj, body)
        records, fields, errors = _jsonl(lines) if fmt == "jsonl" else _csv(lines)
    if errors:
        shown = "; ".join(errors[:ERRORS_SHOWN]) + (
            f"; and {len(errors) - ERRORS_SHOWN} more" if len(errors) > ERRORS_SHOWN else ""
        )
        raise ValueError(f"{len(errors)} invalid {fmt} record(s) ({records} valid): {shown}")
    return {"format": fmt, "records": records, "fields": sorted(fields)[:MAX_FIELDS]}
