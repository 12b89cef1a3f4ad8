"""Speed figures given to the exporter instead of measured: what a test checks must not hang on which of two
variants happened to time faster on a shared machine (exporter/timing.py is the seam)."""

from __future__ import annotations

from tuneship.exporter.timing import Timing


def latencies(at_batch_32: dict[str, float]) -> Timing:
    """Each variant's milliseconds at batch 32 as given (batch 1 a sixteenth of it)."""
    return Timing.given(latency_ms={name: {"1": ms / 16, "32": ms} for name, ms in at_batch_32.items()})


# int8-dynamic clearly the fastest: beyond the 5% tie and the 10% invariance margins of every other variant.
DYNAMIC_INT8_FASTEST = latencies({"fp32": 40.0, "fp32-optimized": 30.0, "int8-dynamic": 10.0, "int8-rowwise": 20.0,
                                  "int8-static": 25.0, "fp16": 35.0})
