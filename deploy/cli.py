"""`tuneship serve`, `tuneship deploy` and `tuneship metrics`."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

from tuneship.arguments import (
    CommandError,
    existing_path,
    flatten,
    metrics_endpoint,
    name_list,
    port_number,
    positive_float,
)
from tuneship.deploy.options import ServeOptions
from tuneship.options import add_options, options_from_args

ADMIN_KEY_HELP = "key for Triton's restricted APIs (default: $TUNESHIP_ADMIN_KEY)"
SERVE_DECIDES = ("url", "host", "port", "repository")
"""The API's options `serve --openai-port` sets itself: this server's gRPC address, its --host, the port, its
repository."""


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser("serve", help="run the embedded Triton server on a model repository")
    add_options(serve, ServeOptions)  # every flag from ServeOptions' fields
    from tuneship.api import ApiOptions

    api = serve.add_argument_group("OpenAI-compatible API (off unless --openai-port is given)")
    api.add_argument("--openai-port", type=port_number, default=None,
                     help="also serve /v1/chat/completions, /v1/completions and /v1/models on this port (same "
                          "--host), in front of this server's generators")
    # The API's own options, as `tuneship api` takes them; where it listens and what it serves, serve decides.
    add_options(api, ApiOptions, skip=(*SERVE_DECIDES, "tls_cert", "tls_key"))
    # ServeOptions' tls_cert and tls_key are Triton's; the API's take their own names here.
    api.add_argument("--api-tls-cert", type=existing_path, default=None, help="HTTPS for the API: certificate (PEM)")
    api.add_argument("--api-tls-key", type=existing_path, default=None, help="HTTPS for the API: private key (PEM)")
    serve.set_defaults(handler=run_serve)

    from tuneship.client import add_connection_arguments
    from tuneship.exporter import add_export_arguments

    deploy = subparsers.add_parser("deploy", help="manage models on a running Triton server")
    actions = deploy.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (("status", "models and versions the server knows, with their state"),
                         ("load", "load (or reload) a model"), ("unload", "unload a model"),
                         ("publish", "export a checkpoint as the next version and switch the server to it")):
        parser = actions.add_parser(action, help=text)
        add_connection_arguments(parser, model=False)
        parser.add_argument("--admin-key", default=None, help=ADMIN_KEY_HELP)
        if action in ("load", "unload"):
            parser.add_argument("model", help="model name on the server")
        if action == "publish":
            add_export_arguments(parser)
            parser.add_argument("--mode", choices=("explicit", "poll"), default="explicit",
                                help="the server's --model-control-mode")
            parser.add_argument("--load-timeout", type=positive_float, default=180.0,
                                help="seconds to wait for the new version to load")
        parser.set_defaults(handler=run_deploy)

    metrics = subparsers.add_parser("metrics", help="print a Triton server's request counts and latency")
    metrics.add_argument("--url", type=metrics_endpoint, default="http://127.0.0.1:8002/metrics",
                         help="Triton metrics endpoint: HOST:PORT or http://HOST:PORT[/metrics]")
    metrics.add_argument("--model", action="append", type=name_list, default=None,
                         help="only these models: comma-separated, or the option repeated (default: all)")
    metrics.set_defaults(handler=run_metrics)


def run_serve(args: argparse.Namespace) -> int:
    from tuneship.deploy.server import TritonServer

    if not args.model_repository.is_dir():
        what = "not a directory" if args.model_repository.exists() else "no such model repository"
        raise CommandError(f"{args.model_repository}: {what} (export a model into one with "
                           "`tuneship export CHECKPOINT --repository DIR`)")
    options = options_from_args(ServeOptions, args,
                                admin_key=args.admin_key or os.environ.get("TUNESHIP_ADMIN_KEY"))
    if args.tls_cert is not None and args.tls_key is None:
        raise CommandError("--tls-cert needs --tls-key (the server's private key)")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if args.openai_port is not None and args.tls_cert is not None:
        raise CommandError("--openai-port with --tls-cert: the API reaches Triton's gRPC over loopback without TLS; "
                           "run `tuneship api --url ...` beside a TLS server instead")
    if (args.api_tls_cert is None) != (args.api_tls_key is None):
        raise CommandError("--api-tls-cert and --api-tls-key go together (the API's certificate and its key)")
    server = TritonServer(options)
    print(f"starting Triton on {options.model_repository} ...", flush=True)
    with server, contextlib.ExitStack() as stack:  # a failed start raises ServerError with Triton's reason
        print(f"Triton ready: {server.listening()}\n"
              f"clients on this machine: --url {server.grpc_url} (gRPC), metrics {server.metrics_url}\n"
              f"log: {server.log_path}  (Ctrl-C to stop)", flush=True)
        if args.openai_port is not None:
            api = stack.enter_context(_openai_api(args, options, server.grpc_url))
            print(f"OpenAI-compatible API: {api.url}/v1 (models: {api.url}/v1/models)", flush=True)
        while not stop.wait(0.5):
            if not server.running and not server.restarting and not stop.is_set():
                print(f"error: Triton stopped unexpectedly: {server.exit_reason()}", file=sys.stderr)
                return 1
        print("stopping Triton ...", flush=True)
    print("stopped", flush=True)
    return 0


def _openai_api(args: argparse.Namespace, options: ServeOptions, grpc_url: str) -> Any:
    from tuneship.api import ApiOptions, ApiServer
    from tuneship.options import options_from_args

    key = args.api_key or os.environ.get("TUNESHIP_API_KEY") or None
    return ApiServer(options_from_args(ApiOptions, args, url=grpc_url, host=options.host, port=args.openai_port,
                                       api_key=key, repository=options.model_repository,
                                       tls_cert=args.api_tls_cert, tls_key=args.api_tls_key))


def run_deploy(args: argparse.Namespace) -> int:
    from tuneship.client import ADMIN_HEADER, TritonClient, client_options, explained, ready_models

    key = args.admin_key or os.environ.get("TUNESHIP_ADMIN_KEY")
    options = client_options(args, {ADMIN_HEADER: key} if key else {})
    with TritonClient(args.url, options) as client:
        model = getattr(args, "model", None) or getattr(args, "name", None)
        with explained(args.url, model, ready_models(client)):
            _deploy_action(client, args)
    return 0


def _deploy_action(client: Any, args: argparse.Namespace) -> None:
    if args.action == "status":
        index = client.get_model_repository_index()
        print(f"{'model':<32}{'version':>8}  state")
        for entry in sorted(index, key=lambda e: (e["name"], e.get("version", ""))):
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
        from tuneship.exporter import export_options_from_args

        result = publish(client, export_options_from_args(args), args.mode, args.load_timeout)
        print(f"serving {result.name}: " + ", ".join(f"{m} v{v}" for m, v in result.versions.items())
              + f" (was {', '.join(f'v{v}' for v in result.previous.values())}; {result.seconds:.0f}s)")


def run_metrics(args: argparse.Namespace) -> int:
    from tuneship.deploy.metrics import MetricsUnavailableError, scrape_metrics

    try:
        metrics = scrape_metrics(args.url)
    except MetricsUnavailableError as error:
        raise CommandError(f"{error}: start a server with `tuneship serve`, or point --url at its metrics "
                           "endpoint (HOST:PORT, port 8002 by default)") from None
    names = flatten(args.model) or sorted(metrics.models)
    unknown = [name for name in names if name not in metrics.models]
    if unknown:
        known = ", ".join(sorted(metrics.models)) or "none yet (a model appears once it is loaded)"
        raise CommandError(f"no metrics for {', '.join(map(repr, unknown))} at {args.url}; models there: {known}")
    header = f"{'model':<28}{'requests':>10}{'failed':>8}{'inferences':>12}{'executions':>12}{'avg batch':>11}"
    print(header + f"{'avg latency':>14}")
    for name in names:
        m = metrics.model(name)
        print(
            f"{name:<28}{m.request_success:>10.0f}{m.request_failure:>8.0f}{m.inference_count:>12.0f}"
            f"{m.execution_count:>12.0f}{m.average_batch_size:>11.2f}{m.average_latency_ms:>11.2f} ms"
        )
    return 0
