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
    export.add_argument("--opset", type=int, default=17)
    export.add_argument("--tolerance", type=float, default=1e-3, help="largest allowed |logit difference|")
    export.add_argument("--keep", type=int, default=None, help="keep only the newest N versions")
    export.add_argument("--max-batch-size", type=int, default=64)
    export.add_argument("--queue-delay-us", type=int, default=2000, help="dynamic batcher queue delay")
    export.add_argument("--instances", type=int, default=1, help="instances of the ONNX model")
    export.add_argument("--instance-kind", choices=("KIND_CPU", "KIND_GPU"), default="KIND_CPU")
    export.add_argument("--intra-op-threads", type=int, default=0, help="ONNX Runtime threads (0: all cores)")
    export.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    from exporter.export import ExportOptions, export_checkpoint
    from exporter.model_configs import ServingOptions

    serving = ServingOptions(max_batch_size=args.max_batch_size, queue_delay_us=args.queue_delay_us,
                             instance_count=args.instances, instance_kind=args.instance_kind,
                             intra_op_threads=args.intra_op_threads)
    export_checkpoint(ExportOptions(checkpoint=args.checkpoint, name=args.name, repository=args.repository,
                                    opset=args.opset, tolerance=args.tolerance, keep=args.keep, serving=serving))
    return 0
