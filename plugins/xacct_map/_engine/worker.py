"""A listing worker process: signs, sends and parses ListObjectsV2 requests for the coordinator.

Started by :mod:`xacct_map._engine.coordinator` as ``python -m xacct_map._engine.worker``; speaks the
typed messages of :mod:`xacct_map._engine.frames` on stdin (configuration, credentials, tasks) and
stdout (pages, failures). One thread runs an event loop with ``connections`` keep-alive HTTP
connections (:mod:`xacct_map._engine.http1`), one request in flight on each, so latency overlaps;
parsing runs in this process, off the coordinator's GIL.

A task is one page of one key range ``(start_after, hi]``. The worker retries throttling and
transient failures of that same request (never moving on without its page), checks that the keys
strictly ascend after ``start_after`` within the prefix, and returns only the keys ``<= hi``.
"""

from __future__ import annotations

import asyncio
import gc
import operator
import random
import sys
from bisect import bisect_right
from itertools import islice
from urllib.parse import urlsplit

from xacct_map._engine.frames import (
    Configure,
    Credentials,
    Failure,
    NewCredentials,
    Page,
    Stop,
    Task,
    WorkerConfig,
    read_frame_async,
    write_frame,
)
from xacct_map._engine.http1 import Connection, HttpError
from xacct_map._engine.page import (
    ListPage,
    PageFormatError,
    first_key,
    list_query,
    parse_error,
    parse_list_page,
    range_prefix,
)
from xacct_map._engine.sigv4 import GetSigner, host_header

# Status codes and S3 error codes worth another try of the same request.
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
RETRY_CODES = frozenset(
    {
        "SlowDown",
        "InternalError",
        "ServiceUnavailable",
        "RequestTimeout",
        "Throttling",
        "ThrottlingException",
        "RequestTimeTooSkewed",
        "ExpiredToken",
        "TokenRefreshRequired",
    }
)


