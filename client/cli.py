"""`tuneship infer` and `tuneship bench`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from tuneship.arguments import (
    CommandError,
    existing_file,
    grpc_url,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from tuneship.client.bench_options import BenchOptions
from tuneship.options import add_options, given_fields, options_from_args

T = TypeVar("T")


def add_connection_arguments(parser: argparse.ArgumentParser, model: bool = True) -> None:
    """--url, --timeout, TLS and headers: how a command reaches Triton's gRPC endpoint."""
    if model:
        parser.add_argument("--model", default="sentiment", help="model (ensemble) name on the server")
    parser.add_argument("--url", type=grpc_url, default="127.0.0.1:8001",
                        help="Triton gRPC endpoint: HOST:PORT (grpc:// or http:// prefixes accepted)")
    parser.add_argument("--timeout", type=positive_float, default=30.0, help="per-request deadline, seconds")
    parser.add_argument("--root-cert", type=existing_file, default=None,
                        help="TLS: PEM file of the CA that signed the server's certificate")
    parser.add_argument("--client-cert", type=existing_file, default=None,
                        help="TLS: client certificate chain (PEM)")
    parser.add_argument("--client-key", type=existing_file, default=None, help="TLS: client private key (PEM)")
    parser.add_argument("--header", action="append", default=[], metavar="NAME=VALUE", type=_header,
                        help="header sent with every call (repeatable), e.g. authorization='Bearer ...'")


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r} must be NAME=VALUE")
    return name.strip().lower(), value


def register(subparsers: Any) -> None:
    infer = subparsers.add_parser("infer", help="classify texts or images with a model served by Triton")
    infer.add_argument("texts", nargs="*", help="texts to classify, or image files for an image classifier (read "
                                                "from stdin, one per line, when absent)")
    add_connection_arguments(infer)
    infer.add_argument("--wait", type=positive_float, default=None,
                       help="wait up to N seconds for the server and model to be ready (default: no wait)")
    infer.add_argument("--batch-size", type=positive_int, default=32, help="texts per request")
    infer.add_argument("--json", action="store_true", help="print one JSON object per text")
    infer.set_defaults(handler=run_infer)

    generate = subparsers.add_parser("generate", help="generate text with a served instruct model, streamed")
    generate.add_argument("prompt", nargs="?", default=None, help="the prompt (read from stdin when absent)")
    _add_generation_arguments(generate)
    generate.add_argument("--raw", action="store_true",
                          help="send the prompt as it is, without the model's chat template")
    generate.add_argument("--no-stream", dest="stream", action="store_false",
                          help="wait for the whole answer instead of printing it as it comes")
    generate.add_argument("--stats", action="store_true",
                          help="print tokens, time to first token and tokens/s to stderr at the end")
    generate.add_argument("--session", default=None, metavar="ID",
                          help="a conversation's id: the server keeps its cache for the next request that names it")
    generate.set_defaults(handler=run_generate)

    chat = subparsers.add_parser("chat", help="an interactive chat with a served instruct model")
    _add_generation_arguments(chat)
    chat.set_defaults(handler=run_chat)

    health = subparsers.add_parser(
        "health", help="liveness check: run one real inference and exit 0 only if the model answered")
    add_connection_arguments(health)
    health.set_defaults(timeout=5.0)
    health.add_argument("--text", default="a probe of the model", help="text sent to a text model")
    health.add_argument("--admin-key", default=None, help="key for Triton's restricted APIs (default: "
                        "$TUNESHIP_ADMIN_KEY); not needed for inference")
    health.set_defaults(handler=run_health)

    bench = subparsers.add_parser("bench", help="closed-loop load test: throughput and latency per concurrency")
    add_connection_arguments(bench)
    add_options(bench, BenchOptions)
    bench.set_defaults(handler=run_bench_command)


def _add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    add_connection_arguments(parser, model=False)
    parser.set_defaults(timeout=120.0)
    parser.add_argument("--model", default="chat", help="generator model name on the server")
    parser.add_argument("--system", default=None, help="a system message before the conversation (its tone)")
    parser.add_argument("--max-tokens", type=positive_int, default=256, help="most tokens to generate")
    parser.add_argument("--temperature", type=non_negative_float, default=0.0, help="0: greedy; above: sampling")
    parser.add_argument("--top-p", type=positive_float, default=None, help="sampling: nucleus share (0-1]")
    parser.add_argument("--top-k", type=positive_int, default=None, help="sampling: keep the k likeliest tokens")
    parser.add_argument("--repetition-penalty", type=positive_float, default=None,
                        help="above 1 discourages repeating tokens")
    parser.add_argument("--seed", type=non_negative_int, default=None, help="sampling: random seed")
    parser.add_argument("--stop", action="append", default=[], help="stop when this text appears (repeatable)")
    constraint = parser.add_mutually_exclusive_group()
    constraint.add_argument("--choice", action="append", default=[], metavar="ANSWER",
                            help="the answer must be one of these (repeatable), e.g. --choice positive --choice "
                                 "negative")
    constraint.add_argument("--regex", default=None, help="the answer must match this regular expression")
    constraint.add_argument("--json-schema", type=_json_schema, default=None, metavar="SCHEMA",
                            help="the answer must be JSON valid against this schema (JSON text, or @FILE)")
    parser.add_argument("--adapter", default=None, metavar="NAME",
                        help="answer with this LoRA adapter of the model (published with tuneship export "
                             "--adapter-of MODEL --name NAME)")


