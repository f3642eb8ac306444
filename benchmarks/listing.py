"""Listing benchmark at every bucket size: the seed's paginator vs ``xacct-map manifest``, whole processes.

One synthetic S3 server (:mod:`benchmarks.synthetic_s3`) on loopback per latency and render mode,
holding one bucket per size; every client runs as a fresh process, timed from its start to its exit
(interpreter, imports and client included: what a task pays)::

    python -m benchmarks.listing --targets --markdown           # the issue's targets, ~10 min on 2 CPUs
    python -m benchmarks.listing --keys 0 1000 10000 50000 --latency-ms 50 --render on-request prerendered
    python -m benchmarks.listing --quick                         # a smoke run of every part (seconds)

Clients:

* ``paginator`` - the seed's approach: boto3's ``list_objects_v2`` paginator, the keys in a list,
  one PutObject of the JSON array of keys.
* ``xacct`` - ``xacct-map manifest --source s3://bucket/ --dest s3://manifests/key --json``
  (``xacct_map.cli.main``, ending as the console script ends), repeated ``--repeat`` times, median shown.
* ``client`` - ``import boto3; boto3.client("s3")``: the fixed cost's yardstick.

Render modes: ``on-request`` (the server builds each page's XML when asked, spending CPU on the
same box, the harder test) and ``prerendered`` (pages built before the clients run, as a real S3
costs the client's box nothing). Reported per case: seconds, the ratio, requests each made,
client and worker CPU per key (microseconds; the client's above its own empty-prefix run), the
peak memory of the whole process tree (the client's VmHWM plus each worker's) and whether the
manifest holds exactly the generated keys (checked by the server afterwards, at no cost to the
clients). The fixed cost: ``xacct-map manifest`` of an empty and of a one-page prefix against
creating a boto3 S3 client, in the same server run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

SOURCE = "source-{n}"
MANIFESTS = "manifests"
ONE_PAGE = 1000
RENDERS = ("on-request", "prerendered")
# The targets: (keys, latency ms, render) -> ratio xacct-map / paginator at least
TARGETS = {
    (10_000, 50.0, "on-request"): 2.5,
    (50_000, 50.0, "on-request"): 8.0,
    (300_000, 50.0, "on-request"): 25.0,
    (500_000, 0.0, "on-request"): 20.0,
    (1_000_000, 0.0, "prerendered"): 30.0,
    (1_000_000, 50.0, "prerendered"): 40.0,
}
FIXED_COST_TARGET_S = 0.15  # an empty or one-page prefix: at most this much more than a boto3 client
MEMORY_TARGET_MIB = 150
_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "AKIDBENCHMARK", "AWS_SECRET_ACCESS_KEY": "benchmark-secret"}


# -- the clients, each in a process of its own ------------------------------------------------------
def run_child(args) -> None:
    """One client (``--child``); prints one JSON line: CPU, peak memory, the listing's stats."""
    result: dict = {}
    if args.child == "client":
        import boto3

        boto3.client("s3")
    elif args.child == "paginator":
        import boto3

        client = boto3.client("s3")
        keys = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=args.bucket):
            keys.extend(item["Key"] for item in page.get("Contents", ()))
        client.put_object(Bucket=MANIFESTS, Key=args.manifest, Body=json.dumps(keys).encode())
        result["keys"] = len(keys)
    else:
        from xacct_map.cli import main as xacct_map

        out = sys.stdout
        sys.stdout = sys.stderr  # the command's own output; this process's result line goes last
        argv = ["manifest", "--source", f"s3://{args.bucket}/", "--dest", f"s3://{MANIFESTS}/{args.manifest}"]
        code = xacct_map([*argv, "--on-empty", args.on_empty, "--json"])
        sys.stdout = out
        if code and not (code == 3 and args.on_empty == "skip"):  # 3: nothing to process, nothing written
            raise SystemExit(f"xacct-map manifest exited with {code}")
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    result.update(
        cpu_s=me.ru_utime + me.ru_stime,
        workers_cpu_s=kids.ru_utime + kids.ru_stime,  # the listing's worker processes (all ended)
        rss_kib=_vm_hwm_kib(),  # ru_maxrss would count the parent's RSS at spawn time
    )
    print(json.dumps(result))
    if args.child == "xacct":  # it ends as the console script does (xacct_map.cli.console): no teardown
        sys.stdout.flush()
        os._exit(0)


