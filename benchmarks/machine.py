"""The machine a benchmark ran on, as BENCHMARKS.md writes it beside every figure: the CPU model and its vector
flags (AVX2, AVX-512 and AMX decide which kernels ONNX Runtime and llama.cpp run)."""

from __future__ import annotations

import platform
import re
from pathlib import Path


def cpu_flags() -> str:
    text = Path("/proc/cpuinfo").read_text()
    flags = sorted(set(re.findall(r"\bavx512[a-z_0-9]*|\bamx[a-z_0-9]*|\bavx2\b", text)))
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "")
    return f"{model}; {' '.join(flags)}"


def machine() -> str:
    return f"{platform.node()}: {cpu_flags()}"
