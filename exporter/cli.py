"""`tuneship export`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    export = subparsers.add_parser("export", help="export a checkpoint to ONNX inside a Triton model repository")
    export.add_argument("checkpoint", type=Path, help="checkpoint directory written by `tuneship train`")
    export.add_argument("--name", default="sentiment", help="model name in Triton (the ensemble's name)")
    export.add_argument("--repository", type=Path, default=Path("model_repository"), help="Triton model repository")
    export.add_argument("--target", choices=("cpu", "gpu"), default="cpu", help="where Triton will run the model")
    export.add_argument("--precision", choices=("auto", "fp32", "fp16", "int8"), default="auto",
                        help="auto: on CPU the fastest variant that passes the accuracy gate, on GPU fp16")
    export.add_argument("--no-optimize", dest="optimize", action="store_false",
                        help="skip ONNX Runtime's transformer fusions")
    export.add_argument("--keep-padding", dest="remove_padding", action="store_false",
                        help="CPU: do not remove padding from the fused graph's token-wise operators")
    export.add_argument("--int8-mode", choices=("dynamic", "static", "both"), default="dynamic",
                        help="int8 flavours to build and compare (static QDQ is slower and less accurate on CPU "
                             "for these encoders, so it is opt-in)")
    export.add_argument("--calibration", choices=("percentile", "minmax", "entropy"), default="percentile",
                        help="static int8: how activation ranges are calibrated on training texts")
    export.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=True,
                        help="int8: per-channel weight scales (default on)")
    export.add_argument("--accuracy-threshold", type=float, default=1.0,
                        help="largest eval-accuracy drop (points) a non-fp32 variant may have")
    export.add_argument("--force", action="store_true", help="publish the requested precision even if it fails")
    export.add_argument("--gate-samples", type=int, default=1000, help="eval texts used by the accuracy gate")
    export.add_argument("--opset", type=int, default=17)
    export.add_argument("--tolerance", type=float, default=1e-3, help="largest allowed fp32 |logit difference|")
    export.add_argument("--keep", type=int, default=None, help="keep only the newest N versions")
    export.add_argument("--max-batch-size", type=int, default=64)
    export.add_argument("--queue-delay-us", type=int, default=2000, help="dynamic batcher queue delay")
    export.add_argument("--preferred-batch-size", type=int, action="append", default=[],
                        help="dynamic batcher preferred size (repeatable)")
    export.add_argument("--instances", type=int, default=1, help="instances of the ONNX model")
    export.add_argument("--instance-kind", choices=("KIND_CPU", "KIND_GPU"), default=None,
                        help="default: KIND_CPU for --target cpu, KIND_GPU for --target gpu")
    export.add_argument("--intra-op-threads", type=int, default=0, help="ONNX Runtime threads (0: all cores)")
    export.add_argument("--engine-opt-batch", type=int, default=None,
                        help="--target gpu with TensorRT: profile batch size to tune for (default: max batch / 2)")
    export.add_argument("--engine-opt-sequence", type=int, default=None,
                        help="--target gpu with TensorRT: profile sequence length to tune for (default: max / 2)")
    export.add_argument("--versions", type=int, default=1, help="how many latest versions Triton serves")
    export.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    from tuneship.exporter.export import ExportOptions, export_checkpoint
    from tuneship.exporter.model_configs import ServingOptions

    kind = args.instance_kind or ("KIND_GPU" if args.target == "gpu" else "KIND_CPU")
    serving = ServingOptions(max_batch_size=args.max_batch_size, queue_delay_us=args.queue_delay_us,
                             preferred_batch_sizes=tuple(args.preferred_batch_size), instance_count=args.instances,
                             instance_kind=kind, intra_op_threads=args.intra_op_threads,
                             versions_to_serve=args.versions)
    modes = ("dynamic", "static") if args.int8_mode == "both" else (args.int8_mode,)
    export_checkpoint(ExportOptions(
        checkpoint=args.checkpoint, name=args.name, repository=args.repository, opset=args.opset,
        tolerance=args.tolerance, precision=args.precision, target=args.target, optimize=args.optimize,
        remove_padding=args.remove_padding, calibration=args.calibration,
        int8_modes=modes, per_channel=args.per_channel, accuracy_threshold=args.accuracy_threshold,
        gate_samples=args.gate_samples, force=args.force, keep=args.keep, serving=serving,
        engine_opt_batch=args.engine_opt_batch, engine_opt_sequence=args.engine_opt_sequence))
    return 0
