"""Timestamps as text: ISO-8601 for metadata and XCom, S3's own form for object listings."""

from __future__ import annotations

from datetime import datetime, timezone


def iso_or_none(value: datetime | str | None) -> str | None:
    """``value.isoformat()`` for a datetime; text and ``None`` as they are."""
    return value.isoformat() if isinstance(value, datetime) else value


def s3_timestamp(value: datetime | str | None) -> str:
    """S3's text form, ``2026-01-01T00:00:00.000Z`` (UTC, milliseconds); text as it is, ``None`` as ``""``.

    A naive datetime is taken as UTC (S3 Inventory's Parquet timestamps carry no zone).
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
