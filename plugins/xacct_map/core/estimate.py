"""What a run will do and what it costs at list prices: objects, batches, invocations, requests, dollars.

Pure arithmetic over a manifest's counts and the price table ``core/data/prices.json`` (one file,
dated, easy to update; shipped in the wheel). The model, per run of the shipped state machine:

* child executions = batches (the batched layout: the manifest's batches; the flat layout:
  ``ceil(objects / max_items_per_batch)``, ItemBatcher's batches by count);
* Lambda invocations = child executions (one Task state per child; retries not counted);
* S3 GetObject requests = objects (the processor reads each once) + 1 (ItemReader reads the manifest);
  ListObjectsV2 requests = ``ceil(objects / 1000)`` (the manifest's listing);
* STANDARD children: ``parent_transitions + children * (1 + standard_child_transitions)`` state
  transitions (each child started counts one in the parent);
  EXPRESS children: the parent's transitions plus one per child started, and per child one
  request plus its duration (rounded up to 100 ms) x 64 MB;
* Lambda: requests, plus duration (seconds per batch x memory) when ``seconds_per_batch`` is given.

A Requester Pays source (``request_payer="requester"``) bills the reading account for what the
bucket owner would otherwise pay: the source's requests (one GetObject per object, the listing's
ListObjectsV2 pages) and the data transfer out of the bucket (free to the same Region, the
inter-Region price per GB from another): ``cost_requester_pays``, None for other sources.

Other data transfer (cross-Region reads of a bucket you do not pay for), CloudWatch Logs and KMS
requests are not included.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

PRICES_FILE = Path(__file__).with_name("data") / "prices.json"
KEYS_PER_LIST_PAGE = 1000


def load_prices(path: Path = PRICES_FILE) -> dict:
    """The price table (``as_of``, ``regions``, ``assumptions``)."""
    return json.loads(path.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Estimate:
    """One run's counts and its cost in dollars, STANDARD and EXPRESS children side by side."""

    objects: int
    bytes: int
    batches: int
    lambda_invocations: int
    s3_get_requests: int
    s3_list_requests: int
    state_transitions_standard: int
    cost_standard: float
    cost_express: float
    cost_lambda_requests: float
    cost_lambda_duration: float | None
    cost_s3_requests: float
    region: str
    prices_region: str
    prices_as_of: str
    cost_requester_pays: float | None = None  # the source's requests and transfer, billed to the reader
    cost_requester_pays_transfer: float = 0.0  # the transfer part (the requests are in cost_s3_requests)
    requester_pays_transfer_gb: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def _batches(objects: int, batches: int | None, layout: str, max_items_per_batch: int) -> int:
    if layout == "batched" and batches is not None:
        return int(batches)
    return math.ceil(objects / max(1, int(max_items_per_batch))) if objects else 0


def estimate(
    *,
    objects: int,
    total_bytes: int = 0,
    batches: int | None = None,
    layout: str = "batched",
    max_items_per_batch: int = 100,
    region: str = "us-east-1",
    lambda_memory_mb: int = 1024,
    seconds_per_batch: float | None = None,
    prices: dict | None = None,
    request_payer: str | None = None,
    source_region: str | None = None,
) -> Estimate:
    """The counts and list-price costs of processing ``objects`` objects in ``batches`` batches.

    :param request_payer: ``"requester"``: add the Requester Pays charges (see the module docstring).
    :param source_region: the source bucket's Region (transfer from another Region is charged).
    """
    prices = prices or load_prices()
    prices_region = region if region in prices["regions"] else prices["default_region"]
    p, a = prices["regions"][prices_region], prices["assumptions"]
    children = _batches(objects, batches, layout, max_items_per_batch)
    transitions = a["parent_transitions"] + children * (1 + a["standard_child_transitions"])
    express_seconds = math.ceil((seconds_per_batch or 0.1) * 1000 / a["express_billing_increment_ms"]) / 10
    express_gb_s = children * express_seconds * a["express_child_memory_mb"] / 1024
    express = (a["parent_transitions"] + children) * p["sfn_standard_per_transition"]
    express += children * p["sfn_express_per_request"] + express_gb_s * p["sfn_express_per_gb_second"]
    gets, lists = objects + 1, math.ceil(objects / KEYS_PER_LIST_PAGE)
    duration = None
    if seconds_per_batch is not None:
        duration = children * seconds_per_batch * lambda_memory_mb / 1024 * p["lambda_per_gb_second"]
    requester_pays, transfer_gb, transfer = None, 0.0, 0.0
    if request_payer == "requester":
        transfer_gb = total_bytes / 1024**3
        cross_region = bool(source_region) and source_region != region
        transfer = (
            transfer_gb * p["s3_transfer_inter_region_per_gb" if cross_region else "s3_transfer_same_region_per_gb"]
        )
        requester_pays = objects * p["s3_get_per_request"] + lists * p["s3_list_per_request"] + transfer
    return Estimate(
        objects=objects,
        bytes=total_bytes,
        batches=children,
        lambda_invocations=children,
        s3_get_requests=gets,
        s3_list_requests=lists,
        state_transitions_standard=transitions,
        cost_standard=transitions * p["sfn_standard_per_transition"],
        cost_express=express,
        cost_lambda_requests=children * p["lambda_per_request"],
        cost_lambda_duration=duration,
        cost_s3_requests=gets * p["s3_get_per_request"] + lists * p["s3_list_per_request"],
        region=region,
        prices_region=prices_region,
        prices_as_of=str(prices["as_of"]),
        cost_requester_pays=requester_pays,
        cost_requester_pays_transfer=transfer,
        requester_pays_transfer_gb=transfer_gb,
    )


