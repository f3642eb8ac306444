"""A fault-injecting reverse proxy in front of the local AWS (moto's server): S3, STS and Step Functions.

Clients get the proxy's URL as their ``endpoint_url``; every request is forwarded to moto unless a
:class:`Rule` matches it. A rule names an operation (``"s3:UploadPart"``, ``"sts:AssumeRole"``,
``"states:StartExecution"``), which of its requests it hits (``nth``, counted from when the rule was
added, and ``times`` in a row) and what happens:

* ``reset``: the connection is closed before the request reaches AWS (nothing happened);
* ``reset_after``: forwarded (AWS did it), then the connection is closed: the reply is lost;
* ``timeout``: nothing is answered for ``delay`` seconds (longer than the client's read timeout);
* ``status``: an error answer (``status``, ``code``) in the service's own format, not forwarded;
* ``cut_body``: forwarded; the headers and half the body are sent, then the connection is closed;
* ``stall_body``: forwarded; the headers and half the body are sent, then nothing for ``delay`` s;
* ``body``: forwarded; the body is replaced by ``rewrite(body, proxy, request)`` (malformed or repeated pages);
* ``hold``: the request waits (``before`` forwarding, or after it with ``before=False``) until the rule's
  ``release`` event is set; ``entered`` is set when it arrives (for killing a process mid-call).

``max_keys`` makes every ListObjectsV2 without a delimiter ask for at most that many keys, so a
source of a few dozen objects is listed in many pages (S3 may answer fewer keys than asked anyway).
"""

from __future__ import annotations

import html
import http.client
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

ACTIONS = ("reset", "reset_after", "timeout", "status", "cut_body", "stall_body", "body", "hold")


@dataclass
class Rule:
    operation: str
    action: str
    nth: int = 1
    times: int = 1
    status: int = 500
    code: str = "InternalError"
    delay: float = 3.0
    before: bool = True
    rewrite: Callable[[bytes, FaultProxy, Request], bytes] | None = None
    when: Callable[[Request], bool] | None = None
    seen: int = 0
    fired: int = 0
    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}; one of {ACTIONS}")

    def hits(self, request: Request) -> bool:
        if request.operation != self.operation or (self.when is not None and not self.when(request)):
            return False
        self.seen += 1
        return self.nth <= self.seen < self.nth + self.times


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    operation: str = ""
    proxy: FaultProxy | None = None

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query, keep_blank_values=True)

    @property
    def access_key(self) -> str:
        auth = self.headers.get("authorization", "")
        return auth.split("Credential=", 1)[1].split("/", 1)[0] if "Credential=" in auth else ""


def operation_of(method: str, path: str, headers: dict[str, str], body: bytes) -> str:
    """The AWS operation a request is: ``<service>:<Operation>``."""
    target = headers.get("x-amz-target", "")
    if target.startswith("AWSStepFunctions."):
        return "states:" + target.split(".", 1)[1]
    if method == "POST" and b"Action=" in body and "x-amz-target" not in headers:
        action = parse_qs(body.decode(errors="replace")).get("Action", [""])[0]
        return ("sts:" if action in ("AssumeRole", "GetCallerIdentity") else "iam:") + action
    parts = urlsplit(path)
    query = parse_qs(parts.query, keep_blank_values=True)
    segments = [s for s in parts.path.split("/") if s]
    on_object = len(segments) > 1
    if "list-type" in query:
        return "s3:ListObjectsV2"
    if "uploads" in query:
        return "s3:CreateMultipartUpload" if method == "POST" else "s3:ListMultipartUploads"
    if "uploadId" in query:
        if method == "PUT":
            return "s3:UploadPart"
        return {"POST": "s3:CompleteMultipartUpload", "DELETE": "s3:AbortMultipartUpload", "GET": "s3:ListParts"}[
            method
        ]
    if not on_object:
        return {"HEAD": "s3:HeadBucket", "GET": "s3:ListObjects", "PUT": "s3:CreateBucket"}.get(method, "s3:" + method)
    return {"HEAD": "s3:HeadObject", "GET": "s3:GetObject", "PUT": "s3:PutObject", "DELETE": "s3:DeleteObject"}.get(
        method, "s3:" + method
    )


def error_body(operation: str, status: int, code: str) -> tuple[bytes, str]:
    """An error answer the way the service writes it: S3's and STS's XML, Step Functions' JSON."""
    message = f"injected by the fault proxy ({status} {code})"
    if operation.startswith("states:"):
        return json.dumps({"__type": code, "message": message}).encode(), "application/x-amz-json-1.0"
    if operation.startswith(("sts:", "iam:")):
        xml = (
            f'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
            f"<Code>{code}</Code><Message>{message}</Message></Error><RequestId>fault</RequestId></ErrorResponse>"
        )
        return xml.encode(), "text/xml"
    xml = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>'
    return xml.encode(), "application/xml"


