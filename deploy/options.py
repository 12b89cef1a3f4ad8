"""How to run the embedded server: its options, declared once (the server reads them, `tuneship serve`'s flags are
made from them). Light on purpose: the command's dispatcher imports it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tuneship.arguments import existing_path, non_negative_int, port_number, positive_float

ModelControlMode = Literal["none", "poll", "explicit"]


@dataclass
class ServeOptions:
    """How to run the embedded server. A port of 0 means: pick a free one. `tuneship serve`'s flags are made from
    these fields (tuneship.options)."""

    model_repository: Path = field(default=Path("model_repository"), metadata={
        "help": "Triton model repository to serve"})
    host: str = field(default="127.0.0.1", metadata={
        "help": "address to listen on: 127.0.0.1 keeps the server to this machine; 0.0.0.0 opens it to the network "
                "(then set --admin-key, and --tls-cert for gRPC)"})
    grpc_port: int = field(default=8001, metadata={"help": "gRPC port (0: a free port)", "type": port_number})
    http_port: int = field(default=8000, metadata={"help": "HTTP port (0: a free port)", "type": port_number})
    metrics_port: int = field(default=8002, metadata={"help": "Prometheus metrics port (0: a free port)",
                                                      "type": port_number})
    model_control_mode: ModelControlMode = field(default="none", metadata={
        "help": "none: load every model at start; poll: follow the repository; explicit: load API",
        "choices": ("none", "poll", "explicit"), "type": str})
    load_models: tuple[str, ...] = field(default=(), metadata={
        "help": "model to load in explicit mode (repeatable; '*' loads all)", "flag": "--load-model",
        "action": "append", "type": str})
    repository_poll_secs: int = field(default=5, metadata={"help": "poll interval in poll mode", "flag": None})
    ready_timeout_s: float = field(default=180.0, metadata={
        "help": "seconds to wait for readiness", "flag": "--ready-timeout", "type": positive_float})
    exit_timeout_s: int = field(default=10, metadata={"help": "grace period for in-flight requests at stop",
                                                      "flag": None})
    log_verbose: int = field(default=0, metadata={"help": "Triton's verbose log level", "type": non_negative_int})
    log_file: Path | None = field(default=None, metadata={
        "help": "write Triton's log here (default: a file in a temporary directory)", "type": Path})
    admin_key: str | None = field(default=None, metadata={
        "help": "restrict load/unload and model config to callers sending this key (header tuneship-admin-key; "
                "default: $TUNESHIP_ADMIN_KEY)", "type": str})
    tls_cert: Path | None = field(default=None, metadata={"help": "gRPC TLS: server certificate (PEM)",
                                                          "type": existing_path})
    tls_key: Path | None = field(default=None, metadata={"help": "gRPC TLS: server private key (PEM)",
                                                         "type": existing_path})
    tls_client_ca: Path | None = field(default=None, metadata={
        "help": "gRPC mutual TLS: accept only clients whose certificate this CA (PEM) signed",
        "type": existing_path})
    heal: bool = field(default=True, metadata={
        "help": "watch the Python-backend stubs: a model whose stub died is reloaded, and Triton restarted if that "
                "fails (--no-heal: do not)"})
    extra_args: tuple[str, ...] = field(default=(), metadata={"help": "more tritonserver arguments", "flag": None})
