"""How the OpenAI-compatible API runs: its options, declared once (`tuneship api`'s flags are made from them, and
`tuneship serve --openai-port` fills them from the server it starts). Light: the dispatcher imports it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tuneship.arguments import existing_path, grpc_url, port_number, positive_float, positive_int


@dataclass
class ApiOptions:
    """The API in front of one Triton server, reached over gRPC with the project's own async client."""

    url: str = field(default="127.0.0.1:8001", metadata={
        "help": "Triton's gRPC endpoint (HOST:PORT): the embedded server or any other, e.g. NGC's",
        "type": grpc_url})
    host: str = field(default="127.0.0.1", metadata={
        "help": "address the API listens on: 127.0.0.1 keeps it to this machine; 0.0.0.0 opens it to the network "
                "(then set --api-key, and --api-tls-cert)", "flag": "--api-host"})
    port: int = field(default=9000, metadata={"help": "port of the API (0: a free one)", "type": port_number,
                                              "flag": "--api-port"})
    api_key: str | None = field(default=None, metadata={
        "help": "callers must send 'Authorization: Bearer KEY' (default: $TUNESHIP_API_KEY; none: no key asked)",
        "type": str})
    tls_cert: Path | None = field(default=None, metadata={"help": "HTTPS: the API's certificate (PEM)",
                                                          "type": existing_path, "flag": "--api-tls-cert"})
    tls_key: Path | None = field(default=None, metadata={"help": "HTTPS: the API's private key (PEM)",
                                                         "type": existing_path, "flag": "--api-tls-key"})
    repository: Path | None = field(default=None, metadata={
        "help": "the model repository the server serves: its generators' published adapters become model ids "
                "MODEL:ADAPTER (without it only the generators are listed)", "type": Path})
    max_body_bytes: int = field(default=1 << 20, metadata={
        "help": "largest request body; larger ones are refused with 413", "type": positive_int})
    max_prompt_chars: int = field(default=100_000, metadata={
        "help": "longest prompt (all messages together), in characters; longer ones are refused with 400 (the "
                "model also refuses prompts beyond its own context)", "type": positive_int})
    request_timeout_s: float = field(default=300.0, metadata={
        "help": "deadline of one generation, queue time included; past it the caller gets 504",
        "flag": "--request-timeout", "type": positive_float})
    models_refresh_s: float = field(default=5.0, metadata={
        "help": "how long the list of served generators is kept before it is read from the server again",
        "flag": None})