class FaultProxy:
    """A reverse proxy on 127.0.0.1 in front of ``upstream`` (``http://127.0.0.1:PORT``)."""

    def __init__(self, upstream: str, *, max_keys: int | None = None):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.max_keys = max_keys
        self.latency: dict[str, float] = {}  # operation -> seconds added before forwarding
        self.rules: list[Rule] = []
        self.seen: list[str] = []  # every operation, in arrival order
        self.timeline: list[tuple[float, str]] = []  # (time.monotonic(), operation), for timing a case
        self.bodies: dict[str, list[bytes]] = {}  # answers to list requests, in order
        # ListObjectsV2 pages by where they lead (their NextContinuationToken, their last key: the next request's
        # continuation-token or start-after) and where they were asked from: a key range's (or a paginator's)
        # previous and first page, for a page that repeats or goes back.
        self.page_leading_to: dict[tuple[str, str], bytes] = {}
        self.asked_from: dict[tuple[str, str], tuple[str, str] | None] = {}
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FaultProxy:
        threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        for rule in self.rules:
            rule.release.set()
        self._server.shutdown()
        self._server.server_close()

    def add(self, operation: str, action: str, **kwargs) -> Rule:
        rule = Rule(operation, action, **kwargs)
        with self._lock:
            self.rules.append(rule)
        return rule

    def reset(self) -> None:
        with self._lock:
            for rule in self.rules:
                rule.release.set()
            self.rules.clear()
            self.latency.clear()
            self.seen.clear()
            self.timeline.clear()
            self.bodies.clear()
            self.page_leading_to.clear()
            self.asked_from.clear()

    def count(self, operation: str) -> int:
        return self.seen.count(operation)

    def _match(self, request: Request) -> Rule | None:
        with self._lock:
            self.seen.append(request.operation)
            self.timeline.append((time.monotonic(), request.operation))
            for rule in self.rules:
                if rule.hits(request):
                    rule.fired += 1
                    return rule
        return None

    def forward(self, request: Request) -> tuple[int, list[tuple[str, str]], bytes]:
        path = request.path
        if self.max_keys and request.operation == "s3:ListObjectsV2" and "delimiter" not in request.query:
            path = _with_max_keys(path, self.max_keys)
        conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            headers = {k: v for k, v in request.headers.items() if k not in ("transfer-encoding", "connection")}
            headers["content-length"] = str(len(request.body))
            conn.request(request.method, path, body=request.body, headers=headers)
            response = conn.getresponse()
            body = response.read()
            out = [(k, v) for k, v in response.getheaders() if k.lower() not in ("transfer-encoding", "connection")]
            if request.operation == "s3:ListObjectsV2":
                with self._lock:
                    self.bodies.setdefault(request.operation, []).append(body)
                    cursor = cursor_of(request)
                    token = re.search(rb"<NextContinuationToken>([^<]+)</NextContinuationToken>", body)
                    keys = re.findall(rb"<Key>([^<]*)</Key>", body)
                    leads = [("t", token.group(1).decode())] if token else []
                    leads += [("k", unquote(html.unescape(keys[-1].decode())))] if keys else []
                    for lead in leads:
                        self.page_leading_to[lead] = body
                        self.asked_from[lead] = cursor
            return response.status, out, body
        finally:
            conn.close()


class _Server(ThreadingHTTPServer):
    # The parallel engine opens dozens of connections at once: with the default backlog (5) the kernel
    # drops SYNs and the client's retransmission waits a second.
    request_queue_size = 128

    def handle_error(self, request, client_address) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):  # a client gone: expected
            super().handle_error(request, client_address)


def cursor_of(request: Request) -> tuple[str, str] | None:
    """Where a ListObjectsV2 request continues from: its continuation-token or start-after (None: the start)."""
    query = request.query
    if query.get("continuation-token"):
        return ("t", query["continuation-token"][0])
    if query.get("start-after"):
        return ("k", query["start-after"][0])
    return None


def _with_max_keys(path: str, max_keys: int) -> str:
    base, _, query = path.partition("?")
    items = [item for item in query.split("&") if item and not item.startswith("max-keys=")]
    return base + "?" + "&".join([*items, f"max-keys={max_keys}"])


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _handle(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            body = self._read_body()
            request = Request(self.command, self.path, headers, body, proxy=proxy)
            request.operation = operation_of(self.command, self.path, headers, body)
            rule = proxy._match(request)
            if request.operation in proxy.latency:
                time.sleep(proxy.latency[request.operation])
            if rule is None:
                self._send(*proxy.forward(request))
                return
            action = rule.action
            if action == "hold" and rule.before:
                rule.entered.set()
                rule.release.wait(60)
                self._send(*proxy.forward(request))
                return
            if action in ("reset", "timeout", "status"):
                if action == "reset":
                    self._drop()
                elif action == "timeout":
                    time.sleep(rule.delay)
                    self._drop()
                else:
                    payload, content_type = error_body(request.operation, rule.status, rule.code)
                    self._send(rule.status, [("Content-Type", content_type)], payload)
                return
            status, out, answer = proxy.forward(request)
            if action == "hold":
                rule.entered.set()
                rule.release.wait(60)
                self._send(status, out, answer)
            elif action == "reset_after":
                self._drop()
            elif action == "body":
                assert rule.rewrite is not None
                self._send(status, out, rule.rewrite(answer, proxy, request))
            else:  # cut_body, stall_body: the headers promise the whole body, half of it comes
                self._send_head(status, out, len(answer))
                self.wfile.write(answer[: len(answer) // 2])
                self.wfile.flush()
                if action == "stall_body":
                    time.sleep(rule.delay)
                self._drop()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        def _send_head(self, status: int, headers: list[tuple[str, str]], length: int) -> None:
            self.send_response_only(status)
            for key, value in headers:
                if key.lower() not in ("content-length", "date", "server"):
                    self.send_header(key, value)
            if self.command != "HEAD" or not any(k.lower() == "content-length" for k, _ in headers):
                self.send_header("Content-Length", str(length))
            else:
                self.send_header("Content-Length", dict((k.lower(), v) for k, v in headers)["content-length"])
            self.end_headers()

        def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self._send_head(status, headers, len(body))
            if self.command != "HEAD":
                self.wfile.write(body)
            self.wfile.flush()

        def _drop(self) -> None:
            """Reset the connection (RST, as a dropped connection or a crashed load balancer does)."""
            self.close_connection = True
            try:
                self.wfile.flush()
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
            except OSError:
                pass

    return Handler
