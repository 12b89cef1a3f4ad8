"""`tuneship api`: the OpenAI-compatible API alone, in front of any Triton (the embedded one, or NGC's image)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from tuneship.api.options import ApiOptions
from tuneship.options import add_options, options_from_args

API_KEY_ENV = "TUNESHIP_API_KEY"


def register(subparsers: Any) -> None:
    api = subparsers.add_parser("api", help="serve OpenAI's chat and text completions API in front of a Triton "
                                "server's generators")
    add_options(api, ApiOptions)
    api.set_defaults(handler=run_api)


def run_api(args: argparse.Namespace) -> int:
    from tuneship.api.server import serve_forever

    options = options_from_args(ApiOptions, args, api_key=args.api_key or os.environ.get(API_KEY_ENV) or None)
    scheme = "https" if options.tls_cert else "http"
    print(f"OpenAI-compatible API on {scheme}://{options.host}:{options.port}/v1 in front of Triton at "
          f"{options.url} (Ctrl-C to stop)", flush=True)
    serve_forever(options)
    return 0
