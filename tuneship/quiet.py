"""Silence warnings that are known to be harmless here, so the ones that matter stand out.

Each entry says why it is harmless; anything not listed is shown as usual.
"""

from __future__ import annotations

import logging
import os
import warnings

# (text in the message, why it does not concern a tuneship user)
KNOWN_HARMLESS = (
    # PEFT reads the deprecated alias on every forward pass; nothing for a user to change.
    ("is_gradient_checkpointing` is deprecated", "peft reads a deprecated transformers property"),
    ("gradient_checkpointing` is deprecated", "trl's config passes the old argument name to transformers"),
    # ONNX Runtime's quantizer suggests shape inference first; the exporter quantizes graphs it already optimized.
    ("pre-processing before quantization", "the exporter's graphs are already optimized"),
    # Building the GPU variants on a machine without one: the exporter says itself what it could not build.
    ("There is no gpu for onnxruntime to do optimization", "the exporter reports GPU-only variants itself"),
)


class DropKnownHarmless(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text, _ in KNOWN_HARMLESS)


_FILTER = DropKnownHarmless()


def quiet_known_warnings() -> None:
    """Install the filters (idempotent): Python warnings, the root logger and the libraries' own loggers."""
    # transformers' sub-second "Loading weights" / "Writing model shards" bars (read once, at import);
    # the long steps have their own progress output.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # trl's per-step dataset preparation bars
    for text, _ in KNOWN_HARMLESS:
        warnings.filterwarnings("ignore", message=f".*{_escape(text)}.*")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("", "onnxruntime", "onnxruntime.transformers", "onnxruntime.quantization", "transformers", "peft"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)


def _escape(text: str) -> str:
    import re

    return re.escape(text)