def _vm_hwm_kib() -> int:
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _spawn(kind: str, endpoint: str, bucket: str = "", manifest: str = "", on_empty: str = "run") -> dict:
    cmd = [sys.executable, "-m", "benchmarks.listing", "--child", kind, "--bucket", bucket, "--manifest", manifest]
    cmd += ["--on-empty", on_empty]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
        AWS_ENDPOINT_URL=endpoint,
        AWS_DEFAULT_REGION="us-east-1",
        **_CREDENTIALS,
    )
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
        env.pop(name, None)
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{kind} on {bucket or '-'} failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["seconds"] = seconds
    if kind == "xacct":  # the command's --json output: the manifest's metadata, listing block included
        meta = _json_lines(done.stderr)
        result["listing"] = (meta.get("source") or {}).get("listing") or {}
    return result


def _json_lines(text: str) -> dict:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return {}


# -- the driver -------------------------------------------------------------------------------------
def run(args) -> tuple[list[dict], list[tuple[str, dict]]]:
    """The cases: ``(rows, fixed costs)``; one server per latency and render mode."""
    from benchmarks.synthetic_s3 import GeneratedKeys, SyntheticS3

    _compile_bytecode()
    rows: list[dict] = []
    fixed_costs: list[tuple[str, dict]] = []
    key_sets: dict[tuple[int, str], GeneratedKeys] = {}
    for render in args.render:
        for latency in args.latency_ms:
            sizes = [n for n in sorted(set(args.keys)) if _wanted(args, n, latency, render)]
            if not sizes:
                continue
            for n in {*sizes, 0, ONE_PAGE}:
                if (n, render) not in key_sets:
                    key_sets[n, render] = GeneratedKeys(n)
                    if render == "prerendered":
                        key_sets[n, render].prerender()
            buckets = {SOURCE.format(n=n): key_sets[n, render] for n in {*sizes, 0, ONE_PAGE}}
            with SyntheticS3(buckets, writable=[MANIFESTS], latency=latency / 1000) as server:
                fixed = _fixed_cost(server, args, latency, render) if args.fixed_cost else None
                if fixed:
                    fixed_costs.append((f"{latency:g} ms | {render}", fixed))
                rows += [_case(server, key_sets[n, render], n, latency, render, args, fixed) for n in sizes]
    return rows, fixed_costs


def _wanted(args, n: int, latency: float, render: str) -> bool:
    return not args.targets or (n, latency, render) in TARGETS


