"""S3 Inventory as the source of a manifest: read the newest inventory report instead of listing.

An inventory configuration delivers, to its destination bucket::

    <destination prefix>/<source bucket>/<config id>/<YYYY-MM-DDTHH-MMZ>/manifest.json
    <destination prefix>/<source bucket>/<config id>/data/<uuid>.csv.gz | .parquet | .orc

``manifest.json`` names the source bucket, the file format, the schema and every data file (key,
size, MD5). Give :func:`open_inventory` the configuration's folder
(``s3://<destination bucket>/<destination prefix>/<source bucket>/<config id>``), a timestamp
folder under it, or a ``manifest.json`` itself: for a folder, the newest timestamp folder that
holds a ``manifest.json`` is used. :func:`iter_inventory_objects` then yields the same
:class:`~xacct_map.core.listing.S3Object` stream a listing yields, so the same filters and manifest
writer apply, and the source bucket is never listed.

Formats: CSV (gzip; the ``Key`` column is URL-encoded, with ``+`` for a space, and is decoded
exactly, as UTF-8, refusing malformed escapes), Parquet (keys as they are; needs ``pyarrow``, the
``inventory`` extra) and ORC (refused with an explanation). Only current versions are kept: rows
with ``IsLatest=false`` or ``IsDeleteMarker=true`` (inventories of all versions) are skipped. Every
data file's MD5 is checked against the manifest. ETags are returned quoted, as ListObjectsV2 does.

An inventory is a snapshot (daily or weekly): objects written after it was taken are not in it.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError

from xacct_map.core.errors import requester_pays_hint
from xacct_map.core.listing import S3Object
from xacct_map.core.s3uri import split_s3_uri
from xacct_map.core.timestamps import s3_timestamp

TIMESTAMP_FOLDER = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}Z$")
# Parquet/ORC column names (snake case) for the CSV schema's field names.
PARQUET_COLUMNS = {
    "Bucket": "bucket",
    "Key": "key",
    "Size": "size",
    "LastModifiedDate": "last_modified_date",
    "ETag": "e_tag",
    "StorageClass": "storage_class",
    "IsLatest": "is_latest",
    "IsDeleteMarker": "is_delete_marker",
}


class InventoryError(ValueError):
    """The inventory cannot be used as it is; the message says which object and what to do."""


@dataclass(frozen=True)
class InventoryManifest:
    """One inventory report: its ``manifest.json`` and what it says."""

    bucket: str
    key: str
    source_bucket: str
    file_format: str
    columns: tuple[str, ...]
    files: tuple[dict, ...]
    creation_timestamp: str = ""
    version: str = ""

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def as_dict(self) -> dict:
        return {
            "manifest": self.uri,
            "source_bucket": self.source_bucket,
            "file_format": self.file_format,
            "data_files": len(self.files),
            "creation_timestamp": self.creation_timestamp,
            "version": self.version,
        }


def _owner(expected_bucket_owner: str | None, request_payer: str | None = None) -> dict:
    """The parameters every read sends: ExpectedBucketOwner, and RequestPayer for a Requester Pays bucket."""
    params = {"ExpectedBucketOwner": expected_bucket_owner} if expected_bucket_owner else {}
    return params | ({"RequestPayer": request_payer} if request_payer else {})


def explain_inventory_error(
    err: ClientError, *, bucket: str, key: str, identity: str = "", request_payer: str | None = None
) -> str:
    """A ClientError while reading an inventory, as a message naming the object and what to do."""
    code = err.response.get("Error", {}).get("Code", "")
    who = f" as {identity}" if identity else ""
    if code in ("NoSuchBucket",):
        return f"Inventory bucket {bucket!r} does not exist{who}: check the inventory location (s3://{bucket}/{key})."
    if code in ("NoSuchKey", "404"):
        return f"Inventory object s3://{bucket}/{key} does not exist: the report may have expired or moved."
    if code in ("AccessDenied", "403", "AllAccessDisabled"):
        return (
            f"Access denied reading inventory s3://{bucket}/{key}{who} ({code}): the reader needs "
            f"s3:ListBucket on arn:aws:s3:::{bucket} and s3:GetObject on the report's objects "
            f"(and kms:Decrypt if the inventory is encrypted with SSE-KMS).{requester_pays_hint(request_payer)}"
        )
    message = err.response.get("Error", {}).get("Message", err)
    return f"Reading inventory s3://{bucket}/{key}{who} failed: {code}: {message}"


def find_latest_manifest(
    s3_client, bucket: str, prefix: str, *, expected_bucket_owner: str | None = None, request_payer: str | None = None
) -> str:
    """The key of the inventory ``manifest.json`` that ``s3://bucket/prefix`` designates.

    ``prefix`` is the configuration's folder (the newest ``YYYY-MM-DDTHH-MMZ/`` under it that holds a
    manifest.json wins: a report still being delivered has none yet), a timestamp folder, or the
    manifest.json key itself.
    """
    prefix = prefix.strip("/")
    if prefix.endswith("manifest.json"):
        return prefix
    if TIMESTAMP_FOLDER.match(prefix.rsplit("/", 1)[-1]):
        return f"{prefix}/manifest.json"
    folder = f"{prefix}/" if prefix else ""
    stamps: list[str] = []
    pages = s3_client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=folder, Delimiter="/", **_owner(expected_bucket_owner, request_payer)
    )
    for page in pages:
        for common in page.get("CommonPrefixes", ()):
            name = common["Prefix"][len(folder) :].rstrip("/")
            if TIMESTAMP_FOLDER.match(name):
                stamps.append(name)
    for stamp in sorted(stamps, reverse=True):  # the stamp format sorts chronologically
        key = f"{folder}{stamp}/manifest.json"
        try:
            s3_client.head_object(Bucket=bucket, Key=key, **_owner(expected_bucket_owner, request_payer))
            return key
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise
    raise InventoryError(
        f"No inventory report under s3://{bucket}/{folder}: expected "
        f"{folder}<YYYY-MM-DDTHH-MMZ>/manifest.json. Point at the inventory configuration's folder "
        "(s3://<destination bucket>/<destination prefix>/<source bucket>/<config id>) and check that a "
        "report has been delivered (the first one can take up to 48 hours)."
    )


def read_inventory_manifest(
    s3_client, bucket: str, key: str, *, expected_bucket_owner: str | None = None, request_payer: str | None = None
) -> InventoryManifest:
    """Read and check one ``manifest.json``."""
    body = s3_client.get_object(Bucket=bucket, Key=key, **_owner(expected_bucket_owner, request_payer))["Body"].read()
    try:
        doc = json.loads(body)
        files = tuple(doc["files"])
        file_format = str(doc["fileFormat"]).upper()
        schema = str(doc.get("fileSchema", ""))
    except (ValueError, KeyError, TypeError) as err:
        raise InventoryError(
            f"s3://{bucket}/{key} is not an S3 Inventory manifest.json (needs fileFormat, fileSchema, files): {err}"
        ) from err
    if file_format == "ORC":
        raise InventoryError(
            f"Inventory s3://{bucket}/{key} is in ORC format, which xacct-map does not read: set the inventory "
            "configuration's output format to CSV or Apache Parquet (the next report will use it)."
        )
    if file_format not in ("CSV", "PARQUET"):
        raise InventoryError(f"Inventory s3://{bucket}/{key} has unknown fileFormat {doc['fileFormat']!r}.")
    columns = tuple(c.strip() for c in schema.split(",")) if file_format == "CSV" else ()
    if file_format == "CSV":
        missing = [c for c in ("Key", "Size") if c not in columns]
        if missing:
            raise InventoryError(
                f"Inventory s3://{bucket}/{key} has no {' and no '.join(missing)} column (fileSchema: {schema!r}): "
                "add Size (and Last modified, Storage class, ETag for those filters) to the configuration's "
                "additional fields."
            )
    destination = str(doc.get("destinationBucket", ""))
    return InventoryManifest(
        bucket=destination.rsplit(":", 1)[-1] if destination.startswith("arn:") else bucket,
        key=key,
        source_bucket=str(doc.get("sourceBucket", "")),
        file_format=file_format,
        columns=columns,
        files=files,
        creation_timestamp=str(doc.get("creationTimestamp", "")),
        version=str(doc.get("version", "")),
    )


def open_inventory(
    s3_client, uri: str, *, expected_bucket_owner: str | None = None, request_payer: str | None = None
) -> InventoryManifest:
    """The inventory report ``uri`` designates (see :func:`find_latest_manifest`).

    :param request_payer: ``"requester"`` when the inventory's bucket is Requester Pays.
    """
    bucket, prefix = split_s3_uri(uri, what="inventory location")
    reads = {"expected_bucket_owner": expected_bucket_owner, "request_payer": request_payer}
    key = find_latest_manifest(s3_client, bucket, prefix, **reads)
    manifest = read_inventory_manifest(s3_client, bucket, key, **reads)
    if manifest.bucket != bucket:
        # Data files live in the destination bucket the manifest names; we read from where we found it.
        manifest = InventoryManifest(**{**manifest.__dict__, "bucket": bucket})
    return manifest


class _HashingReader(io.RawIOBase):
    """A read-only stream that hashes (MD5) and counts what passes through it."""

    def __init__(self, raw):
        self._raw = raw
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._raw.read(len(buffer))
        self.md5.update(data)
        self.size += len(data)
        buffer[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        while self.readinto(bytearray(1 << 16)):
            pass


def _check_file(manifest: InventoryManifest, entry: dict, md5: str, size: int) -> None:
    expected = entry.get("MD5checksum")
    if expected and expected.lower() != md5:
        raise InventoryError(
            f"Inventory data file s3://{manifest.bucket}/{entry['key']} has MD5 {md5}, its manifest says "
            f"{expected}: the file is corrupt or was replaced; use another report."
        )
    if entry.get("size") is not None and int(entry["size"]) != size:
        raise InventoryError(
            f"Inventory data file s3://{manifest.bucket}/{entry['key']} has {size} bytes, its manifest says "
            f"{entry['size']}: the file is incomplete or was replaced."
        )


def _quoted_etag(etag: str) -> str:
    # Inventory ETags come bare; ListObjectsV2 quotes them. One form for both sources.
    return etag if not etag or etag.startswith('"') else f'"{etag}"'


def _is_false(value) -> bool:
    return value is False or (isinstance(value, str) and value.strip().lower() == "false")


def _is_true(value) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _iter_csv_file(s3_client, manifest: InventoryManifest, entry: dict, owner: dict, stats: dict) -> Iterator[tuple]:
    body = s3_client.get_object(Bucket=manifest.bucket, Key=entry["key"], **owner)["Body"]
    hashed = _HashingReader(body)
    columns = manifest.columns
    index = {name: i for i, name in enumerate(columns)}
    k, s = index["Key"], index["Size"]
    m, e, c = index.get("LastModifiedDate"), index.get("ETag"), index.get("StorageClass")
    latest, marker = index.get("IsLatest"), index.get("IsDeleteMarker")
    raw = io.BufferedReader(hashed, buffer_size=1 << 16)
    stream = gzip.GzipFile(fileobj=raw) if entry["key"].endswith(".gz") else raw
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
    for number, row in enumerate(csv.reader(text, strict=True), start=1):
        if len(row) != len(columns):
            raise InventoryError(
                f"Inventory data file s3://{manifest.bucket}/{entry['key']} row {number} has {len(row)} fields; "
                f"the manifest's fileSchema has {len(columns)} ({', '.join(columns)})."
            )
        stats["rows"] += 1
        if (latest is not None and _is_false(row[latest])) or (marker is not None and _is_true(row[marker])):
            stats["not_current"] += 1
            continue
        try:
            key = unquote_plus(row[k], encoding="utf-8", errors="strict")
        except UnicodeDecodeError as err:
            raise InventoryError(
                f"Inventory data file s3://{manifest.bucket}/{entry['key']} row {number}: key {row[k]!r} does "
                "not URL-decode to UTF-8."
            ) from err
        yield (
            key,
            int(row[s]),
            row[e] if e is not None else "",
            row[m] if m is not None else "",
            (row[c] if c is not None else "") or "STANDARD",
        )
    text.detach()
    hashed.drain()
    _check_file(manifest, entry, hashed.md5.hexdigest(), hashed.size)


def _iter_parquet_file(
    s3_client, manifest: InventoryManifest, entry: dict, owner: dict, stats: dict
) -> Iterator[tuple]:
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise InventoryError(
            f"Inventory s3://{manifest.bucket}/{manifest.key} is in Parquet format, which needs pyarrow: "
            "install xacct-map with the 'inventory' extra (pip install 'xacct-map[inventory]')."
        ) from err
    # Parquet needs random access: spool the file to disk (not memory), hashing it on the way.
    with tempfile.TemporaryFile() as spool:
        body = s3_client.get_object(Bucket=manifest.bucket, Key=entry["key"], **owner)["Body"]
        md5, size = hashlib.md5(usedforsecurity=False), 0
        for chunk in iter(lambda: body.read(1 << 20), b""):
            md5.update(chunk)
            size += len(chunk)
            spool.write(chunk)
        _check_file(manifest, entry, md5.hexdigest(), size)
        spool.seek(0)
        parquet = pq.ParquetFile(spool)
        present = set(parquet.schema_arrow.names)
        missing = [c for c in ("key", "size") if c not in present]
        if missing:
            raise InventoryError(
                f"Inventory data file s3://{manifest.bucket}/{entry['key']} has no {' and no '.join(missing)} "
                "column: add Size to the inventory configuration's additional fields."
            )
        wanted = [c for c in PARQUET_COLUMNS.values() if c in present]
        for batch in parquet.iter_batches(columns=wanted, batch_size=10_000):
            data = batch.to_pydict()
            n = batch.num_rows
            none = [None] * n
            keys, sizes = data["key"], data["size"]
            etags, modified = data.get("e_tag", none), data.get("last_modified_date", none)
            classes = data.get("storage_class", none)
            latest, marker = data.get("is_latest", none), data.get("is_delete_marker", none)
            for i in range(n):
                stats["rows"] += 1
                if latest[i] is False or marker[i] is True:
                    stats["not_current"] += 1
                    continue
                yield (keys[i], int(sizes[i]), etags[i] or "", s3_timestamp(modified[i]), classes[i] or "STANDARD")


def iter_inventory_objects(
    s3_client,
    manifest: InventoryManifest,
    *,
    prefix: str = "",
    expected_bucket_owner: str | None = None,
    request_payer: str | None = None,
    stats: dict | None = None,
) -> Iterator[S3Object]:
    """Yield every current object of the report whose key starts with ``prefix``.

    Data files are read one at a time, streamed (CSV) or spooled to a temporary file (Parquet), so
    memory stays flat. ``stats`` (optional) is filled with ``files``, ``rows``, ``not_current``,
    ``outside_prefix`` and ``objects`` counts.

    :raises InventoryError: a malformed or corrupt report (naming the file and row).
    :raises botocore.exceptions.ClientError: S3 refused a read (see :func:`explain_inventory_error`).
    """
    stats = stats if stats is not None else {}
    for name in ("files", "rows", "not_current", "outside_prefix", "objects"):
        stats.setdefault(name, 0)
    owner = _owner(expected_bucket_owner, request_payer)
    reader = _iter_csv_file if manifest.file_format == "CSV" else _iter_parquet_file
    for entry in manifest.files:
        stats["files"] += 1
        for key, size, etag, modified, storage_class in reader(s3_client, manifest, entry, owner, stats):
            if not key.startswith(prefix):
                stats["outside_prefix"] += 1
                continue
            stats["objects"] += 1
            yield S3Object(key, size, _quoted_etag(etag), modified, storage_class)
