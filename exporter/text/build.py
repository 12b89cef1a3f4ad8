"""Which variants to build for a target, and building them (CPU: fused, padding-free, int8; GPU: fp16, TensorRT)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneship.exporter.errors import ExportError
from tuneship.exporter.text.texts import calibration_texts
from tuneship.exporter.text.token_packing import pack_tokens_file
from tuneship.exporter.variants import (
    GRAPH_LEVEL_BASIC,
    Variant,
    convert_fp16,
    fused_operators,
    optimize_transformer,
    ort_offline_optimize,
    quantize_int8_dynamic,
    quantize_int8_static,
)
from tuneship.progress import step

if TYPE_CHECKING:
    from tuneship.exporter.text.options import TextExportOptions


def _encoder_shape(model: Any) -> tuple[str, int, int]:
    from tuneship.trainer import architecture

    config = model.config
    known = architecture(str(getattr(config, "model_type", "")))
    return (known.fusion_model_type if known else "", int(getattr(config, "num_attention_heads", 0)),
            int(getattr(config, "hidden_size", 0)))


def build_variants(options: TextExportOptions, fp32: Path, workdir: Path, model: Any, tokenizer: Any,
                    input_names: list[str], checkpoint: Any) -> list[Variant]:
    variants = [Variant("fp32", fp32, "fp32", "torch.onnx export, no fusions")]
    fusion_type, heads, hidden = _encoder_shape(model)
    on_cpu = options.target == "cpu"
    fused: Path | None = None
    graph = "plain graph"  # what the int8 and fp16 variants start from, for their descriptions
    if options.optimize and fusion_type:
        try:
            with step("building fp32-optimized (ONNX Runtime fusions)"):
                fused = optimize_transformer(fp32, workdir / "fused.onnx", fusion_type, heads, hidden,
                                             use_gpu=not on_cpu)
                counts = fused_operators(fused)
                description = "fused: " + (", ".join(f"{n} x{c}" for n, c in sorted(counts.items())) or "none")
                graph = "fused graph"
                if on_cpu and options.remove_padding and pack_tokens_file(fused, workdir / "fused-packed.onnx"):
                    fused = workdir / "fused-packed.onnx"
                    description += ", padding removed"
                    graph = "fused graph, padding removed"
                if on_cpu:
                    optimized = ort_offline_optimize(fused, workdir / "optimized.onnx")
                    variants.append(Variant("fp32-optimized", optimized, "fp32", description + ", ORT offline",
                                            counts, graph_level=GRAPH_LEVEL_BASIC))
                else:
                    variants.append(Variant("fp32-optimized", fused, "fp32", description, counts))
        except Exception as error:  # report, don't fail: the plain graph is still publishable
            print(f"note: transformer optimizer failed ({error}); continuing without fusions")
            fused, graph = None, "plain graph"
    wants_int8 = options.precision == "int8" or (options.precision == "auto" and on_cpu)
    wants_fp16 = options.precision == "fp16" or (options.precision == "auto" and not on_cpu)
    # GPU int8 is static QDQ: the form TensorRT consumes (its scales), where dynamic int8's MatMulInteger
    # family has CPU kernels only.
    int8_modes = options.int8_modes if on_cpu else ("static",)
    if wants_int8:
        if "dynamic" in int8_modes:
            # The fused graph: its Attention becomes QAttention (int8 Q/K/V projection in one op).
            try:
                with step("building int8-dynamic (weights quantized" + (" per channel)" if options.per_channel
                                                                         else ")")):
                    quantized = quantize_int8_dynamic(fused or fp32, workdir / "int8-dynamic.q.onnx",
                                                      options.per_channel)
                    path = ort_offline_optimize(quantized, workdir / "int8-dynamic.onnx")
                variants.append(Variant(
                    "int8-dynamic", path, "int8",
                    f"dynamic int8 weights{' per channel' if options.per_channel else ''} on the {graph}, "
                    "ORT offline", graph_level=GRAPH_LEVEL_BASIC))
            except Exception as error:
                print(f"note: dynamic int8 quantization failed ({error}); continuing without it")
        if "rowwise" in int8_modes:
            from tuneship.exporter.text.rowwise_int8 import quantize_int8_rowwise

            try:
                with step("building int8-rowwise (activation scales per token)"):
                    rewritten = workdir / "int8-rowwise.q.onnx"
                    quantize_int8_rowwise(fused or fp32, rewritten)
                    path = ort_offline_optimize(rewritten, workdir / "int8-rowwise.onnx")
                variants.append(Variant(
                    "int8-rowwise", path, "int8",
                    f"int8 weights per column, activations per token (batch-invariant) on the {graph}, ORT offline",
                    graph_level=GRAPH_LEVEL_BASIC))
            except Exception as error:
                print(f"note: rowwise int8 quantization failed ({error}); continuing without it")
        if "static" in int8_modes:
            with step(f"building int8-static ({options.calibration} calibration)"):
                static = static_int8(options, fp32, workdir, tokenizer, input_names, checkpoint)
            if static is not None:
                variants.append(static)
    if wants_fp16:
        with step("building fp16"):
            path = convert_fp16(fused or fp32, workdir / "fp16.onnx", fused=fused is not None)
        variants.append(Variant("fp16", path, "fp16", "fp16 compute, fp32 inputs/outputs, norms/softmax in fp32"))
    return variants


def static_int8(options: TextExportOptions, fp32: Path, workdir: Path, tokenizer: Any, input_names: list[str],
                 checkpoint: Any) -> Variant | None:
    import numpy as np

    texts = calibration_texts(checkpoint, options.calibration_samples)
    encoded = tokenizer(texts, truncation=True, max_length=checkpoint.max_length)  # once; padded per batch below
    # Histogram calibrators need one shape for every batch: pad to the longest calibration text.
    longest = max(len(ids) for ids in encoded["input_ids"])
    padding: Any = True if options.calibration == "minmax" else "max_length"
    batches = []
    for start in range(0, len(texts), 16):
        part = {n: encoded[n][start:start + 16] for n in input_names}
        padded = tokenizer.pad(part, padding=padding, max_length=longest, return_tensors="np")
        batches.append({n: padded[n].astype(np.int64) for n in input_names})
    try:
        path = quantize_int8_static(fp32, workdir / "int8-static.onnx", batches, options.per_channel,
                                    options.calibration)
    except Exception as error:
        print(f"note: static int8 quantization failed ({error}); continuing without it")
        return None
    return Variant("int8-static", path, "int8",
                   f"static QDQ int8, {options.calibration} calibration on {len(texts)} training texts")


ENGINE_PRECISION = {"auto": "FP16", "fp16": "FP16", "int8": "INT8", "fp32": "FP32"}


def tensorrt_variants(options: TextExportOptions, fp32: Path, workdir: Path, variants: list[Variant], tokenizer: Any,
                       input_names: list[str], checkpoint: Any) -> tuple[list[Variant], str]:
    """A `tensorrt_plan` engine where TensorRT and a GPU exist; otherwise nothing, and the reason."""
    from tuneship.exporter.text.tensorrt_engine import build_engine, default_profile, tensorrt_unavailable

    missing = tensorrt_unavailable()
    if missing is not None:
        return [], (f"no standalone TensorRT engine: {missing}; the ONNX model is published with ONNX Runtime's "
                    "TensorRT accelerator, which builds (and caches) the engine on the GPU at load time")
    precision = ENGINE_PRECISION[options.precision]
    source = fp32
    if precision == "INT8":  # explicit quantization: TensorRT reads the scales from a QDQ graph
        static = next((v for v in variants if v.name == "int8-static"), None) or static_int8(
            options, fp32, workdir, tokenizer, input_names, checkpoint)
        if static is None:
            return [], "no TensorRT INT8 engine: static QDQ quantization failed"
        source = static.path
    # At least 64: the gate runs batches of 64 through the engine; Triton may still cap batches lower.
    profile = default_profile(max(options.serving.max_batch_size, 64), checkpoint.max_length,
                              options.engine_opt_batch, options.engine_opt_sequence)  # bad values: an error
    try:
        built = build_engine(source, workdir / "model.plan", input_names, profile, precision,
                             options.engine_workspace_bytes)
    except ExportError as error:
        return [], f"TensorRT engine not built: {error}"
    variant = Variant(f"tensorrt-{precision.lower()}", workdir / "model.plan", precision.lower(),
                      f"TensorRT {built['tensorrt']} {precision} engine for {built['gpu']}, profile batch "
                      f"1/{profile.opt_batch}/{profile.max_batch}, sequence 1/{profile.opt_sequence}/"
                      f"{profile.max_sequence}", format="tensorrt_plan", profile=profile)
    return [variant], f"TensorRT {precision} engine built ({built['gpu']})"
