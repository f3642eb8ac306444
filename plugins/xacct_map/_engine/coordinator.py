"""The parallel listing engine: key ranges listed at the same time by worker processes.

One coordinator (this module, in the caller's process) and a few worker processes
(:mod:`xacct_map._engine.worker`, each keeping several requests in flight). The key space under
the prefix is split into disjoint ranges ``(after, hi]``; each range is a *chain* of pages listed
with ``StartAfter`` = the last key seen and the prefix both ends of the range share (a worker's
request never reaches past it), one request in flight per chain. The first ranges come
from known boundaries (the common prefixes the caller discovered); whenever fewer chains are
running than ``parallelism``, the range whose page just arrived (or, when a range ends, the
furthest-reaching range that has listed keys) is cut a page apart (at points chosen by
:class:`xacct_map._engine.keyspace.KeySpace` from the latest page's density) and the new ranges
start at once: each range then lists one page and ends, so a small listing takes one round of
requests after its first page and a large one keeps ``parallelism`` pages in flight. Ranges never overlap and
together cover everything after the start, so each key is listed exactly once; the worker checks
every page ascends inside its range and the coordinator re-checks the ends.

A coordinator thread keeps requests going while the caller is busy with objects. Memory is
bounded: at most ``parallelism`` pages are in flight, at most :data:`OUTPUT_PAGES` wait for the
caller, and a chain's next page is only requested once its previous page has been received.

Objects come out grouped by range, each range in ascending order, ranges interleaved: the whole
listing is *not* globally sorted.
"""

from __future__ import annotations

import logging
import os
import queue
import subprocess
import sys
import threading
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, cast

from xacct_map._engine.frames import (
    Configure,
    Credentials,
    Failure,
    NewCredentials,
    Page,
    Stop,
    Task,
    WorkerConfig,
    read_frame,
    write_frame,
)
from xacct_map._engine.keyspace import KeySpace

log = logging.getLogger(__name__)

# The folder that contains the xacct_map package (this file is xacct_map/_engine/coordinator.py): the
# workers run ``python -m xacct_map._engine.worker`` and must import this same package.
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CREDENTIAL_CHECK_SECONDS = 10.0
# Pages ready for the caller. With the pages in flight (at most ``parallelism``) this bounds memory,
# and it covers a pause of the caller (a manifest part upload) without stalling the requests.
OUTPUT_PAGES = 8
PIPE_BYTES = 1 << 20  # Linux's default limit for an unprivileged process (fs.pipe-max-size)


@dataclass
class Endpoint:
    """Where and how to send ListObjectsV2 for one bucket, as botocore resolved it."""

    base_url: str  # scheme://host[:port]/path-to-bucket (path style) or / (virtual host)
    region: str
    headers: dict[str, str] = field(default_factory=dict)
    verify: bool | str = True
    connect_timeout: float = 60.0
    read_timeout: float = 60.0
    cuts: list[str] = field(default_factory=list)  # known range boundaries (e.g. common prefixes)
    descend: str | None = None  # a lone common prefix still to look into for boundaries


class WorkerError(RuntimeError):
    """A listing worker process died or failed in a way that is not an S3 answer."""


@dataclass
class _Chain:
    after: str
    hi: str | None
    pages: int = 0
    rounds: int = 0  # requests in sequence before this range's next one (its own and the ranges it came from)


class _Cuts(NamedTuple):
    """Range boundaries found while listing (:meth:`WorkerPool.add_cuts`; never on a pipe)."""

    cuts: list[str]


# What the coordinator's output queue carries: one page's parallel lists.
PageLists = tuple[list, list, list, list, list]


# -S: a worker needs the standard library and this package only (PYTHONPATH), and skipping site (.pth
# files, setuptools' hook) halves its start-up CPU.
WORKER_FLAGS: tuple[str, ...] = ("-S",)