def _fixed_cost(server, args, latency: float, render: str) -> dict:
    """Creating a boto3 client vs xacct-map manifest of an empty and of a one-page prefix (medians of
    ``--fixed-repeat`` rounds, the three taken in turn so that the box's drift touches them alike)."""
    _say(f"fixed cost, {latency:g} ms, {render} ...")
    # the empty prefix as the command runs by default (--on-empty skip: nothing to write, exit code 3)
    cases = (("empty", 0, "skip"), ("one_page", ONE_PAGE, "run"))
    client, runs = [], {name: [] for name, _, _ in cases}
    for i in range(args.fixed_repeat):
        client.append(_spawn("client", server.endpoint_url)["seconds"])
        for name, n, on_empty in cases:
            runs[name].append(_xacct(server, n, f"fixed-{name}-{i}", on_empty))
    result: dict = {"client_s": statistics.median(client)}
    for name, done in runs.items():
        result[name] = sorted(done, key=lambda r: r["seconds"])[len(done) // 2]
    _say(
        f"  client {result['client_s']:.2f} s, empty {result['empty']['seconds']:.2f} s, "
        f"one page {result['one_page']['seconds']:.2f} s"
    )
    return result


def _xacct(server, n: int, manifest: str, on_empty: str = "run") -> dict:
    before = server.stats.requests
    res = _spawn("xacct", server.endpoint_url, SOURCE.format(n=n), manifest, on_empty)
    res["requests"] = server.stats.requests - before
    res["manifest"] = manifest
    return res


def _case(server, keys, n: int, latency: float, render: str, args, fixed: dict | None) -> dict:
    from benchmarks.synthetic_s3 import key_checksum

    expected = (n, key_checksum(keys.keys()))
    row: dict = {"keys": n, "latency_ms": latency, "render": render, "target": TARGETS.get((n, latency, render))}
    if "paginator" in args.clients:
        _say(f"paginator: {n:,} keys, {latency:g} ms, {render} ...")
        before = server.stats.requests
        manifest = f"paginator-{n}-{latency:g}-{render}.json"
        res = _spawn("paginator", server.endpoint_url, SOURCE.format(n=n), manifest)
        res["requests"] = server.stats.requests - before
        res["exact"] = server.count_keys(MANIFESTS, manifest) == expected
        row["paginator"] = res
        _say(f"  {res['seconds']:.2f} s")
    if "xacct" in args.clients:
        _say(f"xacct-map: {n:,} keys, {latency:g} ms, {render} ...")
        runs = []
        for i in range(args.repeat):
            res = _xacct(server, n, f"xacct-{n}-{latency:g}-{render}-{i}.json")
            res["exact"] = server.count_keys(MANIFESTS, res["manifest"]) == expected
            runs.append(res)
        row["xacct"] = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
        row["xacct_runs_s"] = [round(r["seconds"], 2) for r in runs]
        row["empty_cpu_s"] = fixed["empty"]["cpu_s"] if fixed else None
        _say(f"  {', '.join(f'{s:.2f}' for s in row['xacct_runs_s'])} s")
    return row


def _compile_bytecode() -> None:
    """The package as bytecode, as an installed wheel has it (a run with PYTHONDONTWRITEBYTECODE set
    would otherwise compile it in every client process, ~0.4 s)."""
    import compileall

    import xacct_map

    compileall.compile_dir(os.path.dirname(xacct_map.__file__), quiet=1)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- the report -------------------------------------------------------------------------------------
def _tree_mib(res: dict) -> float:
    listing = res.get("listing") or {}
    return (res["rss_kib"] + sum(listing.get("worker_peak_rss_kib") or ())) / 1024


def _per_key_us(seconds: float | None, n: int) -> str:
    return "-" if seconds is None or n == 0 else f"{max(seconds, 0.0) * 1e6 / n:.2f}"


def report(rows: list[dict], fixed: list[tuple[str, dict]], args) -> str:
    lines = [
        f"`{' '.join(['python', '-m', 'benchmarks.listing', *args.argv])}`",
        "",
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}; the server shares the CPUs. "
        "Seconds: each client process from start to exit. xacct-map: median of "
        f"{args.repeat} runs. CPU per key in microseconds; the client's is above its own empty-prefix run.",
        "",
        "| keys | latency | render | paginator s | xacct-map s | ratio | target "
        "| requests paginator / xacct-map (rounds: requests in sequence) "
        "| xacct-map CPU µs/key client / workers | peak MiB (process tree) paginator / xacct-map | manifests |",
        "|" + "---|" * 11,
    ]
    for r in rows:
        p, x = r.get("paginator"), r.get("xacct")
        ratio = f"**{p['seconds'] / x['seconds']:.1f}x**" if p and x else "-"
        target = f"{r['target']:g}x" if r["target"] else "-"
        rounds = ((x or {}).get("listing") or {}).get("rounds")
        requests = f"{p['requests'] if p else '-'} / {x['requests'] if x else '-'}" + (f" ({rounds})" if rounds else "")
        if x:
            listing = x.get("listing") or {}
            workers = listing.get("worker_cpu_seconds") or x["workers_cpu_s"]  # None where /proc is missing
            above = x["cpu_s"] - r["empty_cpu_s"] if r.get("empty_cpu_s") is not None else None
            cpu = f"{_per_key_us(above, r['keys'])} / {_per_key_us(workers if workers else None, r['keys'])}"
        else:
            cpu = "-"
        memory = f"{_tree_mib(p) if p else 0:.0f} / {_tree_mib(x) if x else 0:.0f}"
        exact = all(c["exact"] for c in (p, x) if c)
        lines.append(
            f"| {r['keys']:,} | {r['latency_ms']:g} ms | {r['render']} | {p['seconds'] if p else 0:.2f} "
            f"| {x['seconds'] if x else 0:.2f} | {ratio} | {target} | {requests} | {cpu} | {memory} "
            f"| {'exact' if exact else 'MISMATCH'} |"
        )
    if fixed:
        lines += [
            "",
            f"Fixed cost (medians of {args.fixed_repeat} rounds; target: at most "
            f"{FIXED_COST_TARGET_S:g} s more than creating a boto3 S3 client, same run):",
            "",
            "| latency | render | boto3 S3 client s | xacct-map, empty prefix (default: nothing written) s "
            "| xacct-map, one page (1,000 keys) s "
            "| requests empty / one page | client CPU s empty / one page |",
            "|---|---|---|---|---|---|---|",
        ]
        for label, f in fixed:
            base = f["client_s"]
            e, o = f["empty"], f["one_page"]
            lines.append(
                f"| {label} | {base:.2f} | {e['seconds']:.2f} ({e['seconds'] - base:+.2f}) "
                f"| {o['seconds']:.2f} ({o['seconds'] - base:+.2f}) | {e['requests']} / {o['requests']} "
                f"| {e['cpu_s']:.2f} / {o['cpu_s']:.2f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict] | None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.listing", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--keys", type=int, nargs="+", default=[10_000, 50_000, 300_000], help="bucket sizes (default %(default)s)"
    )
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[50.0], help="per-request latencies")
    parser.add_argument("--render", nargs="+", choices=RENDERS, default=["on-request"], help="server render modes")
    parser.add_argument(
        "--targets",
        action="store_true",
        help="the issue's target cases only (10k, 50k, 300k at 50 ms and 500k at 0 ms on request; 1M "
        "prerendered at 0 and 50 ms) and the fixed cost at each latency and render: "
        "sets --keys, --latency-ms and --render",
    )
    parser.add_argument("--clients", nargs="+", choices=["paginator", "xacct"], default=["paginator", "xacct"])
    parser.add_argument("--repeat", type=int, default=3, help="xacct-map runs per case, median shown")
    parser.add_argument("--fixed-repeat", type=int, default=5, help="fixed-cost rounds, median shown")
    parser.add_argument("--no-fixed-cost", dest="fixed_cost", action="store_false", help="skip the fixed-cost runs")
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny sizes, 0 ms, one run each")
    parser.add_argument("--markdown", action="store_true", help="print the tables as markdown (for the README)")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--child", choices=["client", "paginator", "xacct"], help=argparse.SUPPRESS)
    parser.add_argument("--bucket", help=argparse.SUPPRESS)
    parser.add_argument("--manifest", help=argparse.SUPPRESS)
    parser.add_argument("--on-empty", default="run", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.child:
        run_child(args)
        return None
    if args.targets:
        args.keys = sorted({n for n, _, _ in TARGETS})
        args.latency_ms = sorted({lat for _, lat, _ in TARGETS})
        args.render = list(RENDERS)
    if args.quick:
        args.keys, args.latency_ms, args.repeat, args.fixed_repeat = [0, ONE_PAGE, 2500], [0.0], 1, 1
    rows, fixed = run(args)
    text = report(rows, fixed, args)
    print(text if args.markdown else text.replace("**", ""))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"cases": rows, "fixed_cost": dict(fixed)}, fh, indent=2)
    return rows


if __name__ == "__main__":
    main()
