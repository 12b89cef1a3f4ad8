"""`tuneship train` and `tuneship evaluate`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tuneship.arguments import positive_int


def register(subparsers: Any) -> None:
    from tuneship.trainer.config import add_config_arguments

    train = subparsers.add_parser("train", help="fine-tune a model on labelled texts into a checkpoint")
    add_config_arguments(train)
    train.set_defaults(handler=run_train)

    evaluate = subparsers.add_parser("evaluate", help="evaluate a checkpoint on a labelled file")
    evaluate.add_argument("checkpoint", type=Path, help="checkpoint directory written by `tuneship train`")
    evaluate.add_argument("--data", required=True, help="labelled file or built-in data set name")
    evaluate.add_argument("--text-column", default="text", help="column holding the text")
    evaluate.add_argument("--label-column", default="label", help="column holding the label")
    evaluate.add_argument("--image-column", default="image",
                          help="image checkpoints: column holding the image path (or give a folder per class)")
    evaluate.add_argument("--encoding", default="utf-8", help="text encoding of the file")
    evaluate.add_argument("--batch-size", type=positive_int, default=64, help="texts per forward pass")
    evaluate.add_argument("--json", type=Path, default=None, help="also write the metrics here")
    evaluate.set_defaults(handler=run_evaluate)


def run_train(args: argparse.Namespace) -> int:
    from tuneship.trainer import distributed, train
    from tuneship.trainer.config import config_from_args

    with distributed.session():  # under a launcher, a bad option is reported once too
        config = config_from_args(args)
        if getattr(config, "clean", False):
            config = _cleaned(config)
        train(config)
    return 0


def _cleaned(config: Any) -> Any:
    """--clean: the data check (the stage before training) writes the cleaned copy this run trains on."""
    from tuneship.trainer import DataError, distributed

    if distributed.world_size() > 1:
        raise DataError("--clean under a launcher: every process would check and write the same copy; run "
                        "`tuneship data check --fix` once, then train on the cleaned copy")
    from tuneship.datacheck.clean import clean_for_training
    from tuneship.datacheck.options import DataCheckError

    try:
        return clean_for_training(config)
    except DataCheckError as error:
        raise DataError(f"--clean: {error}") from None


def run_evaluate(args: argparse.Namespace) -> int:
    from tuneship.trainer.evaluate_checkpoint import evaluate_checkpoint
    from tuneship.trainer.evaluation import format_metrics

    metrics = evaluate_checkpoint(args.checkpoint, args.data, args.text_column, args.label_column,
                                  args.encoding, args.batch_size, args.image_column)
    print(format_metrics(metrics))
    if args.json:
        from tuneship.trainer.config import save_json

        save_json(args.json, metrics)
    return 0
