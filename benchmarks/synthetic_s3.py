"""A synthetic S3 endpoint on loopback for benchmarks and tests.

It serves ListObjectsV2 over key sets that are *computed*, not stored: :class:`GeneratedKeys`
produces key ``i`` of ``n`` sorted unique keys on demand, so a 10M-key bucket costs no memory.
:class:`ListedKeys` serves an explicit set (for property tests with awkward keys). Every listing
parameter the clients use is honoured: ``prefix``, ``start-after``, ``continuation-token``,
``delimiter``, ``max-keys`` and ``encoding-type=url``; ``x-amz-expected-bucket-owner`` is checked.

Writes are accepted and spooled to disk: PutObject and the multipart upload calls
(CreateMultipartUpload, UploadPart, CompleteMultipartUpload, AbortMultipartUpload), plus
GetObject/HeadObject to read them back. :meth:`SyntheticS3.count_keys` verifies a written manifest
(batched JSON lines or a plain JSON array) *after* a run, so verification costs the measured client
nothing.

Sources as users have them: ``requester_pays`` buckets answer 403 AccessDenied to a request
without a signed ``x-amz-request-payer: requester``; ``access_points`` serves an access point's host
(``NAME-ACCOUNT.<endpoint host>``, as botocore addresses an access point ARN with a custom endpoint)
and aliases (``NAME-xxxx-s3alias``, used like a bucket name) for a bucket; a directory bucket
(``name--zone--x-s3``) answers CreateSession, lists in no order (a fixed shuffle) and refuses
``start-after``, as S3 Express One Zone does.

Faults and latency for realism: a fixed delay per request (real S3 answers a LIST in 20-100 ms)
and ``throttle`` - a predicate that turns a ListObjectsV2 attempt into ``503 SlowDown``.

Threaded (one thread per connection) so that latency overlaps across connections. Requests are
not authenticated: signatures are accepted as sent.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import re
import shutil
import socketserver
import tempfile
import threading
import time
import uuid
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from http import HTTPStatus
from urllib.parse import parse_qs, quote_plus, unquote, urlsplit
from xml.sax.saxutils import escape

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
LAST_MODIFIED = "2026-01-01T00:00:00.000Z"
DEFAULT_OWNER = "111111111111"
_ACCESS_KEY = re.compile(r"Credential=([^/]+)/")
_NEEDS_URL_ENCODING = re.compile(r"[^A-Za-z0-9_.\-~/]")
_BLOCK = 4096  # keys per pre-rendered block (GeneratedKeys.prerender)
_CONTENTS = (
    "<Contents><Key>%s</Key><LastModified>%s</LastModified><ETag>&quot;%032x&quot;</ETag>"
    "<Size>%d</Size><StorageClass>STANDARD</StorageClass></Contents>"
)


class KeySet:
    """Sorted unique keys addressed by index; subclasses define :meth:`key` and ``__len__``."""

    def __len__(self) -> int:
        raise NotImplementedError

    def key(self, i: int) -> str:
        raise NotImplementedError

    def size(self, i: int) -> int:
        return (i * 7919) % 100_000 + 1

    def lower_bound(self, s: str, lo: int = 0) -> int:
        """First index whose key is >= ``s``."""
        hi = len(self)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.key(mid) < s:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def upper_bound(self, s: str, lo: int = 0) -> int:
        """First index whose key is > ``s``."""
        hi = len(self)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.key(mid) <= s:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def end_of_prefix(self, p: str, lo: int = 0) -> int:
        """First index at or after ``lo`` whose key is beyond every key starting with ``p``."""
        hi = len(self)
        while lo < hi:
            mid = (lo + hi) // 2
            k = self.key(mid)
            if k < p or k.startswith(p):
                lo = mid + 1
            else:
                hi = mid
        return lo


class GeneratedKeys(KeySet):
    """``n`` keys like ``warehouse/events/date=2026-01-01/part-000000000-c000.snappy.parquet``.

    The date advances every ``per_day`` keys (``flat=True``: no date, ``warehouse/events/part-...``),
    the part number is global: zero padding keeps
    generation order equal to UTF-8 binary order, so key ``i`` is computed, never stored.
    """

    def __init__(self, n: int, *, prefix: str = "warehouse/events/", per_day: int = 20_000, flat: bool = False):
        self.n = n
        self.prefix = prefix
        self.flat = flat  # no date "folders": one flat run of part files
        self.per_day = max(n, 1) if flat else per_day
        self._day0 = date(2020, 1, 1)
        self._days: dict[int, str] = {}
        self._blocks: list[tuple[str, array]] | None = None  # see prerender()

    def __len__(self) -> int:
        return self.n

    def _day(self, d: int) -> str:
        text = self._days.get(d)
        if text is None:
            text = self._days[d] = (self._day0 + timedelta(days=d)).isoformat()
        return text

    def _head(self, day: int) -> str:
        return f"{self.prefix}part-" if self.flat else f"{self.prefix}date={self._day(day)}/part-"

    def key(self, i: int) -> str:
        return f"{self._head(i // self.per_day)}{i:09d}-c000.snappy.parquet"

    def keys(self) -> Iterable[str]:
        return map(self.key, range(self.n))

    def prerender(self) -> GeneratedKeys:
        """Render every key's ``<Contents>`` (URL-encoded) now, so that serving a page costs a
        slice or two instead of a formatting loop (~240 bytes of memory per key).

        The server shares the CPUs with the clients it measures, while real S3 takes none of
        the client box's CPU: the less the server spends per page during a run, the closer the
        run is to listing real S3.
        """
        blocks = []
        for start in range(0, self.n, _BLOCK):
            items, _, _ = self.contents_xml(start, min(_BLOCK, self.n - start), "", True)
            blocks.append(("".join(items), array("L", itertools.accumulate(map(len, items), initial=0))))
        self._blocks = blocks
        return self

    def contents_xml(self, i: int, count: int, prefix: str, url: bool) -> tuple[list[str], int, int]:
        """``<Contents>`` elements for up to ``count`` keys from index ``i`` that start with
        ``prefix`` (as strings of one or more elements), how many, and the index after the last.
        Fast path: one template per day."""
        if self._blocks is not None and url:
            end = min(self.n, i + count)
            if not self.prefix.startswith(prefix):  # a prefix reaching into the keys: they match in one run
                end = min(end, self.end_of_prefix(prefix, i))
            first = i
            out = []
            while i < end:
                block, offset = divmod(i, _BLOCK)
                stop = min(end, (block + 1) * _BLOCK)
                text, offsets = self._blocks[block]
                out.append(text[offsets[offset] : offsets[stop - block * _BLOCK]])
                i = stop
            return out, i - first, i
        out: list[str] = []
        end = min(self.n, i + count)
        enc = _url if url else escape
        while i < end:
            day = i // self.per_day
            stop = min(end, (day + 1) * self.per_day)
            head = self._head(day)
            if not (head.startswith(prefix) or prefix.startswith(head)):
                if head < prefix:
                    i = stop
                    continue
                break
            template = (
                f"<Contents><Key>{enc(head).replace('%', '%%')}%09d{enc('-c000.snappy.parquet')}</Key>"
                f"<LastModified>{LAST_MODIFIED}</LastModified><ETag>&quot;%032x&quot;</ETag>"
                "<Size>%d</Size><StorageClass>STANDARD</StorageClass></Contents>"
            )
            into_keys = len(prefix) > len(head)  # a prefix reaching into the part number: its keys are one run
            if into_keys:
                stop = min(stop, self.end_of_prefix(prefix, i))
            out.extend([template % (j, j, (j * 7919) % 100_000 + 1) for j in range(i, stop)])
            i = stop
            if into_keys:
                break
        return out, len(out), i


class ListedKeys(KeySet):
    """An explicit key set, sorted in S3 order (UTF-8 bytes, which is code point order)."""

    def __init__(self, keys: Iterable[str], sizes: dict[str, int] | None = None):
        self._keys = sorted(set(keys))
        self._sizes = sizes or {}

    def __len__(self) -> int:
        return len(self._keys)

    def key(self, i: int) -> str:
        return self._keys[i]

    def size(self, i: int) -> int:
        return self._sizes.get(self._keys[i], super().size(i))

    def keys(self) -> list[str]:
        return list(self._keys)


def throttle_pages(every: int, *, attempts: int = 1) -> Callable[[dict, int], bool]:
    """A ``throttle`` predicate: every ``every``-th distinct page request fails ``attempts`` times.

    Deterministic (keyed on the request's parameters), so a retry of the same page eventually
    succeeds and a test can count the 503s it caused.
    """
    seen: dict[tuple, int] = {}
    order: dict[tuple, int] = {}
    lock = threading.Lock()

    def predicate(params: dict, _n: int) -> bool:
        sig = tuple(sorted(params.items()))
        with lock:
            if sig not in order:
                order[sig] = len(order)
            tries = seen[sig] = seen.get(sig, 0) + 1
            return order[sig] % every == every - 1 and tries <= attempts

    return predicate


@dataclass
class _Upload:
    bucket: str
    key: str
    parts: dict[int, str] = field(default_factory=dict)


@dataclass
class Stats:
    """Counters a test or the benchmark can assert on."""

    requests: int = 0
    list_requests: int = 0
    listed_keys: int = 0  # keys sent in ListObjectsV2 answers (counted with record_params only)
    throttled: int = 0
    with_owner_header: int = 0
    with_payer_header: int = 0
    payer_refusals: int = 0
    sessions: int = 0  # directory buckets' CreateSession calls
    hosts: dict = field(default_factory=dict)  # Host header (without port) -> requests
    owner_mismatches: int = 0
    aborted_uploads: int = 0
    completed_uploads: int = 0
    max_concurrent: int = 0
    list_params: list = field(default_factory=list)
    access_keys: dict = field(default_factory=dict)  # access key id -> requests signed with it


class SyntheticS3:
    """The server. Use as a context manager; ``endpoint_url`` is where clients point.

    :param buckets: bucket name -> :class:`KeySet` to list. Any other bucket named in
        ``writable`` accepts writes (and lists what was written).
    :param latency: seconds added to every request (imitates S3's per-request latency).
    :param throttle: ``predicate(params, request_number) -> bool``; True answers a
        ListObjectsV2 with ``503 SlowDown``.
    :param fault: ``predicate(params, request_number) -> (status, code) | None``: any other
        error answer for a ListObjectsV2 (e.g. ``(403, "AccessDenied")`` mid-listing).
    :param hollow: ``predicate(params, request_number) -> bool``; True answers a ListObjectsV2 with a
        page of no keys that is still truncated, its continuation token leading on from where the page
        started (as S3 may answer past many delete markers).
    :param owner: the account id every bucket belongs to (checked against
        ``x-amz-expected-bucket-owner``).
    :param record_params: keep every ListObjectsV2's parameters (and, as ``_access_key``, the
        access key id that signed it) in ``stats.list_params``.
    :param chunked: send ListObjectsV2 answers with ``Transfer-Encoding: chunked`` (as S3 does)
        instead of a Content-Length.
    :param tls: ``(certfile, keyfile)``: serve HTTPS with this certificate.
    :param requester_pays: buckets that refuse requests without a signed ``x-amz-request-payer``.
    :param access_points: access point host label (``NAME-ACCOUNT``) or alias -> the bucket it serves.
    """

    def __init__(
        self,
        buckets: dict[str, KeySet] | None = None,
        *,
        writable: Iterable[str] = ("manifests",),
        latency: float = 0.0,
        throttle: Callable[[dict, int], bool] | None = None,
        fault: Callable[[dict, int], tuple[int, str] | None] | None = None,
        hollow: Callable[[dict, int], bool] | None = None,
        owner: str = DEFAULT_OWNER,
        record_params: bool = False,
        chunked: bool = False,
        tls: tuple[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        requester_pays: Iterable[str] = (),
        access_points: dict[str, str] | None = None,
    ):
        self.buckets: dict[str, KeySet] = dict(buckets or {})
        self.writable = set(writable)
        self.latency = latency
        self.throttle = throttle
        self.fault = fault
        self.hollow = hollow
        self.owner = owner
        self.record_params = record_params
        self.requester_pays = set(requester_pays)
        self.access_points = dict(access_points or {})
        self.stats = Stats()
        self._lock = threading.Lock()
        self._active = 0
        self._objects: dict[tuple[str, str], list[str]] = {}
        self._uploads: dict[str, _Upload] = {}
        self._spool = tempfile.mkdtemp(prefix="synthetic-s3-")
        self.chunked = chunked
        self._httpd = _Server((host, port), _make_handler(self))
        self._scheme = "http"
        if tls is not None:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
            self._scheme = "https"
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def endpoint_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"{self._scheme}://{host}:{port}"

    def start(self) -> SyntheticS3:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="synthetic-s3", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        shutil.rmtree(self._spool, ignore_errors=True)

    def __enter__(self) -> SyntheticS3:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- inspection --------------------------------------------------------------------------
    def object_bytes(self, bucket: str, key: str) -> bytes:
        return b"".join(_read(p) for p in self._objects[(bucket, key)])

    def has_object(self, bucket: str, key: str) -> bool:
        return (bucket, key) in self._objects

    def pending_uploads(self) -> int:
        return len(self._uploads)

    def count_keys(self, bucket: str, key: str) -> tuple[int, int]:
        """Count the keys in a written manifest and an order-independent checksum of them.

        Reads the batched layout (one JSON batch per line, as xacct-map writes it) line by line,
        or a plain JSON array of keys. Compare the checksum with :func:`key_checksum` of the
        expected keys: equal counts and checksums mean the same set of keys, each once.
        """
        paths = self._objects[(bucket, key)]
        head = _read(paths[0])[:64].lstrip()
        if head.startswith(b"[") and head[1:].lstrip().startswith(b"{"):
            count = total = 0
            rest = b""
            for path in paths:
                with open(path, "rb") as fh:
                    while chunk := fh.read(1 << 22):
                        lines = (rest + chunk).split(b"\n")
                        rest = lines.pop()
                        for line in lines:
                            line = line.strip().rstrip(b",")
                            if line.startswith(b"{"):
                                keys = json.loads(line)["keys"]
                                count += len(keys)
                                total += key_checksum(keys)
            return count, total & 0xFFFFFFFFFFFFFFFF
        keys = json.loads(self.object_bytes(bucket, key))
        if keys and isinstance(keys[0], dict):
            keys = [k for batch in keys for k in batch["keys"]]
        return len(keys), key_checksum(keys) & 0xFFFFFFFFFFFFFFFF

    # -- request handling (called from handler threads) --------------------------------------
    def _spool_file(self, data: bytes) -> str:
        path = os.path.join(self._spool, uuid.uuid4().hex)
        with open(path, "wb") as fh:
            fh.write(data)
        return path


def key_checksum(keys: Iterable[str]) -> int:
    """Sum of 64-bit digests of ``keys`` (order-independent; detects a missing or repeated key)."""
    total = 0
    for k in keys:
        total += int.from_bytes(hashlib.blake2b(k.encode(), digest_size=8).digest(), "little")
    return total & 0xFFFFFFFFFFFFFFFF


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def _xml_error(code: str, message: str, **extra: str) -> bytes:
    fields = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in extra.items())
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>{escape(message)}</Message>{fields}<RequestId>synthetic</RequestId></Error>"
    ).encode()


def _encode_token(after: str, is_prefix: bool) -> str:
    return base64.urlsafe_b64encode(json.dumps([after, is_prefix]).encode()).decode()


def _decode_token(token: str) -> tuple[str, bool]:
    after, is_prefix = json.loads(base64.urlsafe_b64decode(token.encode()))
    return after, bool(is_prefix)


def hollow_page(bucket: str, q: dict[str, str]) -> bytes:
    """A truncated ListObjectsV2 page without keys whose token continues from where it started."""
    token = q.get("continuation-token") or _encode_token(q.get("start-after", ""), False)
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="{S3_NS}"><Name>{escape(bucket)}</Name>'
        f"<Prefix>{_url(q.get('prefix', ''))}</Prefix><KeyCount>0</KeyCount><MaxKeys>{q.get('max-keys', '1000')}"
        "</MaxKeys><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>"
        f"<NextContinuationToken>{token}</NextContinuationToken></ListBucketResult>"
    ).encode()


def _url(value: str) -> str:
    # S3's EncodingType=url: percent-encoding with '+' for space (botocore decodes with unquote_plus).
    return quote_plus(value, safe="/") if _NEEDS_URL_ENCODING.search(value) else value


def list_objects_v2(ks: KeySet, bucket: str, q: dict[str, str]) -> bytes:
    """The ListObjectsV2 response body for parameters ``q`` over key set ``ks``."""
    prefix = q.get("prefix", "")
    delimiter = q.get("delimiter", "")
    start_after = q.get("start-after", "")
    token = q.get("continuation-token")
    max_keys = max(0, min(int(q.get("max-keys", "1000")), 1000))
    url = q.get("encoding-type") == "url"
    enc = _url if url else escape

    i = ks.lower_bound(prefix) if prefix else 0
    if start_after:
        i = max(i, ks.upper_bound(start_after, i))
    if token:
        after, is_prefix = _decode_token(token)
        i = max(i, ks.end_of_prefix(after, i) if is_prefix else ks.upper_bound(after, i))
    n = len(ks)
    contents: list[str] = []
    prefixes: list[str] = []
    last: tuple[str, bool] | None = None
    count = 0
    plen = len(prefix)
    fast = getattr(ks, "contents_xml", None)
    if fast is not None and not delimiter and max_keys:
        contents, count, i = fast(i, max_keys, prefix, url)
        if count:
            last = (ks.key(i - 1), False)
    while count < max_keys and i < n:
        k = ks.key(i)
        if not k.startswith(prefix):
            i = n
            break
        if delimiter:
            j = k.find(delimiter, plen)
            if j >= 0:
                cp = k[: j + len(delimiter)]
                prefixes.append(f"<CommonPrefixes><Prefix>{enc(cp)}</Prefix></CommonPrefixes>")
                count += 1
                last = (cp, True)
                i = ks.end_of_prefix(cp, i)
                continue
        contents.append(_CONTENTS % (enc(k), LAST_MODIFIED, i, ks.size(i)))
        count += 1
        last = (k, False)
        i += 1
    truncated = max_keys > 0 and i < n and ks.key(i).startswith(prefix)
    head = [
        f'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="{S3_NS}">',
        f"<Name>{escape(bucket)}</Name><Prefix>{enc(prefix)}</Prefix>",
        f"<KeyCount>{count}</KeyCount><MaxKeys>{max_keys}</MaxKeys>",
    ]
    if delimiter:
        head.append(f"<Delimiter>{enc(delimiter)}</Delimiter>")
    if url:
        head.append("<EncodingType>url</EncodingType>")
    head.append(f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>")
    if start_after:
        head.append(f"<StartAfter>{enc(start_after)}</StartAfter>")
    if token:
        head.append(f"<ContinuationToken>{escape(token)}</ContinuationToken>")
    if truncated and last is not None:
        head.append(f"<NextContinuationToken>{_encode_token(*last)}</NextContinuationToken>")
    return "".join(itertools.chain(head, contents, prefixes, ["</ListBucketResult>"])).encode()


_DIRECTORY_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]*--[a-z0-9-]+--x-s3$")
_SESSION = (
    f'<?xml version="1.0" encoding="UTF-8"?>\n<CreateSessionResult xmlns="{S3_NS}"><Credentials>'
    "<SessionToken>synthetic-session</SessionToken><SecretAccessKey>synthetic-session-secret</SecretAccessKey>"
    "<AccessKeyId>ASIASYNTHETIC</AccessKeyId><Expiration>2099-01-01T00:00:00Z</Expiration>"
    "</Credentials></CreateSessionResult>"
).encode()


def is_directory_bucket(bucket: str) -> bool:
    return bool(_DIRECTORY_BUCKET.match(bucket))


def list_unordered(ks: KeySet, bucket: str, q: dict[str, str]) -> bytes:
    """A directory bucket's ListObjectsV2 page: the prefix's keys in a fixed shuffled order (not
    lexicographic), the continuation token an offset into it."""
    import random

    prefix = q.get("prefix", "")
    max_keys = max(1, min(int(q.get("max-keys", "1000")), 1000))
    url = q.get("encoding-type") == "url"
    enc = _url if url else escape
    start, end = ks.lower_bound(prefix), ks.end_of_prefix(prefix) if prefix else len(ks)
    order = list(range(start, end))
    random.Random(len(order)).shuffle(order)
    offset = int(q.get("continuation-token") or 0)
    page = order[offset : offset + max_keys]
    truncated = offset + max_keys < len(order)
    head = [
        f'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="{S3_NS}">',
        f"<Name>{escape(bucket)}</Name><Prefix>{enc(prefix)}</Prefix>",
        f"<KeyCount>{len(page)}</KeyCount><MaxKeys>{max_keys}</MaxKeys>",
        "<EncodingType>url</EncodingType>" if url else "",
        f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>",
        f"<NextContinuationToken>{offset + max_keys}</NextContinuationToken>" if truncated else "",
    ]
    contents = [_CONTENTS % (enc(ks.key(i)), LAST_MODIFIED, i, ks.size(i)) for i in page]
    return "".join(itertools.chain(head, contents, ["</ListBucketResult>"])).encode()


def _decode_aws_chunked(body: bytes) -> bytes:
    out = bytearray()
    pos = 0
    while True:
        eol = body.index(b"\r\n", pos)
        size = int(body[pos:eol].split(b";")[0], 16)
        pos = eol + 2
        if size == 0:
            return bytes(out)
        out += body[pos : pos + size]
        pos += size + 2


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


class _Headers(dict):
    """Request headers by lower-cased name."""

    def get(self, key: str, default=None):
        return super().get(key.lower(), default)


class _LeanHTTPHandler(socketserver.StreamRequestHandler):
    """A minimal HTTP/1.1 keep-alive server loop.

    ``http.server`` parses headers with the email package, which costs this benchmark's server
    more CPU per request than producing a 1000-key page; the CPU is shared with the clients
    measured, so the server keeps to the few header lines it needs.
    """

    disable_nagle_algorithm = True
    rbufsize = 1 << 16

    def handle(self) -> None:
        while True:
            line = self.rfile.readline(1 << 16)
            if not line:
                return
            if line in (b"\r\n", b"\n"):
                continue
            parts = line.decode("latin-1").split()
            if len(parts) != 3:
                return
            self.command, self.path, version = parts
            headers = _Headers()
            while (header := self.rfile.readline(1 << 16)) not in (b"\r\n", b"\n", b""):
                name, _, value = header.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            self.headers = headers
            if headers.get("expect", "").lower() == "100-continue":
                self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.dispatch()
            if version != "HTTP/1.1" or headers.get("connection", "").lower() == "close":
                return

    def dispatch(self) -> None:
        raise NotImplementedError

    def send(self, status: int, headers: dict, body: bytes = b"") -> None:
        lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        # one write: header and body leave together
        self.wfile.write(head + body if body and self.command != "HEAD" else head)


def _make_handler(server: SyntheticS3):
    class Handler(_LeanHTTPHandler):
        # -- plumbing --
        def _reply(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
            headers = dict(headers or {})
            if body and "Content-Type" not in headers:
                headers["Content-Type"] = "application/xml"
            headers["Content-Length"] = str(len(body))
            self.send(status, headers, body)

        def _reply_chunked(self, body: bytes, size: int = 16384) -> None:
            chunks = [
                b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in (body[i : i + size] for i in range(0, len(body), size))
            ]
            self.send(
                200,
                {"Content-Type": "application/xml", "Transfer-Encoding": "chunked"},
                b"".join(chunks) + b"0\r\nx-trailer: 1\r\n\r\n",
            )

        def _error(self, status: int, code: str, message: str, **extra: str) -> None:
            self._reply(status, _xml_error(code, message, **extra))

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = bytearray()
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    data += self.rfile.read(size)
                    self.rfile.readline()
                body = bytes(data)
            else:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if "aws-chunked" in self.headers.get("Content-Encoding", ""):
                body = _decode_aws_chunked(body)
            return body

        def _route(self) -> tuple[str, str, dict[str, str]] | None:
            parts = urlsplit(self.path)
            q = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            path = parts.path[1:]
            host = self.headers.get("host", "").rpartition(":")[0] or self.headers.get("host", "")
            with server._lock:
                server.stats.hosts[host] = server.stats.hosts.get(host, 0) + 1
            label = host.split(".", 1)[0]
            if "." in host and label in server.access_points:  # an access point's own host: the path is the key
                return server.access_points[label], unquote(path), q
            bucket, _, key = path.partition("/")
            bucket = unquote(bucket)
            return server.access_points.get(bucket, bucket), unquote(key), q

        def _payer_refused(self, bucket: str) -> bool:
            """A Requester Pays bucket asked without a signed ``x-amz-request-payer: requester``."""
            payer = self.headers.get("x-amz-request-payer")
            signed = re.search(r"SignedHeaders=([^,]*)", self.headers.get("Authorization", ""))
            if payer is not None:
                with server._lock:
                    server.stats.with_payer_header += 1
            if bucket not in server.requester_pays:
                return False
            if payer == "requester" and signed is not None and "x-amz-request-payer" in signed.group(1).split(";"):
                return False
            with server._lock:
                server.stats.payer_refusals += 1
            return True

        def _handle(self) -> None:
            with server._lock:
                server.stats.requests += 1
                server._active += 1
                server.stats.max_concurrent = max(server.stats.max_concurrent, server._active)
            try:
                if server.latency:
                    time.sleep(server.latency)
                bucket, key, q = self._route()
                found = _ACCESS_KEY.search(self.headers.get("Authorization", ""))
                if found:
                    with server._lock:
                        keys = server.stats.access_keys
                        keys[found.group(1)] = keys.get(found.group(1), 0) + 1
                owner = self.headers.get("x-amz-expected-bucket-owner")
                if owner is not None:
                    with server._lock:
                        server.stats.with_owner_header += 1
                exists = bucket in server.buckets or bucket in server.writable
                if not bucket or not exists:
                    self._body() if self.command in ("PUT", "POST") else None
                    self._error(404, "NoSuchBucket", "The specified bucket does not exist", BucketName=bucket)
                    return
                if owner is not None and owner != server.owner:
                    with server._lock:
                        server.stats.owner_mismatches += 1
                    self._body() if self.command in ("PUT", "POST") else None
                    self._error(403, "AccessDenied", "Access Denied")
                    return
                if self._payer_refused(bucket):
                    self._body() if self.command in ("PUT", "POST") else None
                    self._error(403, "AccessDenied", "Access Denied")
                    return
                getattr(self, f"_{self.command.lower()}")(bucket, key, q)
            finally:
                with server._lock:
                    server._active -= 1

        dispatch = _handle

        # -- operations --
        def _get(self, bucket: str, key: str, q: dict[str, str]) -> None:
            if not key and "session" in q and is_directory_bucket(bucket):
                with server._lock:
                    server.stats.sessions += 1
                self._reply(200, _SESSION)
                return
            if not key:
                if q.get("list-type") != "2":
                    self._error(501, "NotImplemented", "only ListObjectsV2 is served")
                    return
                with server._lock:
                    n = server.stats.list_requests = server.stats.list_requests + 1
                    if server.record_params:
                        found = _ACCESS_KEY.search(self.headers.get("Authorization", ""))
                        server.stats.list_params.append({**q, "_access_key": found.group(1) if found else None})
                if server.throttle is not None and server.throttle(q, n):
                    with server._lock:
                        server.stats.throttled += 1
                    self._error(503, "SlowDown", "Please reduce your request rate.")
                    return
                failure = server.fault(q, n) if server.fault is not None else None
                if failure is not None:
                    self._error(failure[0], failure[1], f"injected {failure[1]}")
                    return
                if is_directory_bucket(bucket):
                    if "start-after" in q or "delimiter" in q:
                        self._error(400, "InvalidArgument", "directory buckets do not support this parameter here")
                        return
                    body = list_unordered(self._keyset(bucket), bucket, q)
                elif server.hollow is not None and server.hollow(q, n):
                    body = hollow_page(bucket, q)
                else:
                    body = list_objects_v2(self._keyset(bucket), bucket, q)
                if server.record_params:  # a scan of every answer: only when a test asks
                    with server._lock:
                        server.stats.listed_keys += body.count(b"<Contents>")
                if server.chunked:
                    self._reply_chunked(body)
                else:
                    self._reply(200, body)
                return
            if (bucket, key) not in server._objects:
                self._error(404, "NoSuchKey", "The specified key does not exist.", Key=key)
                return
            body = server.object_bytes(bucket, key)
            self._reply(200, body, {"Content-Type": "application/octet-stream", "ETag": '"synthetic"'})

        def _head(self, bucket: str, key: str, q: dict[str, str]) -> None:
            if key and (bucket, key) not in server._objects:
                self._reply(404)
                return
            size = len(server.object_bytes(bucket, key)) if key else 0
            self.send(200, {"Content-Length": str(size), "ETag": '"synthetic"'})

        def _keyset(self, bucket: str) -> KeySet:
            if bucket in server.buckets:
                return server.buckets[bucket]
            return ListedKeys(k for (b, k) in list(server._objects) if b == bucket)

        def _put(self, bucket: str, key: str, q: dict[str, str]) -> None:
            body = self._body()
            if bucket not in server.writable:
                self._error(403, "AccessDenied", "Access Denied (bucket is read-only here)")
                return
            etag = f'"{hashlib.md5(body).hexdigest()}"'
            path = server._spool_file(body)
            if "uploadId" in q:
                upload = server._uploads.get(q["uploadId"])
                if upload is None:
                    self._error(404, "NoSuchUpload", "The specified upload does not exist.")
                    return
                upload.parts[int(q["partNumber"])] = path
            else:
                with server._lock:
                    server._objects[(bucket, key)] = [path]
            self._reply(200, headers={"ETag": etag})

        def _post(self, bucket: str, key: str, q: dict[str, str]) -> None:
            self._body()
            if bucket not in server.writable:
                self._error(403, "AccessDenied", "Access Denied (bucket is read-only here)")
                return
            if "uploads" in q:
                upload_id = uuid.uuid4().hex
                with server._lock:
                    server._uploads[upload_id] = _Upload(bucket, key)
                body = (
                    f'<?xml version="1.0" encoding="UTF-8"?>\n<InitiateMultipartUploadResult xmlns="{S3_NS}">'
                    f"<Bucket>{escape(bucket)}</Bucket><Key>{escape(key)}</Key>"
                    f"<UploadId>{upload_id}</UploadId></InitiateMultipartUploadResult>"
                ).encode()
                self._reply(200, body)
                return
            if "uploadId" in q:
                with server._lock:
                    upload = server._uploads.pop(q["uploadId"], None)
                if upload is None:
                    self._error(404, "NoSuchUpload", "The specified upload does not exist.")
                    return
                with server._lock:
                    server._objects[(bucket, key)] = [upload.parts[n] for n in sorted(upload.parts)]
                    server.stats.completed_uploads += 1
                body = (
                    f'<?xml version="1.0" encoding="UTF-8"?>\n<CompleteMultipartUploadResult xmlns="{S3_NS}">'
                    f"<Bucket>{escape(bucket)}</Bucket><Key>{escape(key)}</Key>"
                    f"<ETag>&quot;synthetic-{len(upload.parts)}&quot;</ETag></CompleteMultipartUploadResult>"
                ).encode()
                self._reply(200, body)
                return
            self._error(501, "NotImplemented", "unsupported POST")

        def _delete(self, bucket: str, key: str, q: dict[str, str]) -> None:
            if "uploadId" in q:
                with server._lock:
                    upload = server._uploads.pop(q["uploadId"], None)
                    if upload is not None:
                        server.stats.aborted_uploads += 1
                if upload is None:
                    self._error(404, "NoSuchUpload", "The specified upload does not exist.")
                    return
                for path in upload.parts.values():
                    os.unlink(path)
            else:
                with server._lock:
                    server._objects.pop((bucket, key), None)
            self._reply(204)

    return Handler
