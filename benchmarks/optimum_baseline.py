"""Optimum (optimum-onnx) baseline models for the export benchmark; runs in its own venv (.venv-optimum),
since optimum-onnx pins transformers < 4.58 and tuneship needs transformers 5.

    .venv-optimum/bin/python benchmarks/optimum_baseline.py runs/bench/full --out runs/bench/optimum

The stock recipe: export, O2 graph optimization, dynamic int8 with
AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True). Writes the models and how long each
step took to --out (models.json); benchmarks/export_speed.py measures them next to PyTorch and tuneship, in one
process with the same ONNX Runtime, so every row shares one baseline and one machine state.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from onnx_timing import benchmark_arguments


def main() -> int:
    args = benchmark_arguments()

    from optimum.onnxruntime import ORTModelForSequenceClassification, ORTOptimizer, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig, AutoQuantizationConfig

    out: Path = args.out
    timings: dict[str, object] = {}
    started = time.perf_counter()
    model = ORTModelForSequenceClassification.from_pretrained(str(args.checkpoint), export=True)
    model.save_pretrained(out / "fp32")
    timings["export_s"] = round(time.perf_counter() - started, 1)
    paths = {"optimum fp32": str(out / "fp32" / "model.onnx")}
    started = time.perf_counter()
    try:
        optimizer = ORTOptimizer.from_pretrained(model)
        optimizer.optimize(save_dir=out / "o2", optimization_config=AutoOptimizationConfig.O2())
        paths["optimum O2"] = str(out / "o2" / "model_optimized.onnx")
    except Exception as error:
        timings["O2_error"] = str(error)[:300]
    timings["optimize_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    quantizer = ORTQuantizer.from_pretrained(out / "fp32")
    quantizer.quantize(save_dir=out / "int8",
                       quantization_config=AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True))
    timings["quantize_s"] = round(time.perf_counter() - started, 1)
    paths["optimum int8 (avx512_vnni, per channel)"] = str(out / "int8" / "model_quantized.onnx")
    (out / "models.json").write_text(json.dumps({"paths": paths, "timings": timings}, indent=2) + "\n")
    print(json.dumps(timings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
