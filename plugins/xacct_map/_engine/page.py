"""One ListObjectsV2 page on the wire: the query string to ask for it and a fast, exact parser.

Pure functions, shared by the listing worker processes (:mod:`xacct_map._engine.worker`) and tests.
The parser takes the common layout S3 sends with one regular expression (about ten times faster
than building an XML tree), and proves it took every ``<Contents>`` element; any other layout
(extra or reordered fields, whitespace, CDATA, entities in keys) goes through the standard
library's XML parser instead, so speed never costs exactness.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote_plus

# Key, LastModified, ETag, optional checksum fields, Size, optional Owner, StorageClass, optional
# RestoreStatus: the order S3 documents and sends. Groups never cross a '<'.
_CONTENTS = re.compile(
    r"<Contents><Key>([^<]*)</Key><LastModified>([^<]*)</LastModified><ETag>([^<]*)</ETag>"
    r"(?:<Checksum[A-Za-z]*>[^<]*</Checksum[A-Za-z]*>)*<Size>([0-9]+)</Size>"
    r"(?:<Owner>(?:<[^>]*>[^<]*)*?</Owner>)?(?:<StorageClass>([^<]*)</StorageClass>)?"
    r"(?:<RestoreStatus>(?:<[^>]*>[^<]*)*?</RestoreStatus>)?</Contents>"
)
# The same without the optional fields, which is what S3 sends for almost every page: a pattern
# without optional groups runs ~35 % faster; pages it does not take whole use the one above.
_CONTENTS_PLAIN = re.compile(
    r"<Contents><Key>([^<]*)</Key><LastModified>([^<]*)</LastModified><ETag>([^<]*)</ETag>"
    r"<Size>([0-9]+)</Size><StorageClass>([^<]*)</StorageClass></Contents>"
)
# Keys, sizes and storage classes only (a caller that needs no ETags or dates), for each of the two
# layouts above: fewer groups to cut out, and nothing to unescape.
_CONTENTS_LEAN_PLAIN = re.compile(
    r"<Contents><Key>([^<]*)</Key><LastModified>[^<]*</LastModified><ETag>[^<]*</ETag>"
    r"<Size>([0-9]+)</Size><StorageClass>([^<]*)</StorageClass></Contents>"
)
_CONTENTS_LEAN = re.compile(
    r"<Contents><Key>([^<]*)</Key><LastModified>[^<]*</LastModified><ETag>[^<]*</ETag>"
    r"(?:<Checksum[A-Za-z]*>[^<]*</Checksum[A-Za-z]*>)*<Size>([0-9]+)</Size>"
    r"(?:<Owner>(?:<[^>]*>[^<]*)*?</Owner>)?(?:<StorageClass>([^<]*)</StorageClass>)?"
    r"(?:<RestoreStatus>(?:<[^>]*>[^<]*)*?</RestoreStatus>)?</Contents>"
)
_TRUNCATED = re.compile(r"<IsTruncated>\s*(true|false)\s*</IsTruncated>")
_NEXT_TOKEN = re.compile(r"<NextContinuationToken>([^<]*)</NextContinuationToken>")
_ERROR = re.compile(r"<(Code|Message)>([^<]*)</\1>")
_QUOTE = "&quot;"


@dataclass(slots=True)
class ListPage:
    """The objects of one page, as parallel lists, and where the listing goes next."""

    keys: list[str]
    sizes: list[int]
    etags: list[str]
    last_modified: list[str]
    storage_classes: list[str]
    truncated: bool
    next_token: str | None


class PageFormatError(ValueError):
    """The body is not a ListObjectsV2 result we can read exactly."""


def list_query(prefix: str, start_after: str, token: str | None, max_keys: int) -> str:
    """The query string of a ListObjectsV2 request, percent-encoded the way SigV4 canonicalises it.

    Parameters are in sorted order so the string is its own canonical form.
    """
    q = quote
    parts = []
    if token:
        parts.append("continuation-token=" + q(token, safe="-_.~"))
    parts.append("encoding-type=url")
    parts.append("list-type=2")
    parts.append(f"max-keys={max_keys}")
    parts.append("prefix=" + q(prefix, safe="-_.~"))
    if start_after:
        parts.append("start-after=" + q(start_after, safe="-_.~"))
    return "&".join(parts)


def range_prefix(prefix: str, start_after: str, hi: str | None) -> str:
    """The longest prefix every key of the range ``(start_after, hi]`` under ``prefix`` shares.

    In sorted order a key between two keys that share a prefix shares it too, so a request for the
    range may ask for that narrower prefix: past the last key of a folder S3 then answers at once
    with no keys, not with a page of the next folder's keys that all lie past ``hi``.
    """
    if hi is None or not start_after:
        return prefix
    common = os.path.commonprefix([start_after, hi])
    return common if len(common) > len(prefix) and common.startswith(prefix) else prefix


_FIRST_KEY = re.compile(rb"<Contents>\s*<Key>([^<]*)</Key>")


def first_key(body: bytes) -> str | None:
    """The first object key of a ListObjectsV2 body without parsing the rest (None if unsure).

    Lets a range listing drop a page that starts beyond its range for the cost of one search.
    """
    found = _FIRST_KEY.search(body)
    if found is None or b"&" in found.group(1):
        return None
    key = found.group(1).decode("utf-8")
    return unquote_plus(key) if b"<EncodingType>url</EncodingType>" in body else key


def parse_error(body: bytes) -> tuple[str, str]:
    """``(Code, Message)`` of an S3 error body; empty strings when there is none."""
    found = dict(_ERROR.findall(body.decode("utf-8", "replace")))
    return _unescape(found.get("Code", "")), _unescape(found.get("Message", ""))


def parse_list_page(body: bytes, *, details: bool = True) -> ListPage:
    """Parse a ListObjectsV2 response body.

    Keys are decoded from ``EncodingType=url`` when the response says it used it (as botocore
    does), so they come back byte-exact; ``LastModified`` stays the text S3 sent.

    :param details: False: ``etags`` and ``last_modified`` are left empty (not parsed).
    :raises PageFormatError: the body is not a well-formed ListObjectsV2 result.
    """
    text = body.decode("utf-8")
    if "<ListBucketResult" not in text[:512]:
        raise PageFormatError(f"not a ListBucketResult: {text[:200]!r}")
    expected = text.count("<Contents")  # with or without attributes: every element the rows must cover
    page = _regex_page(text, expected, details)
    return page if page is not None else _parse_with_etree(body)


def _regex_page(text: str, expected: int, details: bool) -> ListPage | None:
    """The page of S3's usual layouts, by regular expression (without ETags and dates unless ``details``);
    None for any other layout or for entities in keys or dates: the XML parser then takes it."""
    plain, full = (_CONTENTS_PLAIN, _CONTENTS) if details else (_CONTENTS_LEAN_PLAIN, _CONTENTS_LEAN)
    rows = plain.findall(text)
    if len(rows) != expected:
        rows = full.findall(text)
    truncated = _TRUNCATED.search(text)
    if len(rows) != expected or truncated is None:
        return None
    # transpose in C rather than a Python loop per field
    columns = list(map(list, zip(*rows, strict=False))) if rows else [[] for _ in range(5 if details else 3)]
    keys, modified, etags, sizes, classes = columns if details else (columns[0], [], [], columns[1], columns[2])
    if "&" in "".join(keys) or "&" in "".join(modified):
        return None  # entities: S3 sends none with EncodingType=url
    if "<EncodingType>url</EncodingType>" in text:
        keys = _url_decode(keys)
    token = _NEXT_TOKEN.search(text)
    return ListPage(
        keys=keys,
        sizes=list(map(int, sizes)),
        etags=_unescape_all(etags),
        last_modified=modified,
        storage_classes=[c or "STANDARD" for c in classes] if "" in classes else classes,
        truncated=truncated.group(1) == "true",
        next_token=_unescape(token.group(1)) if token else None,
    )


def _unescape_all(values: list[str]) -> list[str]:
    """XML-unescape a page's ETags: all at once for the usual ``&quot;`` only, else one by one."""
    joined = "\n".join(values)
    if "&" not in joined:
        return values
    replaced = joined.replace(_QUOTE, '"')
    if "&" not in replaced and joined.count("\n") == len(values) - 1:
        return replaced.split("\n")
    return [_unescape(v) for v in values]