class WorkerPool:
    """The worker processes, their pipes, and one reader thread per worker.

    Start it early (the processes import while the caller does other work, e.g. sends the first
    request), :meth:`configure` it once the endpoint is known, :meth:`close` it in any case (or
    :meth:`discard` it, unconfigured, when the listing turned out to need no worker).
    """

    def __init__(self, processes: int) -> None:
        self.results: queue.Queue = queue.Queue()
        self.procs: list[subprocess.Popen] = []
        self.inflight: list[int] = []
        self._closed = False
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
        try:
            for _ in range(processes):
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, *WORKER_FLAGS, "-m", "xacct_map._engine.worker"],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        env=env,
                        close_fds=True,
                    )
                )
                _widen_pipe(self.procs[-1].stdout)
                self.inflight.append(0)
        except BaseException:
            self.close()
            raise

    def configure(self, config: WorkerConfig, credentials: Credentials | None) -> None:
        for wid, proc in enumerate(self.procs):
            write_frame(proc.stdin, Configure(config, credentials))
            threading.Thread(target=self._read, args=(wid, proc), daemon=True).start()

    def _read(self, wid: int, proc: subprocess.Popen) -> None:
        try:
            while (msg := read_frame(proc.stdout)) is not None:
                self.results.put((wid, msg))
        except Exception as err:  # a broken pipe is reported like a death
            log.debug("worker %d reader: %s", wid, err)
        self.results.put((wid, None))

    def add_cuts(self, cuts: list[str]) -> None:
        """More range boundaries, found while the listing runs (any thread may call this): the
        ranges holding them are split at once, pages already on their way are trimmed."""
        self.results.put((-1, _Cuts(list(cuts))))

    def send_task(self, task: Task) -> int:
        # the least busy worker: spreads parsing over the processes
        wid = min(range(len(self.procs)), key=self.inflight.__getitem__)
        write_frame(self.procs[wid].stdin, task)
        self.inflight[wid] += 1
        return wid

    def broadcast(self, msg) -> None:
        for proc in self.procs:
            write_frame(proc.stdin, msg)

    def peak_rss_kib(self) -> list[int]:
        """Each worker's own peak RSS (Linux VmHWM), for stats; empty where unknown."""
        peaks = []
        for proc in self.procs:
            try:
                with open(f"/proc/{proc.pid}/status") as fh:
                    peaks += [int(line.split()[1]) for line in fh if line.startswith("VmHWM:")]
            except OSError:
                pass
        return peaks

    def cpu_seconds(self) -> float | None:
        """The workers' CPU seconds so far (Linux's ``/proc``; None where unknown)."""
        total = 0
        for proc in self.procs:
            try:
                with open(f"/proc/{proc.pid}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
                total += int(fields[11]) + int(fields[12])  # utime, stime
            except (OSError, ValueError, IndexError):
                return None
        return round(total / os.sysconf("SC_CLK_TCK"), 3)

    def discard(self) -> None:
        """Stop workers that were never given work, at once: a listing that fitted in its first page
        does not wait for them to finish importing."""
        if self._closed:
            return
        self._closed = True
        for proc in self.procs:
            proc.kill()  # only our own worker, by its handle
        for proc in self.procs:
            proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream:
                    stream.close()

    def close(self) -> None:
        """Tell the workers to stop and go on at once: they exit by themselves (their interpreters'
        shutdown took ~30 ms that the listing's caller waited for) and a thread reaps them."""
        if self._closed:
            return
        self._closed = True
        for proc in self.procs:
            try:
                write_frame(proc.stdin, Stop())
            except OSError:  # a worker that died already
                pass
            try:  # closed even when the Stop could not go: an unflushed pipe would complain when collected
                proc.stdin.close()  # type: ignore[union-attr]  # Popen(stdin=PIPE)
            except OSError:
                pass
        threading.Thread(target=_reap, args=(self.procs,), name="xacct-map-reaper", daemon=True).start()


def _reap(procs: list[subprocess.Popen]) -> None:
    """Wait for stopped workers to exit (killed after 2 s) and close their pipes."""
    deadline = time.monotonic() + 2.0
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()  # only our own worker, by its handle
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


def _widen_pipe(stream) -> None:
    """Let a worker's pipe hold several pages (Linux): a worker's write of a ~120 KB page then
    completes at once instead of waiting, 64 KB at a time, for this process's reader thread to get
    the GIL between reads (measured: ~28 ms per page spent that way at 50 ms latency)."""
    try:
        import fcntl

        fcntl.fcntl(stream.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, AttributeError, OSError):  # not Linux, or over the system's limit
        pass


def list_ranges(
    endpoint: Endpoint,
    *,
    prefix: str,
    credentials: Callable[[], Credentials | None],
    make_error: Callable[[int, str, str], Exception],
    make_order_error: Callable[[str], Exception],
    parallelism: int,
    processes: int,
    page_size: int = 1000,
    max_attempts: int = 10,
    base_backoff: float = 0.05,
    max_backoff: float = 20.0,
    start_after: str = "",
    up_to: str | None = None,
    initial_cuts: Sequence[str] = (),
    first_keys: Sequence[str] = (),
    pool: WorkerPool | None = None,
    stats: dict | None = None,
    details: bool = True,
) -> Generator[PageLists, None, None]:
    """Yield ``(keys, sizes, etags, last_modified, storage_classes)`` page by page.

    :param credentials: returns ``(access_key, secret_key, token)`` (None: unsigned), again now and then.
    :param make_error: builds the exception for an S3 error answer ``(status, code, message)``.
    :param page_size: keys per page (``MaxKeys``); ranges are cut to hold about a page each.
    :param up_to: the last key to list (None: the prefix's end); ``initial_cuts``: keys to split at first.
    :param first_keys: the caller's page ending at ``start_after``: the range after it is cut at once.
    :param pool: worker processes started earlier (``processes`` of them); closed at the end.
    :param details: False: no ETags and LastModified in the pages (empty lists).
    :param stats: if given, filled with counters (requests, retries, chains, cuts, keys parsed, rounds).
    """
    config = WorkerConfig(
        base_url=endpoint.base_url,
        region=endpoint.region,
        headers=endpoint.headers,
        verify=endpoint.verify,
        connect_timeout=endpoint.connect_timeout,
        read_timeout=endpoint.read_timeout,
        prefix=prefix,
        page_size=page_size,
        max_attempts=max_attempts,
        base_backoff=base_backoff,
        max_backoff=max_backoff,
        connections=max(1, -(-parallelism // processes)),
        details=details,
    )
    pool = pool if pool is not None else WorkerPool(processes)
    try:
        coordinator = _Coordinator(
            pool,
            parallelism=parallelism,
            credentials=credentials,
            make_error=make_error,
            make_order_error=make_order_error,
            counters=stats if stats is not None else {},
            page_size=page_size,
        )
        coordinator.start_chains(start_after, initial_cuts, first_keys, up_to)
        pool.configure(config, coordinator.creds)
    except BaseException:
        pool.close()
        raise
    # The schedule's own thread: requests go on while the caller is busy (the bounded queue pushes back).
    thread = threading.Thread(target=coordinator.run, name="xacct-map-listing", daemon=True)
    thread.start()
    try:
        while (item := coordinator.out.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        coordinator.end(thread)


_DONE = object()  # the end of the output queue


def _reach(chain: _Chain) -> tuple[bool, str]:
    """How far a range reaches (an open end furthest), for ordering."""
    return chain.hi is None, chain.hi or ""


class _Coordinator:
    """The schedule: key ranges (chains), the requests in flight, cuts, credentials, the output.

    :meth:`run` is the body of the coordinator thread; everything else runs inside it (but
    :meth:`add_chain` for the first ranges, before it starts).
    """

    def __init__(
        self,
        pool: WorkerPool,
        *,
        parallelism: int,
        credentials: Callable[[], Credentials | None],
        make_error: Callable[[int, str, str], Exception],
        make_order_error: Callable[[str], Exception],
        counters: dict,
        page_size: int = 1000,
    ) -> None:
        self.pool = pool
        self.page_size = page_size
        self.parallelism = parallelism
        self.credentials = credentials
        self.make_error = make_error
        self.make_order_error = make_order_error
        self.counters = counters
        counters.update(requests=0, retries=0, chains=0, cuts=0, parsed_keys=0, yielded_keys=0, rounds=0)
        self.creds = credentials()
        self.checked = time.monotonic()  # when the credentials were last read
        self.space = KeySpace()
        self.sample: tuple[str, str, int] | None = None  # the latest page's (first key, last key, keys)
        self.chains: dict[int, _Chain] = {}
        self.ready: deque[int] = deque()  # chains waiting for a free request slot
        self.inflight = 0
        self.out: queue.Queue = queue.Queue(maxsize=OUTPUT_PAGES)
        self.stop = threading.Event()
        self.started = self.last = time.monotonic()
        self.busy = 0.0  # integral of requests in flight over time, for stats

    def end(self, thread: threading.Thread) -> None:
        """Stop :meth:`run` in ``thread`` (done, or left early by the caller) and the workers."""
        self.stop.set()
        while thread.is_alive():
            try:  # unblock a put the coordinator may be waiting in
                self.out.get_nowait()
            except queue.Empty:
                thread.join(0.01)  # it may be ending already: a blocking get would wait out its timeout
        self.counters["worker_peak_rss_kib"] = self.pool.peak_rss_kib()
        self.counters["worker_cpu_seconds"] = self.pool.cpu_seconds()
        self.pool.close()

    def run(self) -> None:
        self.started = self.last = time.monotonic()
        try:
            while self.chains and not self.stop.is_set():
                self._send_ready()
                received = self._receive()
                if received is not None:
                    self._on_result(*received)
            self._finish_stats()
            self.out.put(_DONE)
        except BaseException as err:  # handed to the caller's thread
            self.out.put(err)

    # -- chains --
    def start_chains(
        self, start_after: str, cuts: Sequence[str], first_keys: Sequence[str], up_to: str | None = None
    ) -> None:
        """The first ranges: ``(start_after, up_to]``, split at ``cuts``, the first one cut further as
        if ``first_keys`` (a page ending at ``start_after``) had just arrived."""
        bounds = [c for c in sorted(set(cuts)) if start_after < c and (up_to is None or c < up_to)]
        waited = 1 if first_keys else 0  # the caller's page came first
        for lo, hi in zip([start_after, *bounds], [*bounds, up_to], strict=False):
            self.add_chain(lo, hi, waited)
        if first_keys and first_keys[-1] == start_after:
            self.cut(self.chains[0], list(first_keys))

    def add_chain(self, after: str, hi: str | None, rounds: int) -> None:
        tid = self.counters["chains"]
        self.counters["chains"] += 1
        self.chains[tid] = _Chain(after=after, hi=hi, rounds=rounds)
        self.ready.append(tid)

    def _apply_cuts(self, cuts: list[str]) -> None:
        """Split the ranges holding ``cuts`` (boundaries learnt while listing had begun)."""
        for cut in sorted(set(cuts)):
            for chain in list(self.chains.values()):
                if chain.after < cut and (chain.hi is None or cut < chain.hi):
                    self.add_chain(cut, chain.hi, chain.rounds)
                    chain.hi = cut
                    self.counters["late_cuts"] = self.counters.get("late_cuts", 0) + 1
                    break

    def cut(self, chain: _Chain, keys: list[str]) -> None:
        """Cut ``chain`` (a page of it, ``keys``, just arrived) while fewer ranges run than ``parallelism``."""
        if len(keys) >= 2:
            self.space.learn((keys[0], keys[len(keys) // 2], keys[-1]))
            self.sample = (keys[0], keys[-1], len(keys))
        deficit = self.parallelism - len(self.chains)
        if deficit > 0:
            self._split(chain, deficit)

    def _fill(self) -> None:
        """Request slots left free (a range ended) go to the furthest-reaching range that has listed keys
        (its next page, or the one on its way, keeps a page of its range; the rest is cut a page apart).
        A range that has listed nothing yet is not cut: past the end of the keys it would only make
        empty ranges, and another round of requests to wait for."""
        deficit = self.parallelism - len(self.chains)
        if deficit <= 0 or self.sample is None:
            return
        proven = [c for c in self.chains.values() if c.pages]
        if proven:
            self._split(max(proven, key=_reach), deficit)

    def _split(self, chain: _Chain, count: int) -> bool:
        """Cut up to ``count`` new ranges off ``chain``, a page apart from where its next page starts."""
        if self.sample is None:
            return False
        cuts = self.space.pages_ahead(self.sample, chain.after, chain.hi, count, self.page_size)
        if not cuts:
            return False
        self.counters["cuts"] += 1
        for lo, hi in zip(cuts, [*cuts[1:], chain.hi], strict=True):
            self.add_chain(lo, hi, chain.rounds)
        chain.hi = cuts[0]
        return True

    # -- requests and results --
    def _send_ready(self) -> None:
        while self.ready and self.inflight < self.parallelism:
            tid = self.ready.popleft()
            chain = self.chains[tid]
            self.pool.send_task(Task(tid, chain.after, chain.hi))
            self.counters["requests"] += 1
            self.inflight += 1

    def _receive(self) -> tuple[int, Page | Failure] | None:
        """The next worker result, or None (a timeout, or cuts that were applied)."""
        pool = self.pool
        try:
            wid, msg = pool.results.get(timeout=0.5)
        except queue.Empty:
            for proc in pool.procs:  # queue.Empty says nothing about why: not chained
                if proc.poll() is not None:
                    raise WorkerError(f"listing worker exited with status {proc.returncode}") from None
            return None
        if type(msg) is _Cuts:  # boundaries found while listing (WorkerPool.add_cuts)
            self._apply_cuts(msg.cuts)
            return None
        if msg is None:
            raise WorkerError(f"listing worker {wid} exited unexpectedly (status {pool.procs[wid].poll()})")
        return wid, msg

    def _on_result(self, wid: int, msg: Page | Failure) -> None:
        now = time.monotonic()
        self.busy += self.inflight * (now - self.last)
        self.last = now
        self.counters.setdefault("first_page_s", now - self.started)
        self.pool.inflight[wid] -= 1
        self.inflight -= 1
        if type(msg) is Failure:
            raise self._failure(msg)
        page = cast(Page, msg)
        chain = self.chains[page.tid]
        self.counters["retries"] += page.retries
        self.counters["requests"] += page.continued  # sent by the worker itself, after a page without keys
        self.counters["parsed_keys"] += page.parsed
        lists, more = self._in_range(chain, page)
        chain.pages += 1
        chain.rounds += 1
        if more:
            chain.after = page.after
            self.cut(chain, lists[0])
            self.ready.appendleft(page.tid)  # keep going where a page just came from
        else:
            del self.chains[page.tid]
            self.counters["rounds"] = max(self.counters["rounds"], chain.rounds)
        self._fill()
        if now - self.checked > CREDENTIAL_CHECK_SECONDS:
            self._refresh_credentials()
        if lists[0]:
            self._emit(lists)

    def _in_range(self, chain: _Chain, page: Page) -> tuple[PageLists, bool]:
        """The page's lists within ``chain``'s range, and whether the range goes on."""
        keys = page.keys
        lists: PageLists = (keys, page.sizes, page.etags, page.modified, page.classes)
        if not keys:
            return lists, page.more
        if keys[0] <= chain.after:
            raise self.make_order_error(f"page for range ({chain.after!r}, {chain.hi!r}] held {keys[0]!r}")
        if chain.hi is not None and keys[-1] >= chain.hi:
            # the range ends in this page (it may have been cut while the page was on its way: the
            # rest is another's)
            cut = bisect_right(keys, chain.hi)
            if cut == len(keys):
                return lists, False
            self.counters["trimmed_pages"] = self.counters.get("trimmed_pages", 0) + 1
            return (keys[:cut], page.sizes[:cut], page.etags[:cut], page.modified[:cut], page.classes[:cut]), False
        return lists, page.more

    def _failure(self, failure: Failure) -> Exception:
        if failure.kind in ("client", "transport"):
            return self.make_error(failure.status, failure.code, failure.message)
        if failure.kind == "order":
            return self.make_order_error(failure.message)
        return WorkerError(f"listing worker failed: {failure.message}")

    def _refresh_credentials(self) -> None:
        """Re-read the credentials; refreshed ones (a renewed assumed role) go to every worker."""
        self.checked = time.monotonic()
        fresh = self.credentials()
        if fresh != self.creds:
            self.creds = fresh
            self.pool.broadcast(NewCredentials(fresh))

    def _emit(self, lists: PageLists) -> None:
        """Hand a page to the caller, waiting while the output is full (unless stopped)."""
        self.counters["yielded_keys"] += len(lists[0])
        while not self.stop.is_set():
            try:
                self.out.put(lists, timeout=0.2)
                return
            except queue.Full:
                continue

    def _finish_stats(self) -> None:
        counters = self.counters
        counters["seconds"] = round(time.monotonic() - self.started, 3)
        counters["mean_inflight"] = round(self.busy / max(counters["seconds"], 1e-9), 1)
        counters["first_page_s"] = round(counters.get("first_page_s", 0.0), 3)