class Worker:
    def __init__(self, config: WorkerConfig, out) -> None:
        self.config = config
        self._out = out
        self._auth: GetSigner | None = None
        url = urlsplit(config.base_url)
        self._path = url.path or "/"
        self._host = host_header(url.scheme, url.netloc)

    # -- credentials --
    def set_credentials(self, creds: Credentials | None) -> None:
        self._auth = None if creds is None else GetSigner(*creds, region=self.config.region)

    def _headers(self, query: str) -> dict:
        headers = {"Host": self._host, "Accept-Encoding": "identity"}
        if self._auth is None:
            return headers | self.config.headers
        return headers | self._auth.headers(self._host, self._path, query, self.config.headers)

    # -- the work --
    async def run(self, reader: asyncio.StreamReader) -> None:
        cfg = self.config
        tasks: asyncio.Queue[Task] = asyncio.Queue()
        loops = [
            asyncio.create_task(
                self._loop(
                    tasks,
                    Connection(
                        cfg.base_url,
                        verify=cfg.verify,
                        connect_timeout=cfg.connect_timeout,
                        read_timeout=cfg.read_timeout,
                    ),
                )
            )
            for _ in range(cfg.connections)
        ]
        while (msg := await read_frame_async(reader)) is not None and type(msg) is not Stop:
            if type(msg) is Task:
                tasks.put_nowait(msg)
            elif type(msg) is NewCredentials:
                self.set_credentials(msg.credentials)
        for loop in loops:
            loop.cancel()

    async def _loop(self, tasks: asyncio.Queue[Task], connection: Connection) -> None:
        while True:
            task = await tasks.get()
            result: Page | Failure
            try:
                result = await self._page(connection, task)
            except Exception as err:  # reported, the coordinator decides
                result = Failure(task.tid, "other", message=f"{type(err).__name__}: {err}")
            # one whole frame at a time: this is the only thread writing
            write_frame(self._out, result)

    async def _page(self, connection: Connection, task: Task) -> Page | Failure:
        """One page of the task's range, asked for with the range's own prefix (:func:`range_prefix`).

        A page without keys that S3 marks truncated is followed by its continuation token here: the
        token belongs to this request's prefix, so it never leaves the worker.
        """
        prefix = range_prefix(self.config.prefix, task.start_after, task.hi)
        token, retries, continued = None, 0, 0
        while True:
            page, tries = await self._fetch(connection, task, prefix, token)
            retries += tries
            if isinstance(page, Failure):
                return page
            if page is None:  # the whole page lies past this range: it belongs to later ranges
                return Page(task.tid, [], [], [], [], [], False, task.start_after, 0, retries, continued)
            if page.keys or not page.truncated or not page.next_token:
                return self._result(task, prefix, page, retries, continued)
            token, continued = page.next_token, continued + 1

    async def _fetch(
        self, connection: Connection, task: Task, prefix: str, token: str | None
    ) -> tuple[ListPage | Failure | None, int]:
        """``(the page, retries)``, trying again on throttling and transient failures (None: the page
        starts past the task's range)."""
        cfg = self.config
        query = list_query(prefix, task.start_after, token, cfg.page_size)
        target = self._path + "?" + query
        for attempt in range(1, cfg.max_attempts + 1):
            problem: Failure
            try:
                status, body = await connection.get(target, self._headers(query))
            except HttpError as err:
                problem = Failure(task.tid, "transport", 0, "ConnectionError", str(err))
            else:
                if status == 200:
                    if task.hi is not None:
                        head = first_key(body)
                        if head is not None and head > task.hi and head > task.start_after:
                            return None, attempt - 1
                    try:
                        return parse_list_page(body, details=cfg.details), attempt - 1
                    except (PageFormatError, UnicodeDecodeError) as err:
                        problem = Failure(task.tid, "transport", 200, "MalformedResponse", str(err))
                else:
                    code, message = parse_error(body)
                    problem = Failure(task.tid, "client", status, code or str(status), message)
                    if status not in RETRY_STATUS and code not in RETRY_CODES:
                        return problem, attempt - 1
            if attempt == cfg.max_attempts:
                return problem, attempt - 1
            # full jitter: spreads retries of many ranges hitting the same throttled partition
            await asyncio.sleep(random.uniform(0, min(cfg.max_backoff, cfg.base_backoff * 2**attempt)))
        raise AssertionError("unreachable")

    def _result(self, task: Task, prefix: str, page: ListPage, retries: int, continued: int) -> Page | Failure:
        tid, start_after, hi = task.tid, task.start_after, task.hi
        keys = page.keys
        if keys and not (
            # Exactly-once guard: strictly ascending, after start_after, inside the prefix (the
            # prefix's keys are contiguous in sorted order, so its ends suffice).
            keys[0] > start_after
            and keys[0].startswith(prefix)
            and keys[-1].startswith(prefix)
            and all(map(operator.lt, keys, islice(keys, 1, None)))
        ):
            return Failure(tid, "order", message=_order_problem(keys, start_after, prefix))
        more = page.truncated and bool(keys)  # truncated without keys or token: nothing to continue from
        cut = len(keys)
        if hi is not None and keys and keys[-1] >= hi:  # the range ends in this page
            cut = bisect_right(keys, hi)
            more = False
        # one object per distinct value: smaller frames and less memory where objects are made
        modified = list(map(sys.intern, page.last_modified[:cut]))
        classes = list(map(sys.intern, page.storage_classes[:cut]))
        return Page(
            tid,
            keys[:cut] if cut < len(keys) else keys,
            page.sizes[:cut],
            page.etags[:cut],
            modified,
            classes,
            more,
            keys[-1] if keys else start_after,
            len(keys),
            retries,
            continued,
        )


def _order_problem(keys: list[str], start_after: str, prefix: str) -> str:
    previous = start_after
    for key in keys:
        if key <= previous:
            return f"S3 listed {key!r} after {previous!r}"
        if not key.startswith(prefix):
            return f"S3 listed {key!r} outside prefix {prefix!r}"
        previous = key
    return "S3 listed keys out of order"


def main() -> None:
    stdout = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write into the frame stream
    # Each page makes a few thousand short-lived containers that reference counting frees; the
    # cycle collector would only walk them (~5 % of this process's CPU). A worker lives for one
    # listing, and the rare cycles (an exception's traceback on a retry) are a few KB each.
    gc.disable()
    asyncio.run(_serve(stdout))


async def _serve(stdout) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    first = await read_frame_async(reader)
    if type(first) is not Configure:  # the coordinator went away (or a stop) before configuring
        return
    worker = Worker(first.config, stdout)
    worker.set_credentials(first.credentials)
    await worker.run(reader)


if __name__ == "__main__":
    main()
