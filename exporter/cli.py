"""`tuneship export`, and the export options `tuneship deploy publish` shares with it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tuneship.arguments import non_negative_float, non_negative_int, positive_float, positive_int
from tuneship.exporter.instruct.build import INT4_METHODS

# One default for `export` and `deploy publish`: enough versions on disk to roll back twice.
DEFAULT_KEEP = 3


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """Every export option; `tuneship export` and `tuneship deploy publish` take the same ones."""
    parser.add_argument("checkpoint", type=Path, help="checkpoint directory written by `tuneship train`")
    parser.add_argument("--name", default="sentiment", help="model name in Triton (the ensemble's name)")
    parser.add_argument("--repository", type=Path, default=Path("model_repository"),
                        help="Triton model repository to publish into")
    parser.add_argument("--target", choices=("cpu", "gpu"), default="cpu", help="where Triton will run the model")
    parser.add_argument("--precision", choices=("auto", "fp32", "fp16", "int8", "int4"), default="auto",
                        help="auto: on CPU the fastest variant that passes the accuracy gate, on GPU fp16 "
                             "(int8 for text classifiers, int4 for instruct checkpoints)")
    parser.add_argument("--no-optimize", dest="optimize", action="store_false",
                        help="skip ONNX Runtime's transformer fusions")
    parser.add_argument("--keep-padding", dest="remove_padding", action="store_false",
                        help="CPU: do not remove padding from the fused graph's token-wise operators")
    parser.add_argument("--int8-mode", type=_int8_modes, default="dynamic,rowwise", metavar="MODES",
                        help="int8 flavours to build and compare, comma-separated: dynamic (one activation scale "
                             "per batch), rowwise (scales per token: batch-invariant), static (QDQ, calibrated; "
                             "slower and less accurate on CPU for these encoders, so opt-in); 'both' = "
                             "dynamic,static")
    parser.add_argument("--calibration", choices=("percentile", "minmax", "entropy"), default="percentile",
                        help="static int8: how activation ranges are calibrated on training texts")
    parser.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=True,
                        help="int8: per-channel weight scales")
    parser.add_argument("--accuracy-threshold", type=non_negative_float, default=1.0,
                        help="largest eval-accuracy drop (points) a non-fp32 variant may have")
    parser.add_argument("--speed-margin", type=non_negative_float, default=5.0,
                        help="auto: a variant must be this many percent faster than the next one to be preferred "
                             "for speed; closer than that counts as a tie (timing noise), settled by accuracy")
    parser.add_argument("--invariance-margin", type=non_negative_float, default=10.0,
                        help="a batch-invariant variant (a text's answer does not depend on its batch-mates) is "
                             "taken over a faster one that is not, if it is at most this many percent slower")
    parser.add_argument("--force", action="store_true", help="publish the requested precision even if it fails")
    parser.add_argument("--allow-label-change", action="store_true",
                        help="publish even if the model already in the repository has other labels")
    parser.add_argument("--gate-samples", type=positive_int, default=1000, help="eval texts used by the accuracy gate")
    parser.add_argument("--opset", type=positive_int, default=17, help="ONNX opset")
    parser.add_argument("--tolerance", type=positive_float, default=1e-3,
                        help="largest allowed fp32 |logit difference| against PyTorch")
    parser.add_argument("--keep", type=positive_int, default=DEFAULT_KEEP,
                        help="versions of each model kept on disk (older ones are deleted)")
    parser.add_argument("--keep-variants", action="store_true",
                        help="keep every ONNX variant that passed the gate beside the published version, so "
                             "'tuneship tune' sweeps precisions too (text and image classifiers)")
    parser.add_argument("--lock-timeout", type=non_negative_float, default=600.0,
                        help="seconds to wait while another export or publish writes the same repository "
                             "(0: fail at once)")
    parser.add_argument("--layout", choices=("ensemble", "single", "fused"), default="ensemble",
                        help="text classifiers: ensemble (tokenizer, ONNX model, postprocess as three Triton models; "
                             "the graph on Triton's ONNX Runtime backend, CPU or GPU) or single (one Python model "
                             "doing all three: fastest on a CPU server; needs onnxruntime in the Python backend); "
                             "fused is the old name of single")
    parser.add_argument("--max-batch-size", type=positive_int, default=64, help="largest batch Triton builds")
    parser.add_argument("--queue-delay-us", type=non_negative_int, default=0,
                        help="dynamic batcher queue delay (0: batch what queued while the model was busy; "
                             "`tuneship tune` measures others)")
    parser.add_argument("--preferred-batch-size", type=positive_int, action="append", default=[],
                        help="dynamic batcher preferred size (repeatable; default: none)")
    parser.add_argument("--pad-to-multiple-of", type=positive_int, default=16,
                        help="the tokenizer pads a batch to a multiple of this many tokens, so requests tokenized "
                             "apart share a shape the model's batcher can merge (1: to the longest text only)")
    parser.add_argument("--instances", type=positive_int, default=1, help="instances of the ONNX model")
    parser.add_argument("--instance-kind", choices=("KIND_CPU", "KIND_GPU"), default=None,
                        help="default: KIND_CPU for --target cpu, KIND_GPU for --target gpu")
    parser.add_argument("--intra-op-threads", type=non_negative_int, default=0,
                        help="ONNX Runtime threads (0: all cores)")
    parser.add_argument("--engine-opt-batch", type=positive_int, default=None,
                        help="--target gpu with TensorRT: profile batch size to tune for (default: max batch / 2)")
    parser.add_argument("--engine-opt-sequence", type=positive_int, default=None,
                        help="--target gpu with TensorRT: profile sequence length to tune for (default: max / 2)")
    parser.add_argument("--versions", type=positive_int, default=1, help="how many latest versions Triton serves")
    parser.add_argument("--int4-method", choices=INT4_METHODS, default="k_quant",
                        help="instruct int4: onnxruntime-genai's weight quantization (k_quant: every layer int4; "
                             "k_quant_mixed keeps the output layer and the most sensitive layers in int8, slower)")
    parser.add_argument("--default-max-tokens", type=positive_int, default=256,
                        help="instruct: tokens generated when a request does not say")
    parser.add_argument("--max-tokens-limit", type=positive_int, default=2048,
                        help="instruct: the most tokens a request may ask for")
    parser.add_argument("--max-concurrency", type=positive_int, default=4,
                        help="instruct: streams generated at once (more requests wait)")
    parser.add_argument("--no-quality-metrics", dest="quality_metrics", action="store_false",
                        help="classifiers: leave out the predictions-by-label, confidence and refused-text metrics "
                             "(model-quality monitoring) on Triton's metrics endpoint")
    parser.add_argument("--max-text-bytes", type=non_negative_int, default=0,
                        help="longest text in UTF-8 bytes the served tokenizer accepts; longer ones are refused "
                             "(0: 128 bytes per token of the checkpoint's max length)")


def _int8_modes(text: str) -> tuple[str, ...]:
    modes = ("dynamic", "static") if text == "both" else tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in modes if m not in ("dynamic", "rowwise", "static")]
    if not modes or unknown:
        raise argparse.ArgumentTypeError(f"{text!r}: int8 modes are dynamic, rowwise and static (comma-separated)")
    return modes


def export_options_from_args(args: argparse.Namespace) -> Any:
    """ExportOptions from the flags add_export_arguments declared."""
    from tuneship.exporter.export import ExportOptions
    from tuneship.exporter.instruct.publishing import GenerationServing
    from tuneship.exporter.model_configs import LAYOUT_ALIASES, ServingOptions

    if args.layout in LAYOUT_ALIASES:
        print(f"note: --layout {args.layout} is now --layout {LAYOUT_ALIASES[args.layout]} (\"fused\" also names "
              "ONNX Runtime's operator fusion); publishing the same single-model layout", file=sys.stderr)
    kind = args.instance_kind or ("KIND_GPU" if args.target == "gpu" else "KIND_CPU")
    serving = ServingOptions(max_batch_size=args.max_batch_size, queue_delay_us=args.queue_delay_us,
                             preferred_batch_sizes=tuple(args.preferred_batch_size), instance_count=args.instances,
                             instance_kind=kind, intra_op_threads=args.intra_op_threads,
                             versions_to_serve=args.versions, max_text_bytes=args.max_text_bytes,
                             pad_to_multiple_of=args.pad_to_multiple_of,
                             quality_metrics=args.quality_metrics, layout=args.layout)
    modes = args.int8_mode
    return ExportOptions(
        checkpoint=args.checkpoint, name=args.name, repository=args.repository, opset=args.opset,
        tolerance=args.tolerance, precision=args.precision, target=args.target, optimize=args.optimize,
        remove_padding=args.remove_padding, calibration=args.calibration,
        int8_modes=modes, per_channel=args.per_channel, accuracy_threshold=args.accuracy_threshold,
        speed_margin=args.speed_margin / 100.0, invariance_margin=args.invariance_margin / 100.0,
        gate_samples=args.gate_samples, force=args.force,
        allow_label_change=args.allow_label_change, keep=args.keep, keep_variants=args.keep_variants,
        serving=serving,
        lock_timeout_s=args.lock_timeout, int4_method=args.int4_method,
        generation=GenerationServing(default_max_tokens=args.default_max_tokens,
                                     max_tokens_limit=args.max_tokens_limit,
                                     max_concurrency=args.max_concurrency, versions_to_serve=args.versions,
                                     intra_op_threads=args.intra_op_threads),
        engine_opt_batch=args.engine_opt_batch, engine_opt_sequence=args.engine_opt_sequence)


def register(subparsers: Any) -> None:
    export = subparsers.add_parser("export", help="export a checkpoint to ONNX inside a Triton model repository")
    add_export_arguments(export)
    export.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    from tuneship.exporter.export import export_checkpoint

    export_checkpoint(export_options_from_args(args))
    return 0
