"""Several sources (core/sources.py) and key lists (core/keylists.py): pure, no S3."""

from __future__ import annotations

import json

import pytest

from xacct_map.core.keylists import KeyListError, iter_key_list, key_list_format, open_key_list
from xacct_map.core.sources import SourceSpec, collapse, parse_source, read_sources_argument, source_table


def test_overlapping_prefixes_collapse_per_bucket_and_the_same_prefix_twice_is_one():
    specs = [
        SourceSpec("b", "data/2026/"),
        SourceSpec("b", "data/"),
        SourceSpec("c", "x/"),
        SourceSpec("b", "data/"),
        SourceSpec("b", "logs/"),
        SourceSpec("c", ""),
    ]
    assert [s.uri for s in collapse(specs)] == ["s3://b/data/", "s3://b/logs/", "s3://c/"]


def test_a_prefix_that_is_not_a_folder_still_covers_what_starts_with_it():
    # "data" covers "data/" and "data-old/": a key under either starts with "data".
    assert [s.uri for s in collapse([SourceSpec("b", "data/"), SourceSpec("b", "data"), SourceSpec("b", "dat/")])] == [
        "s3://b/dat/",
        "s3://b/data",
    ]


def test_one_bucket_read_two_ways_is_refused_naming_the_bucket_and_the_field():
    with pytest.raises(ValueError, match=r"bucket 'b' is given with different role_arn"):
        collapse([SourceSpec("b", "x/", role_arn="arn:aws:iam::1:role/a"), SourceSpec("b", "y/", role_arn="r")])
    # A source that does not say is read as the bucket's other sources say.
    kept = collapse([SourceSpec("b", "x/", region="eu-west-1"), SourceSpec("b", "y/")])
    assert [s.region for s in kept] == ["eu-west-1", "eu-west-1"]
    with pytest.raises(ValueError, match="no source given"):
        collapse([])


def test_a_source_is_a_uri_or_a_dict_and_unknown_fields_are_named():
    assert parse_source("s3://b/p/") == SourceSpec("b", "p/")
    spec = parse_source({"uri": "s3://b/p/", "role_arn": "arn:aws:iam::111111111111:role/r", "region": "eu-west-1"})
    assert (spec.role_arn, spec.region, spec.account_id) == ("arn:aws:iam::111111111111:role/r", "eu-west-1", None)
    with pytest.raises(ValueError, match=r"unknown fields \['role'\]"):
        parse_source({"uri": "s3://b/", "role": "x"})
    with pytest.raises(ValueError, match="not an S3 URI"):
        parse_source("b/p")
    assert SourceSpec("b", region="us-east-1").with_defaults(region="eu-west-1", account_id="1").region == "us-east-1"


def test_sources_file_is_a_json_list_and_a_bad_entry_is_named_by_index(tmp_path):
    path = tmp_path / "sources.json"
    path.write_text(json.dumps([{"uri": "s3://b/a/"}, {"uri": "s3://c/", "account_id": "111111111111"}]))
    assert [s.uri for s in read_sources_argument(f"file://{path}")] == ["s3://b/a/", "s3://c/"]
    path.write_text(json.dumps([{"uri": "s3://b/a/"}, {"url": "s3://c/"}]))
    with pytest.raises(ValueError, match=r"\[1\].*unknown fields \['url'\]"):
        read_sources_argument(f"file://{path}")


def test_source_table_has_one_entry_per_bucket():
    table = source_table([{"bucket": "b", "account_id": "1", "region": "r", "prefix": "x/"}, {"bucket": "b"}])
    assert table == [{"bucket": "b", "account_id": "1", "region": "r"}]


def _keys(tmp_path, text: str, name: str, **kwargs) -> tuple[list, dict]:
    path = tmp_path / name
    path.write_bytes(text.encode())
    stats: dict = {}
    fmt = key_list_format(str(path))
    rows = iter_key_list(open_key_list(str(path)), fmt=fmt, location=name, stats=stats, **kwargs)
    return [(k.bucket, k.key, k.version_id) for k in rows], stats


