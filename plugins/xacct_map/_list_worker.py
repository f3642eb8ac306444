"""A listing worker process: signs, sends and parses ListObjectsV2 requests for the coordinator.

Started by :mod:`xacct_map.fast_list` as ``python -m xacct_map._list_worker``; speaks pickled,
length-prefixed frames on stdin (config, credentials, tasks) and stdout (pages, errors). Each
thread holds one request in flight, so latency overlaps; parsing runs in this process, off the
coordinator's GIL.

A task is one page of one key range ``(start_after, hi]``. The worker retries throttling and
transient failures of that same request (never moving on without its page), checks that the keys
strictly ascend after ``start_after`` within the prefix, and returns only the keys ``<= hi``.
"""

from __future__ import annotations

import gc
import operator
import pickle
import queue
import random
import struct
import sys
import threading
import time
from bisect import bisect_right
from itertools import islice

from xacct_map.sigv4 import GetSigner, host_header

_HEADER = struct.Struct("!I")
# Status codes and S3 error codes worth another try of the same request.
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
RETRY_CODES = frozenset(
    {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling",
     "ThrottlingException", "RequestTimeTooSkewed", "ExpiredToken", "TokenRefreshRequired"}
)


def write_frame(stream, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def read_frame(stream):
    """The next frame, or None at end of stream."""
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        return None
    return pickle.loads(data)


class Worker:
    def __init__(self, config: dict, out) -> None:
        import urllib3

        self.config = config
        self._out = out
        self._out_lock = threading.Lock()
        self._tasks: queue.Queue = queue.Queue()
        self._auth = None
        self._auth_lock = threading.Lock()
        url = config["base_url"]
        scheme, _, rest = url.partition("://")
        host_port, _, path = rest.partition("/")
        self._path = "/" + path
        self._url_base = f"{scheme}://{host_port}"
        self._host = host_header(scheme, host_port)
        pool_kw = {"maxsize": config["threads"], "block": True}
        if scheme == "https":
            verify = config.get("verify", True)
            if verify is False:
                urllib3.disable_warnings()
                pool_kw["cert_reqs"] = "CERT_NONE"
            else:
                pool_kw["cert_reqs"] = "CERT_REQUIRED"
                if isinstance(verify, str):
                    pool_kw["ca_certs"] = verify
        self._pool = urllib3.connection_from_url(self._url_base, **pool_kw)
        self._timeout = urllib3.Timeout(connect=config["connect_timeout"], read=config["read_timeout"])
        self._urllib3 = urllib3

    # -- credentials --
    def set_credentials(self, creds) -> None:
        auth = None if creds is None else GetSigner(*creds, region=self.config["region"])
        with self._auth_lock:
            self._auth = auth

    def _headers(self, path: str, query: str) -> dict:
        with self._auth_lock:
            auth = self._auth
        if auth is None:
            return dict(self.config["headers"])
        return auth.headers(self._host, path, query, self.config["headers"])

    # -- the work --
    def run(self, stdin) -> None:
        threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(self.config["threads"])]
        for t in threads:
            t.start()
        while True:
            msg = read_frame(stdin)
            if msg is None or msg[0] == "stop":
                break
            if msg[0] == "creds":
                self.set_credentials(msg[1])
            elif msg[0] == "task":
                self._tasks.put(msg[1:])
        for _ in threads:
            self._tasks.put(None)

    def _send(self, msg) -> None:
        with self._out_lock:
            write_frame(self._out, msg)

    def _loop(self) -> None:
        while (task := self._tasks.get()) is not None:
            tid = task[0]
            try:
                self._send(self._page(*task))
            except Exception as err:  # reported, the coordinator decides
                self._send(("error", tid, "other", f"{type(err).__name__}: {err}"))

    def _page(self, tid: int, start_after: str, token: str | None, hi: str | None):
        from xacct_map.list_page import PageFormatError, first_key, list_query, parse_error, parse_list_page

        cfg = self.config
        prefix = cfg["prefix"]
        query = list_query(prefix, start_after, token, cfg["page_size"])
        path = self._path + "?" + query
        attempts = cfg["max_attempts"]
        retries = 0
        for attempt in range(1, attempts + 1):
            problem = None
            try:
                response = self._pool.urlopen(
                    "GET", path, headers=self._headers(self._path, query), retries=False, redirect=False,
                    timeout=self._timeout, preload_content=True,
                )
            except (self._urllib3.exceptions.HTTPError, OSError) as err:
                problem = ("transport", 0, type(err).__name__, str(err))
            else:
                body = response.data
                if response.status == 200:
                    if hi is not None:
                        head = first_key(body)
                        if head is not None and head > hi and head > start_after:
                            # the whole page lies past this range: it belongs to later ranges
                            return ("page", tid, [], [], [], [], [], False, start_after, None, 0, retries)
                    try:
                        page = parse_list_page(body)
                    except (PageFormatError, UnicodeDecodeError) as err:
                        problem = ("transport", 200, "MalformedResponse", str(err))
                    else:
                        return self._result(tid, start_after, hi, page, retries)
                else:
                    code, message = parse_error(body)
                    problem = ("client", response.status, code or str(response.status), message)
                    if response.status not in RETRY_STATUS and code not in RETRY_CODES:
                        return ("error", tid, *problem)
            if attempt == attempts:
                return ("error", tid, *problem)
            retries += 1
            # full jitter: spreads retries of many ranges hitting the same throttled partition
            time.sleep(random.uniform(0, min(cfg["max_backoff"], cfg["base_backoff"] * 2**attempt)))
        raise AssertionError("unreachable")

    def _result(self, tid: int, start_after: str, hi: str | None, page, retries: int):
        keys = page.keys
        prefix = self.config["prefix"]
        if keys:
            # Exactly-once guard: strictly ascending, after start_after, inside the prefix (the
            # prefix's keys are contiguous in sorted order, so its ends suffice).
            if not (
                keys[0] > start_after
                and keys[0].startswith(prefix)
                and keys[-1].startswith(prefix)
                and all(map(operator.lt, keys, islice(keys, 1, None)))
            ):
                return ("error", tid, "order", _order_problem(keys, start_after, prefix))
            next_after, next_token = keys[-1], None
        else:
            next_after, next_token = start_after, page.next_token
        more = page.truncated
        cut = len(keys)
        if hi is not None and keys and keys[-1] > hi:
            cut = bisect_right(keys, hi)
            more = False
        if more and next_token is None and not keys:
            more = False  # truncated, yet no keys and no token: nothing to continue from
        # one object per distinct value: smaller frames and less memory where objects are made
        modified = list(map(sys.intern, page.last_modified[:cut]))
        classes = list(map(sys.intern, page.storage_classes[:cut]))
        return (
            "page", tid, keys[:cut] if cut < len(keys) else keys,
            page.sizes[:cut], page.etags[:cut], modified, classes,
            more, next_after, next_token, len(keys), retries,
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
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write into the frame stream
    # import while the coordinator is still probing the bucket, not after
    import urllib3  # noqa: F401

    import xacct_map.list_page  # noqa: F401

    # Each page makes a few thousand short-lived containers that reference counting frees; the
    # cycle collector would only walk them (~5 % of this process's CPU). A worker lives for one
    # listing, and the rare cycles (an exception's traceback on a retry) are a few KB each.
    gc.disable()
    config = read_frame(stdin)
    if config is None:
        return
    worker = Worker(config[1], stdout)
    worker.set_credentials(config[2])
    worker.run(stdin)


if __name__ == "__main__":
    main()
