"""The fault cases: what is injected where, and which outcome each one must have.

Every case ends in one of two outcomes, and says which:

* **A**: the run finishes: every source key exactly once in the manifest (its sidecar matching it),
  exactly one execution, no multipart upload left open.
* **B**: the task fails with an error that names the failed call and says what to do; no manifest
  object (and no sidecar) at the run's key, no multipart upload left open, no execution started.
  Then a retry without the fault must reach A.

``test_faults.py`` runs them against the local AWS behind :class:`fault_proxy.FaultProxy`; the
README's "Failure guarantees" table is :func:`table` (``python scripts/failure_table.py --write``).
Standard library only: importable without the test dependencies.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

OUTCOMES = {
    "A": "finishes: every key once, one execution",
    "B": "fails cleanly: the call and what to do named; no manifest, no open upload",
}

# Which ListObjectsV2 requests a listing fault hits: the pages, not the delimiter probe.
_PAGE = "s3:ListObjectsV2"
_SIDECAR = "s3:PutObject"


def _not_probe(request) -> bool:
    return "delimiter" not in request.query


def _continues(request) -> bool:
    """A page request that follows an earlier page of its key range (not a range's first request)."""
    from fault_proxy import cursor_of

    return cursor_of(request) in request.proxy.page_leading_to


def _sidecar(request) -> bool:
    return request.path.split("?", 1)[0].endswith(".meta.json")


def _truncated_xml(body: bytes, proxy, request) -> bytes:
    return body[: len(body) // 2]  # a well-framed answer whose XML stops in the middle


def _not_xml(body: bytes, proxy, request) -> bytes:
    return b"<html><body><h1>502 Bad Gateway</h1></body></html>"


def _previous_page(body: bytes, proxy, request) -> bytes:
    """The page before this one (of the same key range), again."""
    from fault_proxy import cursor_of

    cursor = cursor_of(request)
    return proxy.page_leading_to.get(cursor, body) if cursor else body


def _first_page(body: bytes, proxy, request) -> bytes:
    """The first page of this key range, again."""
    from fault_proxy import cursor_of

    cursor, first = cursor_of(request), body
    while cursor in proxy.page_leading_to:  # back through the range's pages to the one asked from its start
        first, cursor = proxy.page_leading_to[cursor], proxy.asked_from.get(cursor)
    return first


@dataclass(frozen=True)
class Fault:
    """One proxy rule: :meth:`fault_proxy.FaultProxy.add` arguments."""

    operation: str
    action: str
    nth: int = 1
    times: int = 1
    status: int = 500
    code: str = "InternalError"
    before: bool = True
    rewrite: Callable | None = None
    when: Callable | None = None

    def kwargs(self) -> dict:
        keys = ("nth", "times", "status", "code", "before", "rewrite", "when")
        return {k: getattr(self, k) for k in keys}


@dataclass(frozen=True)
class Case:
    id: str
    phase: str  # listing, uploading, starting (what the task was doing)
    fault: str  # what goes wrong, for the README
    outcome: str  # "A" or "B"
    faults: tuple[Fault, ...] = ()
    call: str = ""  # B: the call the error must name
    advice: str = ""  # B: a regex the error must match (what to do)
    engines: tuple[str, ...] = ("auto",)  # listing engines the case runs with
    signal: str = ""  # kill cases: SIGTERM or SIGKILL
    hold: str = ""  # kill cases: the call the process is killed during
    special: str = ""  # cases with their own setup: "expiry"
    after_retry: bool = False  # A is reached by the task's retry (Airflow's retries), not by the first try
    note: str = ""  # how the outcome comes about, for the README

    @property
    def call_name(self) -> str:
        return self.call.split(":", 1)[-1]


BOTH = ("parallel", "paginator")
RETRY = r"can be retried|retry the task|[Rr]etry"


def _page(action: str, **kwargs) -> Fault:
    return Fault(_PAGE, action, nth=kwargs.pop("nth", 3), when=kwargs.pop("when", _not_probe), **kwargs)


CASES: tuple[Case, ...] = (
    # -- listing the source --------------------------------------------------------------------
    Case(
        "list-reset",
        "listing",
        "connection reset before a page's answer",
        "A",
        (_page("reset"),),
        engines=BOTH,
        note="the page is asked for again",
    ),
    Case(
        "list-reset-mid-body",
        "listing",
        "connection reset in the middle of a page's body",
        "A",
        (_page("cut_body"),),
        engines=BOTH,
        note="the page is asked for again",
    ),
    Case(
        "list-timeout",
        "listing",
        "no answer to a page (read timeout)",
        "A",
        (_page("timeout"),),
        engines=BOTH,
        note="the page is asked for again",
    ),
    Case(
        "list-timeout-mid-body",
        "listing",
        "a page's body stops half-way (read timeout)",
        "A",
        (_page("stall_body"),),
        engines=BOTH,
        note="the page is asked for again",
    ),
    Case("list-500", "listing", "500 InternalError on a page", "A", (_page("status"),), engines=BOTH, note="retried"),
    Case(
        "list-503-slowdown",
        "listing",
        "503 SlowDown on a page",
        "A",
        (_page("status", status=503, code="SlowDown"),),
        engines=BOTH,
        note="retried with backoff",
    ),
    Case(
        "list-throttled-for-good",
        "listing",
        "503 SlowDown on every try of a page",
        "B",
        (_page("status", status=503, code="SlowDown", times=1000),),
        call=_PAGE,
        advice=RETRY,
        engines=BOTH,
        note="after the retries, the task fails retryably; the upload is aborted",
    ),
    Case(
        "list-truncated-xml",
        "listing",
        "a page whose XML stops in the middle (200, well framed)",
        "A",
        (_page("body", rewrite=_truncated_xml),),
        engines=BOTH,
        note="the page is asked for again",
    ),
    Case(
        "list-malformed-xml",
        "listing",
        "a page that is not XML at all (a proxy's HTML error page)",
        "A",
        (_page("body", rewrite=_not_xml),),
        engines=BOTH,
        note="the page is asked for again",
    ),
    Case(
        "list-malformed-for-good",
        "listing",
        "every try of a page answers HTML",
        "B",
        (_page("body", rewrite=_not_xml, times=1000),),
        call=_PAGE,
        advice=RETRY,
        engines=BOTH,
        note="the task fails retryably; the upload is aborted",
    ),
    Case(
        "list-repeated-page",
        "listing",
        "a page repeats the previous page",
        "B",
        (_page("body", rewrite=_previous_page, nth=2, when=_continues),),
        call=_PAGE,
        advice=RETRY,
        engines=BOTH,
        note="keys out of order: refused rather than a manifest with a key twice",
    ),
    Case(
        "list-backwards",
        "listing",
        "a page goes back to the first page",
        "B",
        (_page("body", rewrite=_first_page, nth=2, when=_continues),),
        call=_PAGE,
        advice=RETRY,
        engines=BOTH,
        note="keys out of order: refused rather than a manifest with keys twice",
    ),
    Case(
        "list-credentials-expire",
        "listing",
        "the assumed role's credentials expire mid-listing",
        "A",
        engines=BOTH,
        special="expiry",
        note="refreshed before they expire (botocore), the workers re-read them",
    ),
    Case(
        "list-expired-token",
        "listing",
        "S3 rejects the role's token as expired (400 ExpiredToken)",
        "B",
        (_page("status", status=400, code="ExpiredToken", times=1000),),
        call=_PAGE,
        advice=RETRY,
        engines=BOTH,
        note="the error says the credentials expired; a retry gets fresh ones",
    ),
    Case("sts-500", "listing", "500 on AssumeRole", "A", (Fault("sts:AssumeRole", "status"),), note="retried"),
    Case(
        "sts-denied",
        "listing",
        "AssumeRole denied (403 AccessDenied)",
        "B",
        (Fault("sts:AssumeRole", "status", status=403, code="AccessDenied", times=1000),),
        call="AssumeRole",
        advice=r"trust policy",
        note="names the role and the trust policy to fix",
    ),
    # -- writing the manifest -----------------------------------------------------------------
    Case(
        "create-500",
        "uploading",
        "500 on CreateMultipartUpload",
        "A",
        (Fault("s3:CreateMultipartUpload", "status"),),
        note="retried",
    ),
    Case(
        "create-reply-lost",
        "uploading",
        "CreateMultipartUpload succeeds, its answer is lost",
        "A",
        (Fault("s3:CreateMultipartUpload", "reset_after"),),
        note="the retry opens a second upload; the orphan is aborted when the manifest completes",
    ),
    Case(
        "create-slowdown-for-good",
        "uploading",
        "503 SlowDown on every CreateMultipartUpload",
        "B",
        (Fault("s3:CreateMultipartUpload", "status", status=503, code="SlowDown", times=1000),),
        call="CreateMultipartUpload",
        advice=RETRY,
        note="nothing was created",
    ),
    Case(
        "part-reset",
        "uploading",
        "connection reset during UploadPart",
        "A",
        (Fault("s3:UploadPart", "reset"),),
        note="the part is sent again",
    ),
    Case(
        "part-timeout",
        "uploading",
        "no answer to UploadPart (read timeout)",
        "A",
        (Fault("s3:UploadPart", "timeout"),),
        note="the part is sent again",
    ),
    Case(
        "part-reply-lost",
        "uploading",
        "UploadPart succeeds, its answer is lost",
        "A",
        (Fault("s3:UploadPart", "reset_after"),),
        note="the same part number is sent again (it replaces itself)",
    ),
    Case(
        "part-slowdown-for-good",
        "uploading",
        "503 SlowDown on every UploadPart",
        "B",
        (Fault("s3:UploadPart", "status", status=503, code="SlowDown", times=1000),),
        call="UploadPart",
        advice=RETRY,
        note="the upload is aborted",
    ),
    Case(
        "complete-500",
        "uploading",
        "500 on CompleteMultipartUpload",
        "A",
        (Fault("s3:CompleteMultipartUpload", "status"),),
        note="retried",
    ),
    Case(
        "complete-reply-lost",
        "uploading",
        "CompleteMultipartUpload succeeds, its answer is lost",
        "A",
        (Fault("s3:CompleteMultipartUpload", "reset_after"),),
        note="the retry gets NoSuchUpload; the object at the key is checked to be this upload's, byte count "
        "and upload token",
    ),
    Case(
        "complete-reply-lost-for-good",
        "uploading",
        "CompleteMultipartUpload succeeds, every answer is lost",
        "A",
        (Fault("s3:CompleteMultipartUpload", "reset_after", times=1000),),
        note="the object at the key is checked to be this upload's",
    ),
    Case(
        "complete-slowdown-for-good",
        "uploading",
        "503 SlowDown on every CompleteMultipartUpload",
        "B",
        (Fault("s3:CompleteMultipartUpload", "status", status=503, code="SlowDown", times=1000),),
        call="CompleteMultipartUpload",
        advice=RETRY,
        note="the upload is aborted",
    ),
    Case(
        "sidecar-reply-lost",
        "uploading",
        "the metadata sidecar's PutObject answer is lost",
        "A",
        (Fault(_SIDECAR, "reset_after", when=_sidecar),),
        note="PutObject is sent again (idempotent)",
    ),
    Case(
        "sidecar-fails",
        "uploading",
        "503 SlowDown on every try of the metadata sidecar's PutObject",
        "B",
        (Fault(_SIDECAR, "status", status=503, code="SlowDown", times=1000, when=_sidecar),),
        call="PutObject",
        advice=RETRY,
        note="the completed manifest is deleted again: no manifest without its sidecar",
    ),
    # -- starting the execution ---------------------------------------------------------------
    Case(
        "start-500",
        "starting",
        "500 on StartExecution",
        "A",
        (Fault("states:StartExecution", "status"),),
        note="retried",
    ),
    Case(
        "start-throttled",
        "starting",
        "ThrottlingException on StartExecution",
        "A",
        (Fault("states:StartExecution", "status", status=400, code="ThrottlingException"),),
        note="retried",
    ),
    Case(
        "start-throttled-for-good",
        "starting",
        "ThrottlingException on every StartExecution",
        "B",
        (Fault("states:StartExecution", "status", status=400, code="ThrottlingException", times=1000),),
        call="StartExecution",
        advice=RETRY,
        note="no execution started; a retry starts it",
    ),
    Case(
        "start-reply-lost",
        "starting",
        "StartExecution starts it, its answer is lost",
        "A",
        (Fault("states:StartExecution", "reset_after"),),
        note="the retry (same name, same input) returns the same execution",
    ),
    Case(
        "start-reply-lost-for-good",
        "starting",
        "StartExecution starts it, every answer is lost",
        "A",
        (Fault("states:StartExecution", "reset_after", times=1000),),
        after_retry=True,
        note="the task fails naming StartExecution; its retry attaches to the execution, never a second one",
    ),
    # -- the task process killed --------------------------------------------------------------
    *(
        Case(f"kill-{sig.lower()}-{phase}", phase, f"{sig} while {phase}", "A", signal=sig, hold=hold, note=note)
        for phase, hold in (
            ("listing", _PAGE),
            ("uploading", "s3:UploadPart"),
            ("starting", "states:StartExecution"),
        )
        for sig, note in (
            (
                "SIGTERM",
                {
                    "listing": "on_kill aborts the upload; the retry builds it again",
                    "uploading": "on_kill aborts the upload; the retry builds it again",
                    "starting": "the retry attaches to the execution the killed try started",
                }[phase],
            ),
            (
                "SIGKILL",
                {
                    "listing": "the open upload is aborted by the retry's manifest",
                    "uploading": "the open upload is aborted by the retry's manifest",
                    "starting": "the retry attaches to the execution the killed try started",
                }[phase],
            ),
        )
    ),
)

assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"

START, END = "<!-- failure-guarantees:start -->\n", "<!-- failure-guarantees:end -->"
README = Path(__file__).resolve().parents[2] / "README.md"


def table() -> str:
    """The README's "Failure guarantees" table, one row per case."""
    rows = ["| phase | fault | outcome | how |", "|---|---|---|---|"]
    for case in CASES:
        outcome = f"**{case.outcome}**" + (f" (error names `{case.call_name}`)" if case.outcome == "B" else "")
        outcome += " after the task's retry" if case.after_retry or case.signal else ""
        rows.append(f"| {case.phase} | {case.fault} | {outcome} | {case.note} |")
    return "\n".join(rows)


def with_table(readme: str) -> str:
    head, rest = readme.split(START, 1)
    return head + START + table() + "\n" + END + rest.split(END, 1)[1]


def _check_ids() -> None:
    for case in CASES:
        if not re.fullmatch(r"[a-z0-9-]+", case.id):
            raise ValueError(case.id)
        if case.outcome not in OUTCOMES or (case.outcome == "B") != bool(case.call):
            raise ValueError(f"{case.id}: outcome B needs the call it names, A none")


_check_ids()
