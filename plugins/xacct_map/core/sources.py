"""Several sources in one run: the source spec, overlapping prefixes collapsed, the per-bucket table.

A source is ``{"uri": "s3://bucket/prefix/", "role_arn"?, "account_id"?, "region"?, "external_id"?}``
(the operator's ``sources=[...]``; the CLI's repeated ``--source``, or ``--source file://sources.json``
holding such a list, the AWS CLI's convention for JSON values). Fields a source leaves out come from
the run's defaults (``source_role_arn``...).

Every key exactly once: per bucket, a prefix that starts with another listed prefix is dropped before
anything is listed (``s3://b/data/`` covers ``s3://b/data/2026/``), so no key is listed twice. One
bucket is read one way: two sources of the same bucket naming different roles, accounts or Regions
are refused (a source that leaves one out takes the others'). That is also what lets a Map item find
its source by its bucket alone: the execution input's ``source.sources`` table maps each bucket to
its account (``ExpectedBucketOwner``) and Region.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from xacct_map.core.s3uri import split_s3_uri

SPEC_FIELDS = ("uri", "role_arn", "account_id", "region", "external_id")
#: What must be the same for every source of one bucket.
_PER_BUCKET = ("role_arn", "account_id", "region", "external_id")


@dataclass(frozen=True)
class SourceSpec:
    """One source: a bucket, a prefix, and how to read it (None: the run's default)."""

    bucket: str
    prefix: str = ""
    role_arn: str | None = None
    account_id: str | None = None
    region: str | None = None
    external_id: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def with_defaults(self, **defaults: str | None) -> SourceSpec:
        """This spec with each unset field taken from ``defaults`` (the run-wide options)."""
        return replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None and v})


def parse_source(value: str | dict | SourceSpec, *, what: str = "source") -> SourceSpec:
    """A :class:`SourceSpec` from ``s3://bucket/prefix`` or a dict with ``uri`` and the optional fields.

    :raises ValueError: not an S3 URI, an unknown field, or a field that is not text.
    """
    if isinstance(value, SourceSpec):
        return value
    if isinstance(value, str):
        bucket, prefix = split_s3_uri(value, what=what)
        return SourceSpec(bucket, prefix)
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be s3://bucket/prefix or a dict with 'uri', not {type(value).__name__}")
    unknown = sorted(set(value) - set(SPEC_FIELDS))
    if unknown or "uri" not in value:
        raise ValueError(
            f"{what} {value!r}: "
            + (f"unknown fields {unknown}; " if unknown else "no 'uri'; ")
            + f"a source takes {', '.join(SPEC_FIELDS)} ('uri' required)"
        )
    for name, field_value in value.items():
        if field_value is not None and not isinstance(field_value, str):
            raise ValueError(f"{what}: {name} must be text, not {type(field_value).__name__} {field_value!r}")
    bucket, prefix = split_s3_uri(value["uri"], what=f"{what} uri")
    return SourceSpec(bucket, prefix, **{k: value.get(k) or None for k in _PER_BUCKET})


def read_sources_argument(text: str) -> list[SourceSpec]:
    """The CLI's ``--source``: ``s3://bucket/prefix``, or ``file://path`` of a JSON source or list of them.

    :raises ValueError: the file cannot be read, is not JSON, or holds a bad source (named by index).
    """
    if not text.startswith("file://"):
        return [parse_source(text, what="--source")]
    path = Path(text[len("file://") :])
    try:
        loaded = json.loads(path.read_text())
    except OSError as err:
        raise ValueError(f"--source {text}: cannot read {path}: {err.strerror}") from err
    except json.JSONDecodeError as err:
        raise ValueError(f"--source {text}: not JSON ({err}): expected a list of sources") from err
    items = loaded if isinstance(loaded, list) else [loaded]
    return [parse_source(item, what=f"--source {text} [{i}]") for i, item in enumerate(items)]


def collapse(specs: list[SourceSpec]) -> list[SourceSpec]:
    """The sources to list, each key once: per bucket, prefixes covered by another are dropped.

    Order: buckets as first given, prefixes sorted within a bucket.

    :raises ValueError: no source, or one bucket given with different roles, accounts or Regions.
    """
    if not specs:
        raise ValueError("no source given: name at least one s3://bucket/prefix")
    by_bucket: dict[str, list[SourceSpec]] = {}
    for spec in specs:
        by_bucket.setdefault(spec.bucket, []).append(spec)
    kept: list[SourceSpec] = []
    for bucket, group in by_bucket.items():
        agreed: dict = {}
        for name in _PER_BUCKET:
            values = {getattr(s, name) for s in group} - {None}  # a source that does not say takes the others'
            if len(values) > 1:
                raise ValueError(
                    f"bucket {bucket!r} is given with different {name} values {sorted(values)}: one bucket "
                    f"is read one way in a run; give every source of {bucket!r} the same {name}"
                )
            agreed[name] = next(iter(values), None)
        group = [replace(s, **agreed) for s in group]
        previous: str | None = None
        for spec in sorted(group, key=lambda s: s.prefix):
            if previous is not None and spec.prefix.startswith(previous):
                continue  # inside a prefix already listed (or the same prefix twice)
            kept.append(spec)
            previous = spec.prefix
    return kept


def source_table(descriptions: list[dict]) -> list[dict]:
    """``[{"bucket", "account_id", "region"}]``, one per bucket: how the processor reads each bucket."""
    table: dict = {}
    for description in descriptions:
        entry = {k: description.get(k) for k in ("bucket", "account_id", "region")}
        table.setdefault(entry["bucket"], entry)
    return list(table.values())
