"""`tuneship infer`: classify texts with a served text classifier."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: Any) -> None:
    infer = subparsers.add_parser("infer", help="classify texts with a model served by Triton")
    infer.add_argument("texts", nargs="*", help="texts to classify (read from stdin, one per line, when absent)")
    infer.add_argument("--model", default="sentiment", help="ensemble name")
    infer.add_argument("--url", default="127.0.0.1:8001", help="Triton gRPC endpoint host:port")
    infer.add_argument("--timeout", type=float, default=30.0, help="per-request deadline, seconds")
    infer.add_argument("--wait", type=float, default=0.0, help="wait up to N seconds for the model to be ready")
    infer.add_argument("--batch-size", type=int, default=32, help="texts per request")
    infer.add_argument("--json", action="store_true", help="print one JSON object per text")
    infer.set_defaults(handler=run_infer)


def run_infer(args: argparse.Namespace) -> int:
    from client.grpc_client import TritonClient
    from client.text_classifier import TextClassifier

    texts: list[str] = list(args.texts) or [line.strip() for line in sys.stdin if line.strip()]
    if not texts:
        print("error: no texts given (pass them as arguments or on stdin)", file=sys.stderr)
        return 2
    with TritonClient(args.url, timeout_s=args.timeout) as client:
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