def _usd(value: float) -> str:
    return f"${value:,.2f}" if value >= 1 else f"${value:.4f}"


def format_estimate(e: Estimate, seconds_per_batch: float | None = None) -> str:
    """A few lines for a log or a terminal."""
    where = e.region if e.region == e.prices_region else f"{e.region} (no prices in the table: {e.prices_region}'s)"
    duration = (
        f", duration {_usd(e.cost_lambda_duration)} at {seconds_per_batch} s per batch"
        if e.cost_lambda_duration is not None
        else " (+ duration: batches x seconds x GB x price; pass seconds per batch)"
    )
    return "\n".join(
        [
            f"estimate: {e.objects:,} objects, {e.bytes:,} bytes, {e.batches:,} batches = child executions "
            f"= Lambda invocations; {e.s3_get_requests:,} S3 GETs, {e.s3_list_requests:,} LISTs",
            f"  Step Functions  STANDARD children {_usd(e.cost_standard)} ({e.state_transitions_standard:,} "
            f"state transitions) | EXPRESS children {_usd(e.cost_express)}",
            f"  Lambda          requests {_usd(e.cost_lambda_requests)}{duration}",
            f"  S3              requests {_usd(e.cost_s3_requests)}",
            *(
                [
                    f"  Requester Pays  {_usd(e.cost_requester_pays)} billed to the reading account: the source's "
                    f"requests (in S3 above) and transfer {_usd(e.cost_requester_pays_transfer)} "
                    f"({e.requester_pays_transfer_gb:,.2f} GB; free within the bucket's Region)"
                ]
                if e.cost_requester_pays is not None
                else []
            ),
            f"  list prices of {where}, price table as of {e.prices_as_of} (xacct_map/core/data/prices.json); "
            "data transfer, logs and KMS not included",
        ]
    )


def estimate_manifest(
    manifest: dict, *, region: str | None, max_items_per_batch: int = 100, seconds_per_batch: float | None = None
) -> Estimate:
    """The estimate of a built manifest (the manifest task's XCom, ``ManifestSummary.as_dict()``).

    The flat and keys layouts record no batches: ItemBatcher makes them at run time, by
    ``max_items_per_batch`` (the deploy's ``--max-items-per-batch``, default 100). A Requester Pays
    source (``source.request_payer``) adds its charges, from the source's recorded Region.
    """
    source = manifest.get("source") or {}
    return estimate(
        objects=int(manifest.get("object_count") or 0),
        total_bytes=int(manifest.get("total_bytes") or 0),
        batches=manifest.get("batch_count"),
        layout=str(manifest.get("layout") or "batched"),
        max_items_per_batch=max_items_per_batch,
        region=region or "us-east-1",
        seconds_per_batch=seconds_per_batch,
        request_payer=source.get("request_payer"),
        source_region=source.get("region"),
    )
