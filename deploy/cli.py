"""`tuneship serve` and `tuneship metrics`."""

from __future__ import annotations

import argparse
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

    metrics = subparsers.add_parser("metrics", help="print a Triton server's request counts and latency")
    metrics.add_argument("--url", default="http://127.0.0.1:8002/metrics", help="Triton metrics endpoint")
    metrics.add_argument("--model", action="append", default=[], help="only these models")
    metrics.set_defaults(handler=run_metrics)


def run_serve(args: argparse.Namespace) -> int:
    from deploy.server import ServeOptions, TritonServer

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


def run_metrics(args: argparse.Namespace) -> int:
    from deploy.metrics import scrape_metrics

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