def _json_schema(text: str) -> dict[str, Any]:
    source = text
    if text.startswith("@"):
        try:
            source = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as error:
            raise argparse.ArgumentTypeError(f"{text[1:]}: {error.strerror}") from None
    try:
        schema = json.loads(source)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON ({error.msg} at line {error.lineno} column "
                                         f"{error.colno})") from None
    if not isinstance(schema, dict):
        raise argparse.ArgumentTypeError("a JSON schema is an object")
    return schema


def _generation_params(args: argparse.Namespace) -> dict[str, Any]:
    return {"max_tokens": args.max_tokens, "temperature": args.temperature, "top_p": args.top_p,
            "top_k": args.top_k, "repetition_penalty": args.repetition_penalty, "seed": args.seed,
            "stop": args.stop or None, "choices": args.choice or None, "regex": args.regex,
            "json_schema": args.json_schema, "adapter": args.adapter}


def client_options(args: argparse.Namespace, headers: dict[str, str] | None = None) -> Any:
    from tuneship.client.options import ClientOptions, TLSOptions

    sent = dict(args.header)
    sent.update(headers or {})
    tls = None
    if args.root_cert or args.client_cert or args.client_key:
        tls = TLSOptions(root_certificates=args.root_cert, certificate_chain=args.client_cert,
                         private_key=args.client_key)
    return ClientOptions(timeout_s=args.timeout, tls=tls, headers=sent)


@contextmanager
def explained(url: str, model: str | None = None, list_models: Callable[[], list[str]] | None = None) -> Iterator[None]:
    """Re-raise the client's errors with the cause and the next step spelled out for a person."""
    from tuneship.client.errors import TritonError
    from tuneship.client.hints import explain

    try:
        yield
    except TritonError as error:
        raise explain(error, url, model, list_models) from None


def ready_models(client: Any) -> Callable[[], list[str]]:
    from tuneship.client.hints import ready_model_names

    return lambda: ready_model_names(client.get_model_repository_index())