def _url_decode(keys: list[str]) -> list[str]:
    """``unquote_plus`` every key (what botocore does for ``EncodingType=url``), in one call.

    unquote's cost is mostly per call, so the page's keys are decoded joined by newlines - which
    cannot occur raw in url-encoded keys - and split again; if a decoded key contains a newline
    the counts differ and the keys are decoded one by one.
    """
    if not keys:
        return keys
    joined = "\n".join(keys)
    if "%" not in joined and "+" not in joined:
        return keys
    separators = joined.count("\n") == len(keys) - 1  # no raw newline in a key (url-encoded keys have none)
    decoded = _decode_ascii_escapes(joined) if separators else None
    if decoded is not None:  # no escape made a newline either: the separators are the only ones
        return decoded.split("\n")
    decoded = unquote_plus(joined)
    if joined.count("\n") == decoded.count("\n") == len(keys) - 1:
        return decoded.split("\n")
    return [unquote_plus(k) for k in keys]


_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
# Escapes left to unquote: multi-byte UTF-8 (non-ASCII) and the newline that joins a page's keys.
_NOT_PLAIN = frozenset([0x0A, *range(0x80, 0x100)])


def _decode_ascii_escapes(text: str) -> str | None:
    """``unquote_plus(text)`` by plain replacements when every escape is ASCII and none is a newline
    (else None).

    Typical keys repeat a few escapes (``%3D`` in ``date=...``) on every key; replacing each
    distinct escape once is several times faster than unquote. The distinct escapes are found one
    at a time (the first ``%`` not yet accounted for), so the cost grows with their number, not
    with the keys'. Every ``%`` starts an escape, so a replacement cannot match across escapes;
    ``%25`` goes last so the ``%`` it yields stays.
    """
    total = text.count("%")
    escapes: list[str] = []
    covered = 0  # '%' characters starting an escape found so far (each copy holds one '%')
    rest = text
    while covered < total:
        if escapes:  # blank the last escape out to find the next; NUL cannot form a new escape
            rest = rest.replace(escapes[-1], "\0")
        at = rest.find("%")
        escape = rest[at : at + 3]
        # a '%' outside a well-formed escape, or non-ASCII (multi-byte UTF-8): leave it to unquote
        if len(escapes) == 8 or not _ESCAPE.fullmatch(escape) or int(escape[1:], 16) in _NOT_PLAIN:
            return None
        escapes.append(escape)
        covered += text.count(escape)
    if "+" in text:
        text = text.replace("+", " ")
    for escape in sorted(escapes, key=lambda e: e.upper() == "%25"):
        text = chr(int(escape[1:], 16)).join(text.split(escape))  # split/join: faster than replace here
    return text


