"""A minimal HTTP/1.1 client on asyncio streams, for the listing workers' GET requests.

Only what ListObjectsV2 needs: one request at a time per keep-alive connection, bodies framed by
Content-Length, chunked transfer coding or the connection's end, TLS through :mod:`ssl` (asyncio
does the handshake and SNI) and timeouts. Any failure closes the connection; the next request
opens a new one.

Why not urllib3 with a thread per connection (what the workers used before): in a process that
also parses pages, each thread waited for the GIL after every socket read of a response, up to
the 5 ms switch interval each time - ~20 ms per page at 50 ms of latency. One thread running an
event loop reads whatever arrived and parses it, with no one to wait for.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from typing import cast
from urllib.parse import urlsplit

STREAM_LIMIT = 1 << 20  # bytes buffered per connection before reading pauses (a page is ~270 KB)


class HttpError(Exception):
    """The request got no complete HTTP answer (connection refused or reset, timeout, garbage)."""


@functools.lru_cache(maxsize=4)
def tls_context(verify: bool | str) -> ssl.SSLContext:
    """A client context: ``verify`` True (system CAs), a CA bundle path, or False (no checks).

    One per setting, shared by all connections: each loads the CA bundle (~1 MiB, a few ms).
    """
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)


class Connection:
    """One keep-alive connection to ``base_url``'s host; :meth:`get` opens it when needed.

    :param connect_timeout: seconds for TCP connect plus the TLS handshake.
    :param read_timeout: seconds for the whole answer to one request, from the moment it is sent.
    """

    def __init__(
        self, base_url: str, *, verify: bool | str = True, connect_timeout: float = 60.0, read_timeout: float = 60.0
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self._tls = tls_context(verify) if parts.scheme == "https" else None
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def get(self, target: str, headers: dict[str, str]) -> tuple[int, bytes]:
        """Send ``GET target`` with ``headers`` (which must include Host); ``(status, body)``.

        :raises HttpError: no complete answer; the connection is closed.
        """
        request = "".join([f"GET {target} HTTP/1.1\r\n", *(f"{k}: {v}\r\n" for k, v in headers.items()), "\r\n"])
        if self._reader is not None and self._reader.at_eof():
            self.close()  # the server closed it while idle (S3 does after a while): not a failure
        try:
            if self._writer is None:
                self._reader, self._writer = await asyncio.wait_for(
                    asyncio.open_connection(
                        self.host,
                        self.port,
                        ssl=self._tls,
                        limit=STREAM_LIMIT,
                        server_hostname=self.host if self._tls else None,
                    ),
                    self.connect_timeout,
                )
            cast(asyncio.StreamWriter, self._writer).write(request.encode("latin-1"))
            status, body, reusable = await asyncio.wait_for(self._response(), self.read_timeout)
        # OSError covers ssl.SSLError (and TimeoutError from Python 3.11, where asyncio.TimeoutError is
        # that builtin; Python 3.10's is its own class); EOFError asyncio.IncompleteReadError;
        # ValueError a garbled status line, header or chunk size
        except (OSError, asyncio.TimeoutError, EOFError, asyncio.LimitOverrunError, ValueError) as err:
            self.close()
            raise HttpError(f"{type(err).__name__}: {err}" if str(err) else type(err).__name__) from err
        if not reusable:
            self.close()
        return status, body

    async def _response(self) -> tuple[int, bytes, bool]:
        reader = cast(asyncio.StreamReader, self._reader)  # opened by get() before it awaits this
        while True:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            version, status = _status_line(head[0])
            if not 100 <= status < 200:  # skip interim answers (100 Continue)
                break
        fields: dict[str, str] = {}
        for line in head[1:]:
            if line:
                name, sep, value = line.partition(":")
                if not sep:
                    raise ValueError(f"malformed header line {line[:80]!r}")
                fields[name.strip().lower()] = value.strip()
        connection = fields.get("connection", "").lower()
        reusable = connection != "close" and (version == "HTTP/1.1" or connection == "keep-alive")
        if "chunked" in fields.get("transfer-encoding", "").lower():
            body = await _read_chunked(reader)
        elif "content-length" in fields:
            body = await reader.readexactly(int(fields["content-length"]))
        elif status in (204, 304):
            body = b""
        else:  # the body ends with the connection
            body = await reader.read()
            reusable = False
        return status, body, reusable

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()  # nothing to wait for: the next request opens a new connection
        self._reader = self._writer = None


def _status_line(line: str) -> tuple[str, int]:
    version, _, rest = line.partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise ValueError(f"not an HTTP/1.x status line: {line[:80]!r}")
    return version, int(code)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailer fields, if any
                pass
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise ValueError("malformed chunked body")