def read_stdin_texts() -> list[str]:
    """Non-empty lines of stdin; undecodable bytes are named by line rather than failing deep in a codec."""
    texts = []
    for number, raw in enumerate(sys.stdin.buffer, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise CommandError(f"stdin line {number}: not valid UTF-8 (byte {error.start + 1} of the line); "
                               "convert the input first, e.g. iconv -f latin1 -t utf-8") from None
        if line.strip():
            texts.append(line.strip())
    return texts


def run_infer(args: argparse.Namespace) -> int:
    from tuneship.client.grpc_client import TritonClient
    from tuneship.tasks import load, task_of_metadata

    items: list[str] = list(args.texts) or read_stdin_texts()
    if not items:
        raise CommandError("no texts given (pass them as arguments or on stdin)")
    with TritonClient(args.url, client_options(args)) as client, \
            explained(args.url, args.model, ready_models(client)):
        if args.wait:
            client.wait_until_ready(args.model, timeout_s=args.wait)
        # The model says what it takes (its task's contract): texts, or image files for an image classifier.
        served = task_of_metadata(client.get_model_metadata(args.model))
        if served is None or not served.classifies:
            what = served.description if served is not None else "no tuneship task"
            raise CommandError(f"model {args.model!r} is not a classifier ({what}); tuneship infer classifies"
                               + (": use tuneship generate or chat" if served is not None else ""))
        predictions = load(served.client)(client, args.model, batch_size=args.batch_size).classify(items)
    for item, prediction in zip(items, predictions, strict=True):
        if args.json:
            print(json.dumps({served.modality: item, "label": prediction.label,
                              "score": prediction.score, "scores": prediction.scores}))
        else:
            shown = item if len(item) <= 70 else item[:67] + "..."
            print(f"{prediction.label:<10} {prediction.score:6.3f}  {shown}")
    return 0


def run_bench_command(args: argparse.Namespace) -> int:
    import asyncio

    from tuneship.client.bench import HEADER, builtin_reviews, run_bench, write_outputs
    from tuneship.client.grpc_client import TritonClient

    bench: BenchOptions = options_from_args(BenchOptions, args)
    if bench.texts is not None:
        try:
            raw = bench.texts.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise CommandError(f"{bench.texts}: not valid UTF-8 (byte {error.start})") from None
        texts: list[Any] = [line.strip() for line in raw.splitlines() if line.strip()]
        if not texts:
            raise CommandError(f"{bench.texts}: no texts in the file")
    else:
        texts = list(builtin_reviews())
    options = client_options(args)
    with TritonClient(args.url, options) as client, explained(args.url, args.model, ready_models(client)):
        if bench.wait_s:
            client.wait_until_ready(args.model, timeout_s=bench.wait_s)
        # an unknown model or a dead server: say so before the load starts
        metadata = client.get_model_metadata(args.model)
    from tuneship.tasks import task_of_metadata

    served = task_of_metadata(metadata)
    if served is not None and served.generates:
        return _bench_generator(args, bench, options, texts)
    if served is None or not served.classifies:
        raise CommandError(f"model {args.model!r} is neither a classifier nor a generator "
                           f"({served.description if served is not None else 'no tuneship task'})")
    for_generators = [flag for name, flag in given_fields(args, BenchOptions).items()
                      if name in GENERATOR_ONLY]
    if for_generators:
        raise CommandError(f"{', '.join(for_generators)}: for a generator only; model {args.model!r} is a classifier")
    given = "images" if bench.images is not None else "texts"
    if served.item_source != given:
        raise CommandError(f"model {args.model!r} takes images: pass --images FOLDER" if given == "texts" else
                           f"--images: model {args.model!r} takes texts, not images (use --texts FILE)")
    if bench.images is not None:
        from tuneship.client.errors import InvalidInputError
        from tuneship.client.images import read_image_folder

        try:
            texts = list(read_image_folder(bench.images))
        except InvalidInputError as error:
            raise CommandError(f"--images: {error}") from None
    print(f"closed-loop load on {args.model} at {args.url}: batch {bench.batch_size}, windows of "
          f"{bench.window_s:g}s")
    print(HEADER)
    with explained(args.url, args.model):
        results = asyncio.run(run_bench(args.url, args.model, bench.concurrency, texts, bench.batch_size,
                                        bench.window_s, bench.max_windows, bench.tolerance, args.timeout, options))
    title = f"{args.model}: latency vs throughput (batch {bench.batch_size})"
    for path in write_outputs(results, bench.output, title):
        print(f"wrote {path}")
    return 0


GENERATOR_LEVELS = (1, 2, 4, 8)
# `tuneship bench` options that only mean something for a generator's streams (BenchOptions fields).
GENERATOR_ONLY = ("max_tokens", "streams", "stream_interval_ms")


def _bench_generator(args: argparse.Namespace, bench: BenchOptions, options: Any, texts: list[Any]) -> int:
    """Concurrent streams of equally long answers; the classifier-only flags are refused by name."""
    import asyncio

    from tuneship.client.generation_bench import (
        LEVEL_HEADER,
        review_prompts,
        run_generation_bench,
        write_generation_outputs,
    )

    given = given_fields(args, BenchOptions)
    wrong = [given[name] for name in ("batch_size", "images", "window_s", "max_windows", "tolerance") if name in given]
    if wrong:
        raise CommandError(f"{', '.join(wrong)}: not an option for a generator (model {args.model!r}); it takes "
                           "--concurrency, --max-tokens, --streams, --stream-interval-ms, --texts")
    levels = bench.concurrency if "concurrency" in given else GENERATOR_LEVELS
    prompts = review_prompts(texts) if bench.texts is None else [[{"role": "user", "content": t}] for t in texts]
    print(f"concurrent streams on {args.model} at {args.url}: {bench.max_tokens} tokens per answer, "
          f"{bench.streams} answers per caller per level")
    print(LEVEL_HEADER)
    with explained(args.url, args.model):
        params = {} if bench.stream_interval_ms is None else {"stream_interval_ms": bench.stream_interval_ms}
        results = asyncio.run(run_generation_bench(args.url, args.model, levels, prompts, bench.max_tokens,
                                                   bench.streams, args.timeout, options, params=params))
    title = f"{args.model}: {bench.max_tokens}-token streams"
    for path in write_generation_outputs({args.model: results}, bench.output, title):
        print(f"wrote {path}")
    return 0


def run_health(args: argparse.Namespace) -> int:
    """Exit 0 when `--model` answers a real request within `--timeout`, 1 when it does not.

    Triton's own health endpoints stay green while a model whose stub died fails every request; an orchestrator
    (a Kubernetes liveness probe) calls this instead, so such a server is restarted.
    """
    import os
    import time

    from tuneship.client.errors import TritonError
    from tuneship.client.grpc_client import TritonClient
    from tuneship.client.options import ADMIN_HEADER, ClientOptions
    from tuneship.client.probe import PROBE_PARAMETER, generation_probe, probe_inputs, stream_once
    from tuneship.client.retry import RetryPolicy

    key = args.admin_key or os.environ.get("TUNESHIP_ADMIN_KEY")
    base = client_options(args, {ADMIN_HEADER: key} if key else {})
    options = ClientOptions(timeout_s=args.timeout, tls=base.tls, headers=base.headers,
                            retry=RetryPolicy(max_attempts=1))
    started = time.monotonic()
    try:
        with TritonClient(args.url, options) as client:
            metadata = client.get_model_metadata(args.model)
            generation = generation_probe(metadata, args.text)
            if generation is not None:  # a decoupled generator answers over the stream only
                result = stream_once(client, args.model, generation, args.timeout)
            else:
                result = client.infer(args.model, probe_inputs(metadata, args.text), validate=False,
                                      parameters={PROBE_PARAMETER: True})
    except TritonError as error:
        print(f"unhealthy: {args.model} at {args.url} did not answer: {error}", file=sys.stderr)
        return 1
    answer = f" ({result.strings('LABEL')[0]!r})" if "LABEL" in result.outputs else ""
    print(f"healthy: {args.model} v{result.version} at {args.url} answered{answer} in "
          f"{1000 * (time.monotonic() - started):.0f} ms")
    return 0


def run_generate(args: argparse.Namespace) -> int:
    """Print the answer as it arrives (flushing each piece), or all at once with --no-stream."""
    from tuneship.client.generator import Generator
    from tuneship.client.grpc_client import TritonClient

    prompt = args.prompt if args.prompt is not None else "\n".join(read_stdin_texts())
    if not prompt.strip():
        raise CommandError("no prompt given (pass it as an argument or on stdin)")
    request: Any = prompt if args.raw else (
        ([{"role": "system", "content": args.system}] if args.system else []) + [{"role": "user", "content": prompt}])
    with TritonClient(args.url, client_options(args)) as client, \
            explained(args.url, args.model, ready_models(client)):
        generator = Generator(client, args.model)
        params = {**_generation_params(args), "session": args.session, "raw": True if args.raw else None}
        if args.stream:
            stream = generator.stream(request, **params)
            for piece in stream:
                print(piece, end="", flush=True)
            print()
            result = stream.generation
        else:
            result = generator.generate(request, **params)
            print(result.text)
    if args.stats and result is not None:
        prompt = "" if result.prompt_tokens is None else (
            f"; prompt {result.prompt_tokens} tokens, {result.cached_prompt_tokens or 0} from cache")
        # Decode speed needs two tokens at least (the first one's time is the time to first token).
        speed = f"{result.tokens_per_second:.1f} tokens/s" if result.tokens > 1 else "too short for a decode speed"
        print(f"{result.tokens} tokens ({result.finish_reason}), first after {1000 * result.time_to_first_token_s:.0f}"
              f" ms, {speed}{prompt}", file=sys.stderr)
    return 0


def run_chat(args: argparse.Namespace) -> int:
    """A conversation kept on this side and sent whole each turn, under one session id: the server keeps the
    session's cache, so a turn prefills only what is new; /reset (a new session), /exit."""
    import uuid

    from tuneship.client.generator import Generator
    from tuneship.client.grpc_client import TritonClient

    history: list[dict[str, str]] = [{"role": "system", "content": args.system}] if args.system else []
    session = f"chat-{uuid.uuid4().hex}"
    print(f"chatting with {args.model} at {args.url}; /reset starts over, /exit (or Ctrl-D) leaves", flush=True)
    with TritonClient(args.url, client_options(args)) as client, \
            explained(args.url, args.model, ready_models(client)):
        generator = Generator(client, args.model)
        while True:
            try:
                line = input("you> ").strip()
            except EOFError:
                print()
                return 0
            if line in ("/exit", "/quit"):
                return 0
            if line == "/reset":
                history = history[:1] if args.system else []
                session = f"chat-{uuid.uuid4().hex}"
                print("(conversation reset)")
                continue
            if line.startswith("/") and " " not in line:  # a command, never a message to the model
                print(f"unknown command {line}: /reset starts over, /exit (or Ctrl-D) leaves", flush=True)
                continue
            if not line:
                continue
            history.append({"role": "user", "content": line})
            print(f"{args.model}> ", end="", flush=True)
            pieces = []
            for piece in generator.stream(history, session=session, **_generation_params(args)):
                pieces.append(piece)
                print(piece, end="", flush=True)
            print()
            history.append({"role": "assistant", "content": "".join(pieces)})