def _unescape(value: str) -> str:
    if "&" not in value:
        return value
    if value.count("&") == value.count(_QUOTE):
        return value.replace(_QUOTE, '"')
    import html  # entities beyond &quot; are rare: numeric references, &amp;, ...

    return html.unescape(value)


def _parse_with_etree(body: bytes) -> ListPage:
    """The exact, slower route for any layout the regular expression does not take whole.

    The standard library's parser (expat, which resolves no external entities and limits entity
    expansion): speed does not matter here, and it needs no dependency.
    """
    from xml.etree import ElementTree

    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as err:
        raise PageFormatError(f"malformed ListObjectsV2 response: {err}") from err
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    if root.tag != ns + "ListBucketResult":
        raise PageFormatError(f"not a ListBucketResult: {root.tag}")

    def text(el, name: str, default: str = "") -> str:
        child = el.find(ns + name)
        return default if child is None or child.text is None else child.text

    url = text(root, "EncodingType") == "url"
    keys, sizes, etags, modified, classes = [], [], [], [], []
    for item in root.findall(ns + "Contents"):
        key = text(item, "Key")
        keys.append(unquote_plus(key) if url else key)
        sizes.append(int(text(item, "Size", "0")))
        etags.append(text(item, "ETag"))
        modified.append(text(item, "LastModified"))
        classes.append(text(item, "StorageClass", "STANDARD"))
    truncated = text(root, "IsTruncated").strip().lower()
    if truncated not in ("true", "false"):
        raise PageFormatError("ListObjectsV2 response without IsTruncated")
    return ListPage(
        keys=keys,
        sizes=sizes,
        etags=etags,
        last_modified=modified,
        storage_classes=classes,
        truncated=truncated == "true",
        next_token=text(root, "NextContinuationToken") or None,
    )
