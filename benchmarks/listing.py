"""Listing benchmark: S3Hook.list_keys vs a boto3 paginator vs xacct-map's manifest builder.

One command, one synthetic S3 server on loopback (:mod:`benchmarks.synthetic_s3`), each client in
a fresh subprocess (so imports, caches and peak RSS are its own)::

    .venv/bin/python -m benchmarks.listing --keys 1000000 --latency-ms 0 50
    .venv/bin/python -m benchmarks.listing --scale-keys 10000000     # (c) only, 10M keys

Clients:

(a) ``airflow``  - ``S3Hook.list_keys`` (what ``S3ListOperator`` runs): builds the list of keys.
(b) ``boto3``    - a ``list_objects_v2`` paginator loop collecting the keys, then one PutObject of
    the JSON array of keys (the project's first, "seed" manifest writer).
(c) ``xacct``    - ``xacct_map.core.listing.iter_objects`` streamed into
    ``xacct_map.core.manifest.write_batched_manifest`` (multipart upload).

Reported per client: keys/s over the listing (and the write, for b and c), the ratio to (b) at the
same latency, and peak RSS (``ru_maxrss``) of the client process and of its own children (the
listing workers of c). Manifests written by (b) and (c) are counted and checksummed by the server
afterwards, so verification costs the measured client nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from benchmarks.synthetic_s3 import GeneratedKeys, SyntheticS3, key_checksum

SOURCE = "source-bucket"
MANIFESTS = "manifests"
PRERENDER_MAX_KEYS = 2_000_000  # the server renders its pages ahead up to this many keys
CLIENTS = {
    "airflow": "(a) S3Hook.list_keys",
    "boto3": "(b) boto3 paginator + JSON array",
    "xacct": "(c) xacct-map manifest",
}


# -- the clients, each run in its own process -----------------------------------------------------
_CREDENTIALS = ("AKIDBENCHMARK", "benchmark-secret")


def _client(endpoint: str):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=_CREDENTIALS[0],
        aws_secret_access_key=_CREDENTIALS[1],
    )


def run_child(args) -> None:
    result: dict = {}
    if args.child == "airflow":
        os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="airflow-bench-"))
        os.environ["AWS_ENDPOINT_URL_S3"] = args.endpoint
        os.environ["AWS_ACCESS_KEY_ID"] = "AKIDBENCHMARK"
        os.environ["AWS_SECRET_ACCESS_KEY"] = "benchmark-secret"
        os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        hook = S3Hook(aws_conn_id=None)
        hook.get_conn()
        start = time.perf_counter()
        keys = hook.list_keys(bucket_name=SOURCE, prefix=args.prefix)
        result["keys"] = len(keys)
    elif args.child == "boto3":
        client = _client(args.endpoint)
        start = time.perf_counter()
        keys = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=SOURCE, Prefix=args.prefix):
            keys.extend(item["Key"] for item in page.get("Contents", ()))
        client.put_object(Bucket=MANIFESTS, Key=args.manifest, Body=json.dumps(keys).encode())
        result["keys"] = len(keys)
    else:
        from botocore.credentials import Credentials

        from xacct_map.core.listing import iter_objects
        from xacct_map.core.manifest import write_batched_manifest

        client = _client(args.endpoint)
        stats: dict = {}
        start = time.perf_counter()
        summary = write_batched_manifest(
            iter_objects(
                client,
                SOURCE,
                args.prefix,
                credentials=Credentials(*_CREDENTIALS),  # what _client signs with
                parallelism=args.parallelism,
                processes=args.processes,
                stats=stats,
            ),
            client,
            bucket=MANIFESTS,
            key=args.manifest,
            source_bucket=SOURCE,
            source_prefix=args.prefix,
        )
        result["keys"] = summary.object_count
        result["listing"] = stats
    result["seconds"] = time.perf_counter() - start
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    # ru_maxrss keeps the parent's RSS at fork time on Linux; VmHWM is this process's own peak
    result["ru_maxrss_kib"] = me.ru_maxrss
    result["rss_kib"] = _vm_hwm_kib("self") or me.ru_maxrss
    result["children_rss_kib"] = max((result.get("listing") or {}).get("worker_peak_rss_kib", [0]) or [0])
    result["cpu_s"] = me.ru_utime + me.ru_stime
    result["children_cpu_s"] = kids.ru_utime + kids.ru_stime
    print(json.dumps(result))


def _vm_hwm_kib(pid: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


# -- the driver -------------------------------------------------------------------------------
def _spawn(client: str, endpoint: str, manifest: str, args) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.listing",
        "--child",
        client,
        "--endpoint",
        endpoint,
        "--manifest",
        manifest,
        "--prefix",
        args.prefix,
        "--parallelism",
        str(args.parallelism),
        "--processes",
        str(args.processes or 0),
    ]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root)
    if done.returncode != 0:
        raise SystemExit(f"{client} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _mib(kib: int) -> float:
    return kib / 1024


def run(args) -> None:
    rows = []
    key_sets: dict[int, GeneratedKeys] = {}
    expected: dict[int, int] = {}

    def bench(n: int, latency_ms: float, clients: list[str]) -> None:
        if n not in key_sets:
            key_sets[n] = GeneratedKeys(n, flat=args.layout == "flat")
            if n <= PRERENDER_MAX_KEYS:  # the ratio runs; 10M would take ~2.4 GB
                key_sets[n].prerender()
        keys = key_sets[n]
        with SyntheticS3({SOURCE: keys}, writable=[MANIFESTS], latency=latency_ms / 1000) as server:
            base = None
            for client in clients:
                # (c) runs for seconds, so a burst of other load on the box moves one run a lot: it runs
                # --repeat times and the median run is reported ((a) and (b) run for minutes).
                runs = [
                    measure(server, keys, n, latency_ms, client) for _ in range(args.repeat if client == "xacct" else 1)
                ]
                row = sorted(runs, key=lambda r: r["keys_per_s"])[len(runs) // 2]
                row["runs_keys_per_s"] = [round(r["keys_per_s"]) for r in runs]
                if client == "boto3":
                    base = row["keys_per_s"]
                row["vs_b"] = (row["keys_per_s"] / base) if base else None
                rows.append(row)

    def measure(server, keys, n: int, latency_ms: float, client: str) -> dict:
        manifest = f"bench/{client}-{n}-{latency_ms}.json"
        before = server.stats.requests
        print(f"  {CLIENTS[client]}: {n:,} keys, {latency_ms:g} ms ...", end="", flush=True, file=sys.stderr)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        res = _spawn(client, server.endpoint_url, manifest, args)
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        server_cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
        rate = res["keys"] / res["seconds"]
        print(f" {rate:,.0f} keys/s", file=sys.stderr)
        verified = ""
        if client != "airflow":
            if n not in expected:
                expected[n] = key_checksum(keys.keys())
            count, checksum = server.count_keys(MANIFESTS, manifest)
            ok = count == n and checksum == expected[n]
            verified = f"{count:,} keys, {'exact' if ok else 'MISMATCH'}"
            if not ok:
                print(
                    f"  !! manifest {manifest}: {count} keys, "
                    f"checksum {'ok' if checksum == expected[n] else 'differs'}",
                    file=sys.stderr,
                )
        elif res["keys"] != n:
            verified = f"listed {res['keys']:,} != {n:,}"
        return {
            "client": CLIENTS[client],
            "keys": n,
            "latency_ms": latency_ms,
            "seconds": res["seconds"],
            "keys_per_s": rate,
            "vs_b": None,
            "rss_mib": _mib(res["rss_kib"]),
            "children_rss_mib": _mib(res["children_rss_kib"]),
            "requests": server.stats.requests - before,
            "verified": verified,
            "cpu": (res["cpu_s"], res["children_cpu_s"], server_cpu),
            "ru_maxrss_mib": _mib(res["ru_maxrss_kib"]),
            "listing": res.get("listing"),
        }

    order = [c for c in ("boto3", "airflow", "xacct") if c in args.clients]
    if not args.scale_only:
        for latency in args.latency_ms:
            bench(args.keys, latency, order)
    if args.scale_keys:
        bench(args.scale_keys, args.scale_latency_ms, ["xacct"])
    _report(rows, args)


def _report(rows: list[dict], args) -> None:
    print(f"\ncommand: {' '.join([os.path.basename(sys.executable), '-m', 'benchmarks.listing', *sys.argv[1:]])}")
    print(
        f"layout: {args.layout}; machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; "
        "server shares the CPUs\n"
    )
    head = (
        "| client | keys | latency | seconds | keys/s | vs (b) | peak RSS | workers' peak RSS "
        "| CPU s client/workers/server | requests | manifest |"
    )
    print(head)
    print("|" + "---|" * 11)
    for r in rows:
        vs = f"{r['vs_b']:.1f}x" if r["vs_b"] else "-"
        kids = f"{r['children_rss_mib']:.0f} MiB" if r["children_rss_mib"] else "-"
        print(
            f"| {r['client']} | {r['keys']:,} | {r['latency_ms']:g} ms | {r['seconds']:.1f} | {r['keys_per_s']:,.0f} "
            f"| {vs} | {r['rss_mib']:.0f} MiB | {kids} | {'/'.join(f'{c:.1f}' for c in r['cpu'])} "
            f"| {r['requests']:,} | {r['verified'] or '-'} |"
        )
    for r in rows:
        if len(r.get("runs_keys_per_s") or ()) > 1:
            print(
                f"\n{r['client']} {r['keys']:,} @ {r['latency_ms']:g} ms, keys/s of each run (median reported): "
                f"{', '.join(f'{k:,}' for k in r['runs_keys_per_s'])}"
            )
    for r in rows:
        if r["listing"]:
            print(f"\n{r['client']} {r['keys']:,} @ {r['latency_ms']:g} ms listing stats: {r['listing']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.listing", description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000, help="keys in the source bucket (default %(default)s)")
    parser.add_argument(
        "--latency-ms",
        type=float,
        nargs="+",
        default=[0.0, 50.0],
        help="per-request latency(ies) to run at (default %(default)s)",
    )
    parser.add_argument("--clients", nargs="+", default=list(CLIENTS), choices=list(CLIENTS))
    parser.add_argument(
        "--scale-keys", type=int, default=0, help="also run (c) alone over this many keys (e.g. 10000000)"
    )
    parser.add_argument("--scale-latency-ms", type=float, default=0.0)
    parser.add_argument("--scale-only", action="store_true", help="only the --scale-keys run")
    parser.add_argument("--prefix", default="")
    parser.add_argument(
        "--layout",
        choices=["hive", "flat"],
        default="hive",
        help="hive: warehouse/events/date=YYYY-MM-DD/part-N... (20,000 keys per date); "
        "flat: warehouse/events/part-N... (no folders to discover)",
    )
    parser.add_argument("--parallelism", type=int, default=32, help="(c)'s iter_objects parallelism")
    parser.add_argument("--processes", type=int, default=0, help="(c)'s worker processes (0: CPU count)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of (c) per setting, the median reported (default %(default)s)"
    )
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--child", choices=list(CLIENTS), help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--manifest", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.processes = args.processes or None
    if args.child:
        run_child(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
