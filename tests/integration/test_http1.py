"""The listing workers' HTTP/1.1 client (xacct_map._engine.http1) against scripted loopback servers."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from s3_server import tls_certificate  # noqa: F401 (fixture)
from xacct_map._engine.http1 import Connection, HttpError


class Scripted:
    """A loopback server answering each request with the next of ``answers`` (raw bytes; None to
    hang up without answering; ``(bytes, "hang up")`` to hang up right after answering) and then
    waiting for the next request on the same connection;
    counts connections and keeps the requests it read."""

    def __init__(self, answers: list[bytes | None], tls: ssl.SSLContext | None = None):
        self.answers = list(answers)
        self.tls = tls
        self.connections = 0
        self.requests: list[bytes] = []

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{port}/bucket"
        return self

    async def __aexit__(self, *exc):
        self.server.close()

    async def _serve(self, reader, writer):
        self.connections += 1
        try:
            while True:
                self.requests.append(await reader.readuntil(b"\r\n\r\n"))
                if not self.answers:
                    await reader.read()  # nothing more to say: hold on until the client leaves
                    break
                answer = self.answers.pop(0)
                if answer is None:
                    break
                hang_up = isinstance(answer, tuple)  # (answer, "hang up"): close right after it
                answer = answer[0] if hang_up else answer
                writer.write(answer)
                await writer.drain()
                if hang_up or answer.startswith(b"HTTP/1.0"):
                    break  # an HTTP/1.0 answer without a length ends with the connection
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


def run(coro):
    return asyncio.run(coro)


def ok(body: bytes, *headers: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in headers)
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode() + body


def test_keep_alive_content_length_and_chunked_bodies_on_one_connection():
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nx-checksum: 1\r\n\r\n"
    )

    async def scenario():
        async with Scripted([ok(b"first"), chunked, ok(b"third")]) as server:
            conn = Connection(server.url)
            answers = [await conn.get("/bucket?list-type=2", {"Host": "h"}) for _ in range(3)]
            conn.close()
            return server, answers

    server, answers = run(scenario())
    assert answers == [(200, b"first"), (200, b"hello world"), (200, b"third")]
    assert server.connections == 1
    assert server.requests[0].startswith(b"GET /bucket?list-type=2 HTTP/1.1\r\nHost: h\r\n")


def test_connection_close_and_http_1_0_bodies_end_the_connection():
    async def scenario():
        answers = [ok(b"a", "Connection: close"), b"HTTP/1.0 503 Slow Down\r\n\r\n<Error/>", ok(b"c")]
        async with Scripted(answers) as server:
            conn = Connection(server.url)
            got = [await conn.get("/", {"Host": "h"}) for _ in range(3)]
            return got, server.connections

    # each answer after a closing one came on a new connection
    assert run(scenario()) == ([(200, b"a"), (503, b"<Error/>"), (200, b"c")], 3)


def test_a_connection_the_server_closed_while_idle_is_replaced_without_an_error():
    async def scenario():
        # the server answers (keep-alive by the headers) and then closes the idle connection
        async with Scripted([(ok(b"one"), "hang up"), ok(b"two")]) as server:
            conn = Connection(server.url)
            first = await conn.get("/", {"Host": "h"})
            await asyncio.sleep(0.2)  # the FIN arrives while the connection is idle
            return first, await conn.get("/", {"Host": "h"}), server.connections

    assert run(scenario()) == ((200, b"one"), (200, b"two"), 2)


def test_interim_100_continue_is_skipped():
    async def scenario():
        async with Scripted([b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"done")]) as server:
            return await Connection(server.url).get("/", {"Host": "h"})

    assert run(scenario()) == (200, b"done")


@pytest.mark.parametrize(
    "answer",
    [
        None,  # hung up before answering
        b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\nshort",  # body cut off by the connection's end
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  # bad chunk size
    ],
)
def test_broken_answers_raise_http_error_and_the_next_request_reconnects(answer):
    async def scenario():
        async with Scripted([answer]) as server:
            conn = Connection(server.url, read_timeout=5)
            with pytest.raises(HttpError):
                await conn.get("/", {"Host": "h"})
            server.answers = [ok(b"again")]
            return await conn.get("/", {"Host": "h"}), server.connections

    assert run(scenario()) == ((200, b"again"), 2)


def test_read_timeout_and_refused_connection_raise_http_error():
    async def scenario():
        async with Scripted([b"HTTP/1.1 200 OK\r\n"]) as server:  # the head never ends
            with pytest.raises(HttpError, match="TimeoutError"):
                await Connection(server.url, read_timeout=0.3).get("/", {"Host": "h"})
        with pytest.raises(HttpError, match="ConnectionRefused|OSError"):
            await Connection(server.url, connect_timeout=2).get("/", {"Host": "h"})  # the server is gone

    run(scenario())


def test_tls_verifies_against_the_given_bundle_and_only_skips_checks_when_told(tls_certificate):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_certificate)

    async def get(verify):
        async with Scripted([ok(b"secret")], tls=context) as server:
            return await Connection(server.url, verify=verify, connect_timeout=5).get("/", {"Host": "h"})

    assert run(get(tls_certificate[0])) == (200, b"secret")
    assert run(get(False)) == (200, b"secret")
    with pytest.raises(HttpError, match="CERTIFICATE_VERIFY_FAILED"):
        run(get(True))  # the system's CAs do not know this certificate
