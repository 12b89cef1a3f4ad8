"""`tuneship infer` and `tuneship bench`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _add_connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="sentiment", help="ensemble name")
    parser.add_argument("--url", default="127.0.0.1:8001", help="Triton gRPC endpoint host:port")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-request deadline, seconds")
    parser.add_argument("--root-cert", default=None, help="TLS: PEM file of the CA that signed the server's cert")
    parser.add_argument("--client-cert", default=None, help="TLS: client certificate chain (PEM)")
    parser.add_argument("--client-key", default=None, help="TLS: client private key (PEM)")
    parser.add_argument("--header", action="append", default=[], metavar="NAME=VALUE",
                        help="header sent with every call (repeatable), e.g. authorization='Bearer ...'")


def register(subparsers: Any) -> None:
    infer = subparsers.add_parser("infer", help="classify texts with a model served by Triton")
    infer.add_argument("texts", nargs="*", help="texts to classify (read from stdin, one per line, when absent)")
    _add_connection(infer)
    infer.add_argument("--wait", type=float, default=0.0, help="wait up to N seconds for the model to be ready")
    infer.add_argument("--batch-size", type=int, default=32, help="texts per request")
    infer.add_argument("--json", action="store_true", help="print one JSON object per text")
    infer.set_defaults(handler=run_infer)

    bench = subparsers.add_parser("bench", help="closed-loop load test: throughput and latency per concurrency")
    _add_connection(bench)
    bench.add_argument("--concurrency", default="1,2,4,8,16,32", help="comma-separated concurrency levels")
    bench.add_argument("--batch-size", type=int, default=1, help="texts per request")
    bench.add_argument("--texts", type=Path, default=None, help="file of texts, one per line (default: built-in)")
    bench.add_argument("--window", type=float, default=2.0, help="measurement window, seconds")
    bench.add_argument("--max-windows", type=int, default=10, help="give up on stability after this many windows")
    bench.add_argument("--tolerance", type=float, default=0.10, help="stable: 3 windows within this share")
    bench.add_argument("--output", type=Path, default=Path("runs/bench/latency"),
                       help="prefix of the .csv, .json and .png written")
    bench.set_defaults(handler=run_bench_command)


def _options(args: argparse.Namespace) -> Any:
    from tuneship.client.options import ClientOptions, TLSOptions

    headers = {}
    for item in args.header:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"error: --header {item!r} must be NAME=VALUE")
        headers[name.strip().lower()] = value
    tls = None
    if args.root_cert or args.client_cert or args.client_key:
        tls = TLSOptions(root_certificates=args.root_cert, certificate_chain=args.client_cert,
                         private_key=args.client_key)
    return ClientOptions(timeout_s=args.timeout, tls=tls, headers=headers)


def run_infer(args: argparse.Namespace) -> int:
    from tuneship.client.grpc_client import TritonClient
    from tuneship.client.text_classifier import TextClassifier

    texts: list[str] = list(args.texts) or [line.strip() for line in sys.stdin if line.strip()]
    if not texts:
        print("error: no texts given (pass them as arguments or on stdin)", file=sys.stderr)
        return 2
    with TritonClient(args.url, _options(args)) as client:
        if args.wait:
            client.wait_until_ready(args.model, timeout_s=args.wait)
        predictions = TextClassifier(client, args.model, batch_size=args.batch_size).classify(texts)
    for text, prediction in zip(texts, predictions, strict=True):
        if args.json:
            print(json.dumps({"text": text, "label": prediction.label, "score": prediction.score,
                              "scores": prediction.scores}))
        else:
            shown = text if len(text) <= 70 else text[:67] + "..."
            print(f"{prediction.label:<10} {prediction.score:6.3f}  {shown}")
    return 0


def run_bench_command(args: argparse.Namespace) -> int:
    import asyncio

    from tuneship.client.bench import HEADER, builtin_reviews, run_bench, write_outputs

    try:
        levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    except ValueError:
        print(f"error: --concurrency {args.concurrency!r} must be comma-separated integers", file=sys.stderr)
        return 2
    if args.texts is not None:
        if not args.texts.is_file():
            print(f"error: {args.texts}: no such file", file=sys.stderr)
            return 2
        texts = [line.strip() for line in args.texts.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        texts = builtin_reviews()
    print(f"closed-loop load on {args.model} at {args.url}: batch {args.batch_size}, windows of {args.window:g}s")
    print(HEADER)
    results = asyncio.run(run_bench(args.url, args.model, levels, texts, args.batch_size, args.window,
                                    args.max_windows, args.tolerance, args.timeout, _options(args)))
    for path in write_outputs(results, args.output, f"{args.model}: latency vs throughput (batch {args.batch_size})"):
        print(f"wrote {path}")
    return 0
