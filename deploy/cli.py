"""`tuneship serve` and `tuneship metrics`."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser("serve", help="run the embedded Triton server on a model repository")
    serve.add_argument("--model-repository", type=Path, default=Path("model_repository"))
    serve.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (0: a free port)")
    serve.add_argument("--http-port", type=int, default=8000, help="HTTP port (0: a free port)")
    serve.add_argument("--metrics-port", type=int, default=8002, help="Prometheus metrics port (0: a free port)")
    serve.add_argument("--model-control-mode", choices=("none", "poll", "explicit"), default="none")
    serve.add_argument("--load-model", action="append", default=[], help="model to load in explicit mode")
    serve.add_argument("--ready-timeout", type=float, default=180.0, help="seconds to wait for readiness")
    serve.add_argument("--log-file", type=Path, default=None, help="write Triton's log here")
    serve.add_argument("--log-verbose", type=int, default=0)
    serve.set_defaults(handler=run_serve)

    serve.add_argument("--admin-key", default=None,
                       help="restrict load/unload and model config to callers sending this key "
                            "(header tuneship-admin-key; also read from TUNESHIP_ADMIN_KEY)")

    deploy = subparsers.add_parser("deploy", help="manage models on a running Triton server")
    actions = deploy.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (("status", "models and versions the server knows, with their state"),
                         ("load", "load (or reload) a model"), ("unload", "unload a model"),
                         ("publish", "export a checkpoint as the next version and switch the server to it")):
        parser = actions.add_parser(action, help=text)
        parser.add_argument("--url", default="127.0.0.1:8001", help="Triton gRPC endpoint")
        parser.add_argument("--admin-key", default=None, help="key for restricted APIs (or TUNESHIP_ADMIN_KEY)")
        if action in ("load", "unload"):
            parser.add_argument("model")
        if action == "publish":
            parser.add_argument("checkpoint", type=Path)
            parser.add_argument("--name", default="sentiment")
            parser.add_argument("--repository", type=Path, default=Path("model_repository"),
                                help="the repository the server serves")
            parser.add_argument("--mode", choices=("explicit", "poll"), default="explicit",
                                help="the server's --model-control-mode")
            parser.add_argument("--precision", choices=("auto", "fp32", "fp16", "int8"), default="auto")
            parser.add_argument("--keep", type=int, default=3, help="versions to keep on disk")
            parser.add_argument("--timeout", type=float, default=180.0)
        parser.set_defaults(handler=run_deploy)

    metrics = subparsers.add_parser("metrics", help="print a Triton server's request counts and latency")
    metrics.add_argument("--url", default="http://127.0.0.1:8002/metrics", help="Triton metrics endpoint")
    metrics.add_argument("--model", action="append", default=[], help="only these models")
    metrics.set_defaults(handler=run_metrics)


def run_serve(args: argparse.Namespace) -> int:
    from tuneship.deploy.server import ServeOptions, TritonServer

    options = ServeOptions(
        model_repository=args.model_repository,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        metrics_port=args.metrics_port,
        model_control_mode=args.model_control_mode,
        load_models=tuple(args.load_model),
        ready_timeout_s=args.ready_timeout,
        log_file=args.log_file,
        log_verbose=args.log_verbose,
        admin_key=args.admin_key or os.environ.get("TUNESHIP_ADMIN_KEY"),
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    server = TritonServer(options)
    print(f"starting Triton on {options.model_repository} ...", flush=True)
    with server:
        print(
            f"Triton ready: gRPC {server.grpc_url}  HTTP {server.http_url}  metrics {server.metrics_url}\n"
            f"log: {server.log_path}  (Ctrl-C to stop)",
            flush=True,
        )
        while not stop.wait(0.5):
            if not server.running:
                print(f"error: Triton stopped unexpectedly: {server.failure_reason()}", file=sys.stderr)
                return 1
        print("stopping Triton ...", flush=True)
    print("stopped", flush=True)
    return 0


def run_deploy(args: argparse.Namespace) -> int:
    from tuneship.client import ClientOptions, TritonClient
    from tuneship.deploy.server import ADMIN_HEADER

    key = args.admin_key or os.environ.get("TUNESHIP_ADMIN_KEY")
    options = ClientOptions(timeout_s=60.0, headers={ADMIN_HEADER: key} if key else {})
    with TritonClient(args.url, options) as client:
        if args.action == "status":
            print(f"{'model':<32}{'version':>8}  state")
            for entry in sorted(client.get_model_repository_index(), key=lambda e: (e["name"], e.get("version", ""))):
                reason = f"  ({entry['reason']})" if entry.get("reason") else ""
                print(f"{entry['name']:<32}{entry.get('version', '-'):>8}  {entry.get('state', 'UNKNOWN')}{reason}")
        elif args.action == "load":
            client.load_model(args.model)
            print(f"loaded {args.model}")
        elif args.action == "unload":
            client.unload_model(args.model)
            print(f"unloaded {args.model}")
        else:
            from tuneship.deploy.publish import publish
            from tuneship.exporter import ExportOptions

            result = publish(client, ExportOptions(checkpoint=args.checkpoint, name=args.name,
                                                   repository=args.repository, precision=args.precision,
                                                   keep=args.keep), args.mode, args.timeout)
            print(f"serving {result.name}: " + ", ".join(f"{m} v{v}" for m, v in result.versions.items())
                  + f" (was {', '.join(f'v{v}' for v in result.previous.values())}; {result.seconds:.0f}s)")
    return 0


def run_metrics(args: argparse.Namespace) -> int:
    from tuneship.deploy.metrics import scrape_metrics

    metrics = scrape_metrics(args.url)
    names = args.model or sorted(metrics.models)
    header = f"{'model':<28}{'requests':>10}{'failed':>8}{'inferences':>12}{'executions':>12}{'avg batch':>11}"
    print(header + f"{'avg latency':>14}")
    for name in names:
        m = metrics.model(name)
        print(
            f"{name:<28}{m.request_success:>10.0f}{m.request_failure:>8.0f}{m.inference_count:>12.0f}"
            f"{m.execution_count:>12.0f}{m.average_batch_size:>11.2f}{m.average_latency_ms:>11.2f} ms"
        )
    return 0
