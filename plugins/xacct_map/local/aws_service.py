"""The embedded two-account AWS emulator as a network service: ``python -m xacct_map.local.aws_service``.

For docker-compose (service ``aws``): other containers cannot run the local Lambda runtime inside
moto's own image (moto without Docker only echoes invocations; the runtime patches moto in-process),
so this runs :class:`~xacct_map.local.emulator.LocalAws` (moto's server + the real processor
handler), deploys both accounts exactly as ``xacct-map demo`` does, and makes it reachable from
other containers.

:class:`LocalAws` listens on 127.0.0.1 only (the Step Functions interpreter calls
``localhost:$MOTO_PORT`` from inside the process), so a small TCP forwarder publishes it on
``--host``/``--port``. Once deployed, the Airflow connections and variables for the *public*
endpoint are printed and written to ``--ready-file`` (the compose healthcheck waits for that file).
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import threading
from pathlib import Path


class TcpForwarder:
    """Accept connections on ``listen`` and pipe each to ``target``, both ways, byte for byte.

    :param listen: (host, port) to listen on.
    :param target: (host, port) to connect each accepted connection to.
    """

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]):
        self.target = target
        self._server = socket.create_server(listen, backlog=128)
        self.address = self._server.getsockname()[:2]
        self._thread = threading.Thread(target=self._accept, name="forwarder", daemon=True)
        self._closed = threading.Event()

    def start(self) -> TcpForwarder:
        self._thread.start()
        return self

    def close(self) -> None:
        self._closed.set()
        self._server.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        back = threading.Thread(target=self._pump, args=(upstream, client), daemon=True)
        back.start()
        self._pump(client, upstream)
        back.join()
        client.close()
        upstream.close()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        # Half-close: the other direction may still be sending (an HTTP response after the request).
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def public_airflow_environment(
    environment: dict[str, str], local_endpoint: str, public_endpoint: str
) -> dict[str, str]:
    """``LocalAws.airflow_environment`` with the emulator's loopback URL replaced by the one other hosts use."""
    return {k: v.replace(local_endpoint, public_endpoint) for k, v in environment.items()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m xacct_map.local.aws_service", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="interface to publish on (0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=4566, help="port to publish on (default 4566)")
    parser.add_argument(
        "--public-endpoint",
        default=None,
        help="URL other hosts reach this service at, e.g. http://aws:4566 (for the printed connections)",
    )
    parser.add_argument("--objects", type=int, default=1000, help="objects to seed in the source bucket (default 1000)")
    parser.add_argument("--lambda-workers", type=int, default=4, help="processor sandboxes (default 4)")
    parser.add_argument(
        "--ready-file",
        type=Path,
        default=None,
        help="write the deployment and the Airflow environment here (JSON) once deployed",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from xacct_map.local.emulator import LocalAws

    args = parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())  # `docker compose stop` sends SIGTERM
    if args.ready_file:
        args.ready_file.unlink(missing_ok=True)  # a restarted container must not look ready before it is
    with LocalAws(lambda_workers=args.lambda_workers) as aws:
        pipeline = aws.deploy(objects=args.objects)
        forwarder = TcpForwarder((args.host, args.port), ("127.0.0.1", aws.port)).start()
        public = args.public_endpoint or f"http://{args.host}:{forwarder.address[1]}"
        environment = public_airflow_environment(aws.airflow_environment(pipeline), aws.endpoint_url, public)
        info = {
            "listen": f"{args.host}:{forwarder.address[1]}",
            "endpoint": public,
            "pipeline": {**pipeline.as_dict(), "endpoint_url": public},
            "airflow_environment": environment,
        }
        print(
            f"xacct-map local AWS on {args.host}:{forwarder.address[1]} (public {public}): "
            f"{pipeline.objects} objects in s3://{pipeline.source_bucket}/{pipeline.source_prefix}",
            flush=True,
        )
        for key, value in environment.items():
            print(f"{key}={value}", flush=True)
        if args.ready_file:
            tmp = args.ready_file.with_name(args.ready_file.name + ".tmp")
            tmp.write_text(json.dumps(info, indent=2))
            tmp.replace(args.ready_file)
        try:
            stop.wait()
        finally:
            forwarder.close()
            if args.ready_file:
                args.ready_file.unlink(missing_ok=True)
    print("xacct-map local AWS stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