def test_batch_operations_csv_keys_are_url_decoded_and_duplicates_dropped(tmp_path):
    text = (
        "src,with+space/file+1.txt\n"
        "src,percent/100%2525+done.txt,v1\n"
        "other,unicod%C3%A9/%E6%97%A5.bin\n"
        "src,with+space/file+1.txt\n"
        '"src","quoted%2Ckey"\r\n'
    )
    keys, stats = _keys(tmp_path, text, "manifest.csv", default_bucket=None)
    assert keys == [
        ("src", "with space/file 1.txt", None),
        ("src", "percent/100%25 done.txt", "v1"),
        ("other", "unicodé/日.bin", None),
        ("src", "quoted,key", None),
    ]
    assert stats == {"rows": 5, "duplicates": 1}


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("m.csv", "src,a\nsrc\n", "m.csv line 2: 1 fields"),
        ("m.csv", "src,a\nsrc,b,v,extra\n", "m.csv line 2: 4 fields"),
        ("m.jsonl", '{"bucket":"b","key":"a"}\n{"bucket":"b","key":\n', "m.jsonl line 2: not JSON"),
        ("m.jsonl", '{"key":"a"}\n\n{"key": 3}\n', "m.jsonl line 3: expected"),
        ("m.jsonl", '{"key":"a"}\n', "m.jsonl line 1: no bucket"),
        ("keys.txt", "a\n" + "x" * 1025 + "\n", "keys.txt line 2: a key over 1,024 bytes"),
    ],
)
def test_a_malformed_row_fails_with_its_line_number(tmp_path, name, text, message):
    with pytest.raises(KeyListError, match=message):
        _keys(tmp_path, text, name, default_bucket=None if "no bucket" in message else "b")


def test_jsonl_and_text_lists_and_the_distinct_key_limit(tmp_path):
    keys, _ = _keys(
        tmp_path, '{"key":"a","version_id":"v"}\n{"bucket":"c","key":"a"}\n', "l.ndjson", default_bucket="b"
    )
    assert keys == [("b", "a", "v"), ("c", "a", None)]
    keys, stats = _keys(tmp_path, "\ufeffa b\r\nc%2F\n\na b\nlast", "keys.txt", default_bucket="b")
    assert [k for _, k, _ in keys] == ["a b", "c%2F", "last"] and stats["duplicates"] == 1  # text: no decoding
    unversioned = tmp_path / "v.csv"
    unversioned.write_text("b,k,v1\nb,k,v2\n")
    rows = iter_key_list(open_key_list(str(unversioned)), fmt="csv", default_bucket=None, versions=False)
    assert [(k.key, k.version_id) for k in rows] == [("k", None)]  # one key, not two versions of it
    with pytest.raises(KeyListError, match=r"line 3: more than 2 distinct keys"):
        _keys(tmp_path, "a\nb\nc\n", "keys.txt", default_bucket="b", max_keys=2)


def test_a_missing_local_list_is_named(tmp_path):
    with pytest.raises(KeyListError, match="cannot open it"):
        open_key_list(str(tmp_path / "nope.csv"))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"on_changed": "skip", "layout": "flat"}, "only the batched layout"),
        ({"on_changed": "sometimes"}, "on_changed must be one of fail, skip, current"),
        ({"versions": "newest"}, "versions must be one of latest, all"),
        ({"versions": "all"}, "versions='all' lists every version of a key"),
        ({"keys_from": "keys.txt", "source_inventory": "s3://inv/x/"}, "give one kind of source"),
        ({"sources": (SourceSpec("b", "x/"), SourceSpec("c", "")), "keys_from": "k.csv"}, "give one kind of source"),
        ({"keys_from": "k.csv", "min": 1}, r"a key list carries no sizes or dates: the filters \['min_size'\]"),
    ],
)
def test_a_build_that_cannot_work_is_refused_before_anything_runs(arguments, message):
    from xacct_map.core.build import ManifestRequest
    from xacct_map.core.filters import ObjectFilter

    if arguments.pop("min", None):
        arguments["object_filter"] = ObjectFilter(min_size=1)
    with pytest.raises(ValueError, match=message):
        ManifestRequest(source_bucket="b", source_prefix="", manifest_bucket="m", manifest_key="k", **arguments)
